"""Fixtures of the unit tests."""
import os

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


#: the host's PAM files that only `sgewrap config/node-access --apply` may change: a unit test that
#: touched one broke the job sessions of an end-to-end run going on beside it (found so)
GUARDED = ("/etc/pam.d/sge-sshd", "/etc/pam.d/sshd")


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _host_held_elsewhere():
    """True while another test run holds the host (an end-to-end run changes the PAM files itself)."""
    import fcntl
    import lib
    from lib import HOST_LOCK
    if lib._held["fd"] is not None:     # this run holds it (its end-to-end part)
        return False
    try:
        fd = os.open(HOST_LOCK, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


@pytest.fixture(autouse=True)
def no_system_pam_file_touched():
    if _host_held_elsewhere():     # its PAM files are the other run's now: neither judge nor put back
        yield
        return
    before = {p: _read(p) for p in GUARDED}
    yield
    changed = [p for p in GUARDED if _read(p) != before[p]]
    for p in changed:         # put it back, then fail the test that changed it
        if before[p] is None:
            os.unlink(p)
        else:
            with open(p, "wb") as f:
                f.write(before[p])
    assert not changed, "a unit test changed the host's %s" % ", ".join(changed)


@pytest.fixture(autouse=True)
def gid_range_cache(tmp_path_factory, monkeypatch):
    """The host's gid_range cache (/var/lib/sgewrap) and the reaper's once-per-boot marker (/run/sgewrap)
    belong to the host, where another run's sessions read them: every unit test gets its own, empty
    places (a forked watcher inherits them); the cache's path."""
    from sgewrap.rootside import gidrange
    base = tmp_path_factory.mktemp("gid-range-cache")       # beside tmp_path: a test may list all of that
    monkeypatch.setattr(gidrange, "CACHE", str(base / "lib" / "gid_range"))
    monkeypatch.setattr(gidrange, "MARK_DIR", str(base / "run"))
    return gidrange.CACHE
