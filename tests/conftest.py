"""Fixtures shared by every test directory.

``installed`` installs the wrappers the way an administrator does (``make
install SGE_ROOT=...``) into a root-owned scratch SGE_ROOT, so tests run the
real entry points with the real shebang and isolated interpreter.
``host_ready`` runs tests/cluster/up (idempotent): test user, ssh keys, sshd
host keys, the peers' packages and the one-host Grid Engine.
"""
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lib import CLUSTER_UP, IN_CI, REPO, need, need_root  # noqa: E402

INSTALL_ROOT = "/opt/sgewrap-test"   # root-owned, world-readable: other users run from it


@pytest.fixture(scope="session")
def host_ready():
    need_root()
    need(os.access(CLUSTER_UP, os.X_OK), "tests/cluster/up missing")
    subprocess.run([CLUSTER_UP], check=True, stdout=subprocess.DEVNULL)
    return True


@pytest.fixture(scope="session")
def installed():
    """The directory holding the installed entry points (as root)."""
    need_root()
    subprocess.run(["make", "-s", "-C", REPO, "install", "SGE_ROOT=" + INSTALL_ROOT,
                    "PYTHON=/usr/bin/python3"], check=True, stdout=subprocess.DEVNULL)
    os.chmod(INSTALL_ROOT, 0o755)
    return os.path.join(INSTALL_ROOT, "util", "resources", "wrappers")


def pytest_sessionfinish(session, exitstatus):
    """Under CI=true a skipped test is a failure: nothing real may be skipped."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if IN_CI and skipped and exitstatus == 0:
        session.exitstatus = 1
        if reporter:
            reporter.write_line("CI=true: %d test(s) skipped; failing the run" % skipped, red=True)
