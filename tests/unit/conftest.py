"""Fixtures of the unit tests."""
import pytest

from sgewrap import locate


@pytest.fixture
def fake_sge_root(tmp_path):
    root = tmp_path / "sge"
    arc = locate.arch_guesses()[0]
    bindir = root / "utilbin" / arc
    bindir.mkdir(parents=True)
    for name in ("rshd", "rlogind"):
        (bindir / name).write_text("#!/bin/true\n")
        (bindir / name).chmod(0o755)
    (root / "default" / "common").mkdir(parents=True)
    wrappers = root / "util" / "resources" / "wrappers"
    wrappers.mkdir(parents=True)
    (wrappers / "rshdwrapper").write_text("")
    return root
