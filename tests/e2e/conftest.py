"""The end-to-end matrix: every method that runs here, on the real one-host cluster.

A test says which slot it exercises with ``@pytest.mark.slot("rsh")`` (or
``"rlogin"``, ``"qlogin"``) and takes the ``method`` fixture; it then runs once
per method that serves that slot.  ``method`` is session-scoped, so pytest
groups the tests by method and each configuration is applied once.
``@pytest.mark.accounted`` keeps a test to the methods whose remote processes
carry the job's group id (what accounting and qdel rely on);
``@pytest.mark.methods("ssh", ...)`` to the methods named.
"""
import dataclasses
import os
import subprocess

import pytest

from lib import REPO, host_lock, need, sge
from sgewrap import conventions


@dataclasses.dataclass(frozen=True)
class Method:
    """A configuration under test: a method of the registry (sgewrap.methods), or builtin, and how."""
    name: str
    sgeconf: str            # the METHOD of `sgewrap config`
    tight: bool
    accounted: bool         # remote processes carry the job's addgrpid
    password: bool = False  # the login asks for one (telnet)
    tunnel: bool = False    # ssh_wrapper --tunnel: through the exec host's sshd on port 22
    #: --tunnel-persist: the tests keep the shared tunnel connection 3 s, so that "none is left once
    #: it expires" is seen within a test's time
    tunnel_persist: int = 3
    #: qlogin and qrsh without a command are typed plain: the qlogin/qrsh front that sgewrap config
    #: --apply puts in place adds -pty no for the wrapped methods (README, "Known Grid Engine bugs")
    login_options: tuple = ()
    #: (test name, why it fails here with this method, the exception it fails with): xfail for that
    #: exception only (a setup error or any other failure stays a failure); Grid Engine's own bugs
    #: can be intermittent, so a pass is reported (XPASS), not failed
    known_broken: tuple = ()

    def __str__(self):
        return self.name

    @property
    def slots(self):
        """The slots it serves (the others stay builtin): the registry's entry points say."""
        from sgewrap import methods
        return ALL if self.sgeconf == "builtin" else methods.get(self.sgeconf).slots()

    def known(self, test):
        """(why, exception) if ``test`` is known to fail with this method, else None."""
        return next((entry[1:] for entry in self.known_broken if entry[0] == test), None)


ALL = tuple(conventions.SLOT)
# Measured on SGE 8.1.9 (Debian 12): builtin's qrsh mostly deadlocks once stdin carries more
# than about 64 KiB (65536 bytes through `qrsh cat` passed, 70000 hung; 10 MiB hung in 6 of 8
# runs, `qrsh sha256sum` of 1 MB too).  Grid Engine's own bug, the baseline this project beats.
BUILTIN_STDIN = ("test_qrsh_stdin_10mib_byte_for_byte",
                 "SGE 8.1.9 builtin qrsh mostly hangs with more than ~64 KiB of stdin (measured)",
                 subprocess.TimeoutExpired)
METHODS = (
    Method("builtin", "builtin", False, accounted=True, known_broken=(BUILTIN_STDIN,)),
    Method("ssh", "ssh", False, accounted=False),
    Method("ssh-tight", "ssh", True, accounted=True),
    Method("ssh-tunnel", "ssh", True, accounted=True, tunnel=True),
    Method("telnet", "telnet", False, accounted=False, password=True),
    Method("rsh", "rsh", False, accounted=False),
    Method("rlogin", "rlogin", False, accounted=False),
)


def pytest_generate_tests(metafunc):
    if "method" not in metafunc.fixturenames:
        return
    slot = metafunc.definition.get_closest_marker("slot")
    methods = [m for m in METHODS if slot is None or slot.args[0] in m.slots]
    if metafunc.definition.get_closest_marker("accounted"):
        methods = [m for m in methods if m.accounted]
    named = metafunc.definition.get_closest_marker("methods")
    if named:
        methods = [m for m in methods if m.name in named.args]
    params = []
    for m in methods:
        broken = m.known(metafunc.definition.originalname)
        params.append(pytest.param(m, marks=pytest.mark.xfail(reason=broken[0], raises=broken[1], strict=False))
                      if broken else m)
    metafunc.parametrize("method", params, ids=str, indirect=True, scope="session")


@pytest.fixture(scope="session")
def cluster(host_ready, installed):
    """The cluster with its global configuration saved; restored (and execd reloaded) at the end.

    Holds the host lock for the whole run: other test runs that change the
    configuration wait.
    """
    need(sge.qconf("-sql").split().count(sge.QUEUE) == 1, "test queue missing", "run tests/cluster/up")
    from sgewrap.admin import pam
    with host_lock():
        sge.clean_queue()
        saved = sge.show_global()
        stack = pam.is_job_stack()
        front = sge.front_state()
        try:
            yield installed
        finally:
            if sge.show_global() != saved:
                sge.restore(saved)
            if not stack:
                pam.remove_job_stack()
            sge.front(front)


@pytest.fixture(autouse=True)
def no_queue_left_in_error(request):
    """A test that leaves a queue in error state fails (in its teardown, so the culprit is named),
    and the queue is cleared so that the tests after it still get their jobs scheduled."""
    yield
    if "cluster" in request.fixturenames:
        stuck = sge.clear_queue_errors()
        assert not stuck, "left queue instances in error state (cleared): %s" % " ".join(stuck)


@pytest.fixture(scope="session")
def method(request, cluster):
    """Apply the method's six sge_conf entries (from sgewrap.admin.sgeconf) and wait for the exec side."""
    from sgewrap.admin import sgeconf
    m = request.param
    entries = sgeconf.entries(m.sgeconf, cluster, tight=m.tight, x11=False if m.sgeconf == "ssh" else None,
                              tunnel=m.tunnel or None, tunnel_persist=m.tunnel_persist if m.tunnel else None)
    if m.tight:     # what `sgewrap config ssh --tight --apply` writes, before sge_conf names sge-sshd
        sge.job_stack(cluster)
    sge.apply(entries)
    sge.front(sgeconf.wraps_logins(entries))    # what `sgewrap config --apply` does on a submit host
    return m


@pytest.fixture(scope="session")
def node4(method, cluster):
    """node4 set up by its administrator: the project installed there (at the path this host's copy has:
    the global configuration names it), then --apply there.  What both printed."""
    wrappers = cluster
    install_root = os.path.dirname(os.path.dirname(os.path.dirname(wrappers)))
    sge.repo_on_node4()
    install = sge.on_node4(["make", "-s", "-C", REPO, "install", "SGE_ROOT=" + install_root,
                            "PYTHON=/usr/bin/python3"], capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    apply = sge.on_node4([os.path.join(wrappers, "sgewrap"), "config", "ssh", "--tight", "--no-x11", "--apply"],
                         capture_output=True, text=True, timeout=120)
    assert apply.returncode == 0, apply.stdout + apply.stderr
    # one global configuration serves both releases: what this host's fixture applied is already right
    assert "global configuration: the six entries already have these values; nothing changed" in apply.stdout, \
        apply.stdout
    assert "is the launcher" in apply.stdout, apply.stdout
    # README's order: then, on the hosts that applied before, sgewrap facts --record (they learn node4's
    # host keys, which a rebuilt node4 root changes)
    subprocess.run([os.path.join(wrappers, "sgewrap"), "facts", "--record"], env=sge.ENV, capture_output=True,
                   timeout=120)
    sge.wait_queues_up(sge.DEB13_QUEUE)
    return install.stdout + apply.stdout
