"""The test library: paths, the test user, CI-aware prerequisites, the host lock, waiting.

The bigger helpers are its modules: :mod:`lib.sge` (the one-host Grid Engine,
its jobs and the processes they leave), :mod:`lib.mpijobs` (parallel jobs),
:mod:`lib.ptydrive` (a program in a pty or in tmux).

Outside CI a missing prerequisite (not root, no Grid Engine...) skips the test
with a message saying how to run it; with ``CI=true`` it fails instead, so CI
can never go green by skipping the real-part tests.
"""
import contextlib
import fcntl
import os
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WRAPPERS_SRC = os.path.join(REPO, "wrappers")
DATA = os.path.join(REPO, "tests", "data")
CLUSTER_UP = os.path.join(REPO, "tests", "cluster", "up")
#: what tests/cluster/up keeps about the test machine: daemons' PIDs, the test user's password, the host lock
CLUSTER_STATE = "/run/sgewrap-cluster"
#: the test user's password (set by tests/cluster/up; telnet's login asks for it)
PASSWORD_FILE = os.path.join(CLUSTER_STATE, "password")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

#: the unprivileged user the real-part tests run clients as (made by tests/cluster/up)
TEST_USER = "sgetest"

#: ssh to an sshd behind a stand-in shepherd: a new port each time, so no host key is kept or asked about
SSH = ["/usr/bin/ssh", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
       "-o", "LogLevel=ERROR", "-o", "BatchMode=yes"]


def need(ok, why, how="run the tests as root: sudo make test"):
    """Skip (or, under CI=true, fail) the calling test unless ``ok``."""
    if ok:
        return
    message = f"{why} ({how})"
    if IN_CI:
        pytest.fail("prerequisite missing in CI: " + message, pytrace=False)
    pytest.skip(message)


def need_root():
    need(os.geteuid() == 0, "needs root")


#: held (flock) by every test that changes host-wide state: the Grid Engine
#: configuration, /etc/pam.d/sshd.  Concurrent test runs on one machine queue up.
HOST_LOCK = os.path.join(CLUSTER_STATE, "lock")


_held = {"fd": None, "depth": 0}


@contextlib.contextmanager
def host_lock():
    """Hold the host lock; re-entrant within this process.

    flock(2) locks belong to an open file description, so a second open+flock
    in the same process blocks on the first: the session-long lock of
    tests/e2e and a later fixture taking it again would deadlock the run.
    """
    if _held["fd"] is None:
        os.makedirs(os.path.dirname(HOST_LOCK), exist_ok=True)
        fd = os.open(HOST_LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        _held["fd"] = fd
    _held["depth"] += 1
    try:
        yield
    finally:
        _held["depth"] -= 1
        if _held["depth"] == 0:
            os.close(_held["fd"])
            _held["fd"] = None


#: where sshd, PAM and the root hooks log (rsyslog on the test machine)
AUTH_LOG = "/var/log/auth.log"


def auth_log_size():
    """Where the auth log ends now: a mark for :func:`auth_log_since`."""
    return os.path.getsize(AUTH_LOG)


def auth_log_since(mark):
    """What was logged to the auth log after ``mark``."""
    with open(AUTH_LOG, "rb") as f:
        f.seek(mark)
        return f.read().decode("utf-8", "replace")


def wait_until(predicate, timeout, interval=0.1):
    """Call ``predicate()`` every ``interval`` seconds until it returns something true, and return
    that; once ``timeout`` seconds have passed, its last (false) value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def make_spool(base, gid, owner, job_id=4711, task=1, environment="FOO_FROM_JOB=hello\n", admin_uid=None):
    """A fake job spool directory ``BASE/active_jobs/JOB_ID.TASK`` as execd writes it; its path.

    ``addgrpid`` holds ``gid``, ``environment`` the text given (each left out if None), ``config``
    names ``owner``, the job and the task.  BASE and the directories below it are 0755, the files
    0644, and all of them belong to ``admin_uid`` if given (Grid Engine's admin user, or a user to
    stand for an attacker), else to whoever runs the test.
    """
    d = os.path.join(str(base), "active_jobs", "%d.%d" % (job_id, task))
    os.makedirs(d, mode=0o755)
    files = {"addgrpid": None if gid is None else "%d\n" % gid, "environment": environment,
             "config": "job_owner=%s\njob_id=%d\nja_task_id=%d\n" % (owner, job_id, task)}
    files = {name: text for name, text in files.items() if text is not None}
    for name, text in files.items():
        with open(os.path.join(d, name), "w") as f:
            f.write(text)
    for p in [d, os.path.dirname(d), str(base)] + [os.path.join(d, n) for n in files]:
        os.chmod(p, 0o755 if os.path.isdir(p) else 0o644)
        if admin_uid is not None:
            os.chown(p, admin_uid, -1)
    return d
