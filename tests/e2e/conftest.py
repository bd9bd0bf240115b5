"""The end-to-end matrix: every method that runs here, on the real one-host cluster.

A test says which slot it exercises with ``@pytest.mark.slot("rsh")`` (or
``"rlogin"``, ``"qlogin"``) and takes the ``method`` fixture; it then runs once
per method that serves that slot.  ``method`` is session-scoped, so pytest
groups the tests by method and each configuration is applied once.
``@pytest.mark.accounted`` keeps a test to the methods whose remote processes
carry the job's group id (what accounting and qdel rely on).
"""
import dataclasses

import pytest

import sge
from support import host_lock, need


@dataclasses.dataclass(frozen=True)
class Method:
    name: str
    sgeconf: str            # the METHOD of `sgewrap config`
    tight: bool
    slots: tuple            # the slots it serves (the others stay builtin)
    accounted: bool         # remote processes carry the job's addgrpid
    password: bool = False  # the login asks for one (telnet)
    #: slots whose end-to-end test is known to fail here, with the reason (xfail, not skip)
    known_broken: tuple = ()

    def __str__(self):
        return self.name


ALL = ("qlogin", "rlogin", "rsh")
# Seen in the first full run (2026-11-24): qlogin / qrsh-without-command through
# ssh_wrapper/qlogin_wrapper + sshd -i end with "error: 143:" under real SGE,
# although the same wrappers give a login shell against sshd -i in tests/loopback.
# Open: see the closing note; kept visible as xfail, never skipped.
INTERACTIVE = (("qlogin", "error: 143 from qlogin/qrsh login under real SGE; works on loopback"),
               ("rlogin", "error: 143 from qlogin/qrsh login under real SGE; works on loopback"))
METHODS = (
    Method("builtin", "builtin", False, ALL, accounted=True),
    Method("ssh", "ssh", False, ALL, accounted=False, known_broken=INTERACTIVE),
    Method("ssh-tight", "ssh", True, ALL, accounted=True, known_broken=INTERACTIVE[:1]),
    Method("telnet", "telnet", False, ("qlogin",), accounted=False, password=True),
    Method("rsh", "rsh", False, ("rsh",), accounted=False),
    Method("rlogin", "rlogin", False, ("rlogin",), accounted=False, known_broken=INTERACTIVE),
)


def pytest_generate_tests(metafunc):
    if "method" not in metafunc.fixturenames:
        return
    slot = metafunc.definition.get_closest_marker("slot")
    methods = [m for m in METHODS if slot is None or slot.args[0] in m.slots]
    if metafunc.definition.get_closest_marker("accounted"):
        methods = [m for m in methods if m.accounted]
    params = []
    for m in methods:
        broken = dict(m.known_broken).get(slot.args[0]) if slot else None
        params.append(pytest.param(m, marks=pytest.mark.xfail(reason=broken, strict=False)) if broken else m)
    metafunc.parametrize("method", params, ids=str, indirect=True, scope="session")


@pytest.fixture(scope="session")
def cluster(host_ready, installed):
    """The cluster with its global configuration saved; restored (and execd reloaded) at the end.

    Holds the host lock for the whole run: other test runs that change the
    configuration wait.
    """
    need(sge.qconf("-sql").split().count(sge.QUEUE) == 1, "test queue missing", "run tests/cluster/up")
    with host_lock():
        saved = sge.show_global()
        try:
            yield installed
        finally:
            if sge.show_global() != saved:
                sge.restore(saved)


@pytest.fixture(scope="session")
def method(request, cluster):
    """Apply the method's six sge_conf entries (from sgewrap.sgeconf) and wait for the exec side."""
    from sgewrap import sgeconf
    m = request.param
    entries = sgeconf.entries(m.sgeconf, cluster, tight=m.tight, x11=False if m.sgeconf == "ssh" else None)
    sge.apply(entries)
    return m
