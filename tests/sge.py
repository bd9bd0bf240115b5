"""Driving the real one-host Grid Engine from tests and the benchmark (as root).

The values applied come from :mod:`sgewrap.sgeconf` (the same code behind
``sgewrap config``), so the end-to-end tests prove the configuration the
administrator is told to paste.

Applying a ``*_daemon`` change: execd takes a changed global configuration
only after 15-90 s, and a probe that runs while client and daemon disagree
hangs for the shepherd's 60 s accept timeout.  So after ``qconf -Mconf`` the
execd is restarted (it reads the configuration when it starts; running jobs
are not touched), keeping the PID record of tests/cluster/up current, and then
a probe job proves what the exec side uses: the shepherd's own copy of the
configuration in the job's spool directory (``$SGE_JOB_SPOOL_DIR/config``)
must name the daemon just applied.
"""
import os
import signal
import socket
import subprocess
import tempfile
import time

from sgewrap import sgeconf
from sgewrap.shepherd import as_user

SGE_ROOT = "/var/lib/gridengine"
SGE_CELL = "default"
HOST = socket.gethostname()
QUEUE = "test.q"
PE = "test.pe"
STATE = "/run/sgewrap-cluster"
TEST_USER = "sgetest"
ENV = {"SGE_ROOT": SGE_ROOT, "SGE_CELL": SGE_CELL, "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"}


def qconf(*args, check=True):
    proc = subprocess.run(["/usr/bin/qconf"] + list(args), env=ENV, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError("qconf %s failed (%d): %s" % (" ".join(args), proc.returncode,
                                                        (proc.stderr or proc.stdout).strip()))
    return proc.stdout


def user_run(argv, user=TEST_USER, **kwargs):
    """argv as the test user with the Grid Engine environment (no shell)."""
    env = dict(ENV)
    env.update(kwargs.pop("env", {}))
    return as_user(user, argv, env=env, **kwargs)


def user_env(user=TEST_USER):
    import pwd
    pw = pwd.getpwnam(user)
    env = dict(ENV, HOME=pw.pw_dir, USER=user, LOGNAME=user, SHELL=pw.pw_shell, TERM="xterm",
               LANG="C.UTF-8")
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    return env


def show_global():
    return qconf("-sconf", "global")


def set_global(text):
    """Make ``text`` (qconf -sconf output) the global configuration."""
    with tempfile.TemporaryDirectory(prefix="sgewrap-conf.") as tmp:
        path = os.path.join(tmp, "global")          # qconf takes the name from the file name
        with open(path, "w") as f:
            f.write(text)
        qconf("-Mconf", path)


def _execd_pid():
    """The running sge_execd's PID, never a zombie (the init script leaves its daemonizing
    parent as ``[sge_execd] <defunct>`` for a while: taking that one for the daemon made a
    restart a no-op and the next jobs ran with the old configuration)."""
    out = subprocess.run(["pgrep", "-x", "-r", "D,R,S,T", "sge_execd"], capture_output=True,
                         text=True).stdout.split()
    return int(out[0]) if out else None


def restart_execd(timeout=30):
    """Stop execd (jobs keep running) and start it again: it reads the configuration anew."""
    old = _execd_pid()
    record = os.path.join(STATE, "sge_execd.pid")
    ours = old is None or (os.path.exists(record) and open(record).read().strip() == str(old))
    if old is not None:
        os.kill(old, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while os.path.exists("/proc/%d" % old) and time.monotonic() < deadline:
            time.sleep(0.05)
    subprocess.run(["/etc/init.d/gridengine-exec", "start"], env=ENV, capture_output=True)
    deadline = time.monotonic() + timeout
    while _execd_pid() in (None, old):
        if time.monotonic() > deadline:
            raise RuntimeError("sge_execd did not start again (still %r)" % _execd_pid())
        time.sleep(0.05)
    if ours:  # tests/cluster/down stops what up started: keep its record true
        with open(record, "w") as f:
            f.write("%d\n" % _execd_pid())


def probe(entries, timeout=90):
    """Poll until a job shows the exec side running with ``entries``; the seconds it took.

    The probe is a ``qrsh`` (rsh slot) printing the shepherd's configuration copy.
    """
    want = "rsh_daemon=%s" % entries["rsh_daemon"]
    start = time.monotonic()
    last = None
    while time.monotonic() - start < timeout:
        proc = user_run(["/usr/bin/qrsh", "-now", "yes", "-q", QUEUE, "grep", "^rsh_daemon=",
                         "$SGE_JOB_SPOOL_DIR/config"], capture_output=True, text=True, timeout=75,
                        stdin=subprocess.DEVNULL)
        last = proc
        if proc.returncode == 0 and want in proc.stdout.splitlines():
            return time.monotonic() - start
        time.sleep(0.5)
    raise RuntimeError("exec side does not use %r after %ds: %r / %r" % (
        want, timeout, last and last.stdout, last and last.stderr))


def apply(entries):
    """Set the six entries in the global configuration and wait until execd uses them."""
    conf = sgeconf.parse(show_global())
    set_global(sgeconf.render(sgeconf.with_entries(conf, entries)))
    restart_execd()
    return probe(entries)


def restore(text):
    set_global(text)
    restart_execd()


def clean_queue(timeout=60):
    """No job of the test user left, the test queue out of error state (a killed job puts it there)."""
    subprocess.run(["/usr/bin/qdel", "-u", TEST_USER], env=ENV, capture_output=True)
    deadline = time.monotonic() + timeout
    while subprocess.run(["/usr/bin/qstat", "-u", TEST_USER], env=ENV, capture_output=True,
                         text=True).stdout.strip():
        if time.monotonic() > deadline:
            raise RuntimeError("jobs of %s still there after qdel" % TEST_USER)
        time.sleep(0.2)
    subprocess.run(["/usr/bin/qmod", "-c", QUEUE], env=ENV, capture_output=True)


def job_gone(name, timeout=60):
    """Wait until no job named ``name`` is known to qstat."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["/usr/bin/qstat", "-u", "*"], env=ENV, capture_output=True, text=True).stdout
        if name[:10] not in out:
            return True
        time.sleep(0.2)
    return False


def processes_with(word):
    """PIDs of processes whose command line contains ``word`` (the process table)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                if word.encode() in f.read():
                    found.append(int(entry))
        except OSError:
            pass
    return found
