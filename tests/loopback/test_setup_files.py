"""pam_sgewrap's ``setup`` service through the real libpam, without sshd: a stale or foreign setup
file is never honoured (root-hooks issue, finding 3), a file written for the very process is.

pam_sge-qrsh-setup took ``/var/run/sge-qrsh-setup.<getppid()>`` as it found it: a file left by a
dead session whose PID the next login got -- a root login included -- handed that login the job's
group and environment.  Here a PAM application (libpam through ctypes) runs pam_setcred as root in a
child of this test process, so the parent PID the module looks up is this process: the test plants
the file it wants the module to find and reads the child's groups afterwards.
"""
import ctypes
import ctypes.util
import os
import pwd

import pytest

from lib import TEST_USER, host_lock, make_spool
from lib.rootside import Log
from sgewrap.admin import pammodule
from sgewrap.rootside import procs, setupfile

pytestmark = pytest.mark.root

SERVICE = "sgewrap-setup-test"
PAM_ESTABLISH_CRED = 0x0002
GID = 64555


class Conv(ctypes.Structure):
    _fields_ = [("conv", ctypes.c_void_p), ("appdata_ptr", ctypes.c_void_p)]


CONV_FUNC = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
_no_conversation = CONV_FUNC(lambda *args: 19)        # PAM_CONV_ERR: setcred never converses


def setcred_in_child(user):
    """Fork; the child runs pam_start(SERVICE, user) + pam_setcred(ESTABLISH) and reports its groups
    and the PAM environment's FOO_FROM_JOB.  (groups, foo, exit status)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read)
            libpam = ctypes.CDLL(ctypes.util.find_library("pam"))
            handle = ctypes.c_void_p()
            conv = Conv(ctypes.cast(_no_conversation, ctypes.c_void_p), None)
            rc = libpam.pam_start(SERVICE.encode(), user.encode(), ctypes.byref(conv), ctypes.byref(handle))
            if rc == 0:
                rc = libpam.pam_setcred(handle, PAM_ESTABLISH_CRED)
            libpam.pam_getenv.restype = ctypes.c_char_p
            foo = libpam.pam_getenv(handle, b"FOO_FROM_JOB") or b"-"
            os.write(write, b"%d %s %s" % (rc, foo, ",".join(map(str, os.getgroups())).encode()))
        finally:
            os._exit(0)
    os.close(write)
    data = b""
    while True:
        chunk = os.read(read, 4096)
        if not chunk:
            break
        data += chunk
    os.close(read)
    _, status = os.waitpid(pid, 0)
    rc, foo, groups = (data.decode().split(" ") + ["", "", ""])[:3]
    return [int(g) for g in groups.split(",") if g], foo, os.waitstatus_to_exitcode(status) if not data else int(rc)


@pytest.fixture
def service(tmp_path, installed):
    """/etc/pam.d/SERVICE: pam_sgewrap setup reading setup files from a directory of this test."""
    setup_dir = tmp_path / "run"
    setup_dir.mkdir(mode=0o700)
    pammodule.ensure_installed(installed)
    path = os.path.join("/etc/pam.d", SERVICE)
    with host_lock():
        with open(path, "w") as f:
            f.write("auth required pam_sgewrap.so setup --setup-dir=%s --admin-user=sgeadmin\n"
                    "account required pam_permit.so\n" % setup_dir)
        try:
            yield str(setup_dir)
        finally:
            os.unlink(path)


@pytest.fixture
def spool(tmp_path):
    os.chmod(tmp_path, 0o755)
    return make_spool(tmp_path / "spool", GID, TEST_USER)


def plant(setup_dir, spool, pid, start):
    path = setupfile.path_of(setup_dir, pid)
    with open(path, "w") as f:
        f.write("%s\nsgewrap %d %d\n" % (spool, pid, start))
    os.chmod(path, 0o600)
    return path


def test_a_file_written_for_this_very_process_is_honoured(service, spool):
    path = setupfile.create(os.getpid(), spool, service, Log())
    try:
        groups, foo, rc = setcred_in_child(TEST_USER)
    finally:
        os.unlink(path)
    assert rc == 0 and GID in groups and foo == "hello"


@pytest.mark.parametrize("user", ["root", TEST_USER])
def test_a_stale_file_under_the_parent_s_pid_hands_nothing_to_a_login_root_s_included(service, spool, user):
    """A file for this PID from a process that started at another time (a dead session whose PID the
    login got): ignored, the login carries neither the job's group nor its environment."""
    me = procs.stat_of(os.getpid())
    path = plant(service, spool, os.getpid(), me.start - 1)
    try:
        groups, foo, rc = setcred_in_child(user)
    finally:
        os.unlink(path)
    assert GID not in groups and foo == "-", (groups, foo)


@pytest.mark.parametrize("problem", ["mode", "owner", "old-format", "symlink"])
def test_a_file_that_is_not_sgewrap_s_exact_form_is_ignored(service, spool, tmp_path, problem):
    me = procs.stat_of(os.getpid())
    path = plant(service, spool, os.getpid(), me.start)
    if problem == "mode":
        os.chmod(path, 0o644)
    elif problem == "owner":
        os.chown(path, pwd.getpwnam(TEST_USER).pw_uid, -1)
    elif problem == "old-format":           # what Grid Engine's Perl rshd-wrapper writes: no identity line
        with open(path, "w") as f:
            f.write(spool + "\n")
    elif problem == "symlink":
        real = str(tmp_path / "elsewhere")
        os.rename(path, real)
        os.symlink(real, path)
    try:
        groups, foo, rc = setcred_in_child(TEST_USER)
    finally:
        os.unlink(path)
    assert GID not in groups and foo == "-", (problem, groups, foo)
