"""rshdwrapper in front of a real ``sshd -i`` and the real pam_sge-qrsh-setup, through a stand-in shepherd.

(Every loopback test of rshdwrapper, the attacks included.  Not named test_rshd.py:
that basename is tests/unit/test_rshd.py's, and pytest's default import mode needs
unique basenames in directories without __init__.py.)

The shepherd side (root): bind 127.0.0.1 port 0, accept one connection, put it
on fds 0-2 of the INSTALLED rshdwrapper, with a job-like environment holding
SGE_JOB_SPOOL_DIR = a fake spool directory (``addgrpid`` = an unused gid,
``environment``).  The client: plain ssh as the unprivileged test user, or a
raw socket that reads the exact bytes a client would get.  Holds the host
lock while /etc/pam.d/sshd must carry the module line.
"""
import grp
import os
import signal
import socket
import subprocess
import time

import pytest

from sgewrap import pam
from sgewrap.shepherd import Shepherd, as_user
from support import TEST_USER, host_lock

pytestmark = pytest.mark.root

HOST = socket.gethostname()
SETUP_DIR = "/var/run"
JOB_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "JOB_ID": "4711", "SGE_TASK_ID": "undefined",
           "JOB_NAME": "QRLOGIN"}
SSH = ["/usr/bin/ssh", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
       "-o", "LogLevel=ERROR", "-o", "BatchMode=yes"]


def unused_gids(n, start=64000):
    used = {g.gr_gid for g in grp.getgrall()}
    return [g for g in range(start, 65500) if g not in used][:n]


@pytest.fixture
def pam_line(host_ready):
    """/etc/pam.d/sshd has the module line (put back as found), nobody changes it meanwhile."""
    with host_lock():
        added = pam.add_line()
        try:
            yield
        finally:
            if added:
                pam.remove_line()


@pytest.fixture
def wrapper(installed):
    return os.path.join(installed, "rshdwrapper")


def make_spool(base, gid, environment="FOO_FROM_JOB=hello\n", name="4711.1", owner=None):
    """A fake active_jobs/JOB.TASK directory, root-owned (or ``owner``'s) and not writable by others."""
    d = os.path.join(str(base), "active_jobs", name)
    os.makedirs(d, mode=0o755)
    for p in (d, os.path.dirname(d), str(base)):
        os.chmod(p, 0o755)
    with open(os.path.join(d, "addgrpid"), "w") as f:
        f.write("%d\n" % gid)
    with open(os.path.join(d, "environment"), "w") as f:
        f.write(environment)
    for p in (os.path.join(d, "addgrpid"), os.path.join(d, "environment")):
        os.chmod(p, 0o644)
    if owner is not None:
        for p in (d, os.path.dirname(d), os.path.join(d, "addgrpid"), os.path.join(d, "environment")):
            os.chown(p, owner, -1)
    return d


def setup_file(pid):
    return os.path.join(SETUP_DIR, "sge-qrsh-setup.%d" % pid)


def ssh_command(port, command):
    return SSH + ["-p", str(port), HOST, command]


def ssh(port, command, **kw):
    return as_user(TEST_USER, ssh_command(port, command), capture_output=True, text=True, timeout=60, **kw)


def user_popen(argv, **kw):
    import pwd
    pw = pwd.getpwnam(TEST_USER)
    env = {"HOME": pw.pw_dir, "USER": TEST_USER, "LOGNAME": TEST_USER, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    return subprocess.Popen(["/usr/sbin/runuser", "-u", TEST_USER, "--"] + list(argv), env=env, **kw)


def raw_bytes(shepherd, timeout=30, send=None):
    """Everything a client connecting to the shepherd's port receives until the connection closes."""
    with socket.create_connection(("127.0.0.1", shepherd.port), timeout=timeout) as s:
        if send is not None:
            s.sendall(send)
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                return b"".join(chunks)
            chunks.append(data)


def wait_for(predicate, timeout=30, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


def daemon_pid(shepherd):
    return wait_for(lambda: shepherd.daemon and shepherd.daemon.pid, what="the shepherd's daemon")


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


# --- tight integration ------------------------------------------------------------------------


def test_job_gid_and_environment_reach_the_ssh_session(pam_line, wrapper, tmp_path):
    gid = unused_gids(1)[0]
    spool = make_spool(tmp_path, gid, "FOO_FROM_JOB=hello\nDISPLAY=:99\n")
    with Shepherd([wrapper], env=dict(JOB_ENV, SGE_JOB_SPOOL_DIR=spool)) as sh:
        client = user_popen(ssh_command(sh.port, 'id -G; echo "$FOO_FROM_JOB"; echo "${DISPLAY-unset}"; read x'),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        groups = client.stdout.readline().split()
        # mid-session: the file is there, root's, 0644, holding the spool dir and a newline
        path = setup_file(sh.daemon.pid)
        st = os.lstat(path)
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, 0, 0o644)
        assert open(path).read() == spool + "\n"
        client.stdin.write("\n")
        client.stdin.close()
        out = client.stdout.read()              # not communicate(): readline() may have buffered the rest
        err = client.stderr.read()
        assert client.wait(60) == 0, err
        assert str(gid) in groups
        assert out == "hello\nunset\n"         # DISPLAY is skipped by the module
        sh.wait()
        assert not os.path.lexists(path)


def test_spool_tree_of_the_grid_engine_admin_user_is_trusted(pam_line, wrapper, tmp_path):
    """Like a real execd spool: owned by bootstrap's admin_user (Debian: sgeadmin), found without SGE_ROOT."""
    import pwd
    admin = pwd.getpwnam("sgeadmin").pw_uid
    gid = unused_gids(1)[0]
    spool = make_spool(tmp_path / "execd", gid, owner=admin)
    with Shepherd([wrapper], env=dict(JOB_ENV, SGE_JOB_SPOOL_DIR=spool, SGE_ROOT="/nonexistent")) as sh:
        proc = ssh(sh.port, "id -G")
        assert proc.returncode == 0, proc.stderr
        assert str(gid) in proc.stdout.split()
        sh.wait()


def test_without_job_context_it_is_plain_sshd(pam_line, wrapper):
    with Shepherd([wrapper], env=dict(JOB_ENV)) as sh:
        proc = ssh(sh.port, 'id -G; echo "[$FOO_FROM_JOB]"')
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines()[1] == "[]"
        sh.wait()
        assert not os.path.lexists(setup_file(sh.daemon.pid))


def test_wrapper_exit_status_is_sshds(pam_line, wrapper, tmp_path):
    spool = make_spool(tmp_path, unused_gids(1)[0])
    with Shepherd(["/usr/sbin/sshd", "-i"], env=dict(JOB_ENV)) as plain:
        assert ssh(plain.port, "exit 3").returncode == 3
        plain_status = plain.wait()
    with Shepherd([wrapper, "/usr/sbin/sshd", "-i"], env=dict(JOB_ENV, SGE_JOB_SPOOL_DIR=spool)) as sh:
        assert ssh(sh.port, "exit 3").returncode == 3
        assert sh.wait() == plain_status


def test_32_concurrent_sessions_each_see_their_own_gid(pam_line, wrapper, tmp_path):
    n = 32
    gids = unused_gids(n)
    spools = [make_spool(tmp_path / ("job%d" % i), gid, "TASK_MARK=%d\n" % i, name="4711.%d" % (i + 1))
              for i, gid in enumerate(gids)]
    shepherds = [Shepherd([wrapper], env=dict(JOB_ENV, SGE_JOB_SPOOL_DIR=s, SGE_TASK_ID=str(i + 1)))
                 for i, s in enumerate(spools)]
    clients = []
    try:
        for sh in shepherds:
            clients.append(user_popen(ssh_command(sh.port, 'id -G; echo "$TASK_MARK"; read x; echo done'),
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
        seen = [(c.stdout.readline().split(), c.stdout.readline().strip()) for c in clients]
        # every session is up and waiting: every wrapper's file is still there (none removed early)
        for sh, spool in zip(shepherds, spools):
            assert open(setup_file(sh.daemon.pid)).read() == spool + "\n"
        for c in clients:
            c.stdin.write("\n")
            c.stdin.close()
        results = [(c.stdout.read(), c.stderr.read()) for c in clients]
        for c in clients:
            c.wait(120)
        for i, ((groups, mark), (out, err), c) in enumerate(zip(seen, results, clients)):
            assert c.returncode == 0, err
            assert str(gids[i]) in groups
            assert not set(map(str, gids)) - {str(gids[i])} & set(groups), "another job's gid leaked in"
            assert mark == str(i) and out == "done\n"
        for sh in shepherds:
            sh.wait()
            assert not os.path.lexists(setup_file(sh.daemon.pid))
    finally:
        for c in clients:
            if c.poll() is None:
                c.kill()
        for sh in shepherds:
            sh.close()


# --- exit status, signals, orphans (stand-in daemons) -----------------------------------------

SIGNAL_DAEMON = """#!/usr/bin/python3
import os, signal, sys, time
def got(sig, frame):
    os.write(1, b"got %d\\n" % sig)
    os._exit(40 + sig)
for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
    signal.signal(s, got)
os.write(1, b"ready\\n")
while True:
    time.sleep(1)
"""


@pytest.fixture
def signal_daemon(tmp_path):
    path = tmp_path / "signal-daemon"
    path.write_text(SIGNAL_DAEMON)
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize("argv,status", [
    (["/usr/bin/python3", "-c", "import os; os._exit(7)"], 7),
    (["/usr/bin/python3", "-c", "import os; os.kill(os.getpid(), 9)"], 137),
    (["/usr/bin/python3", "-c", "import os; os.kill(os.getpid(), 15)"], 143),
    (["/bin/true"], 0),
])
def test_exit_status_and_nothing_of_ours_on_the_wire(wrapper, tmp_path, host_ready, argv, status):
    spool = make_spool(tmp_path, unused_gids(1)[0])
    with Shepherd([wrapper] + argv, env=dict(JOB_ENV, SGE_JOB_SPOOL_DIR=spool)) as sh:
        assert raw_bytes(sh) == b""
        assert sh.wait() == status
        assert not os.path.lexists(setup_file(sh.daemon.pid))


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP", "SIGINT", "SIGQUIT", "SIGUSR1", "SIGUSR2"])
def test_signals_reach_the_daemon(wrapper, signal_daemon, tmp_path, host_ready, name):
    sig = getattr(signal, name)
    spool = make_spool(tmp_path, unused_gids(1)[0])
    with Shepherd([wrapper, signal_daemon], env=dict(JOB_ENV, SGE_JOB_SPOOL_DIR=spool)) as sh:
        with socket.create_connection(("127.0.0.1", sh.port), timeout=30) as s:
            f = s.makefile("rb")
            assert f.readline() == b"ready\n"
            assert os.path.exists(setup_file(sh.daemon.pid))
            os.kill(sh.daemon.pid, sig)
            assert f.read() == b"got %d\n" % sig
        assert sh.wait() == 40 + sig
        assert not os.path.lexists(setup_file(sh.daemon.pid))


def test_sigkilled_wrapper_leaves_an_orphan_the_next_session_removes(wrapper, tmp_path, host_ready):
    spool = make_spool(tmp_path, unused_gids(1)[0])
    sleeper = ["/usr/bin/python3", "-c", "import os, time; os.write(1, b'up\\n'); time.sleep(120)"]
    with Shepherd([wrapper] + sleeper, env=dict(JOB_ENV, SGE_JOB_SPOOL_DIR=spool)) as sh:
        with socket.create_connection(("127.0.0.1", sh.port), timeout=30) as s:
            assert s.makefile("rb").readline() == b"up\n"
            wpid = sh.daemon.pid
            kids = children(wpid)
            os.kill(wpid, signal.SIGKILL)         # what qdel does (to the whole process group)
            for k in kids:
                os.kill(k, signal.SIGKILL)
            sh.wait()
    orphan = setup_file(wpid)
    assert os.path.exists(orphan)
    with Shepherd([wrapper, "/bin/true"], env=dict(JOB_ENV)) as sh2:   # no job context needed to clean up
        raw_bytes(sh2)
        sh2.wait()
    assert not os.path.lexists(orphan)


HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
os.unlink(sys.argv[1])
"""


def test_orphans_of_dead_pids_go_live_files_stay(wrapper, host_ready):
    pid_max = int(open("/proc/sys/kernel/pid_max").read())
    dead = [setup_file(pid_max + 101 + i) for i in range(3)]
    for path in dead:
        with open(path, "w") as f:
            f.write("/nonexistent\n")
    live_unlocked = setup_file(os.getpid())                  # a live PID: never removed, locked or not
    assert not os.path.exists(live_unlocked)
    with open(live_unlocked, "w") as f:
        f.write("/x\n")
    locked_dead = setup_file(pid_max + 200)                  # held by a live process: never removed
    holder = subprocess.Popen(["/usr/bin/python3", "-c", HOLDER, locked_dead], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        with Shepherd([wrapper, "/bin/true"], env=dict(JOB_ENV)) as sh:
            raw_bytes(sh)
            sh.wait()
        assert not [p for p in dead if os.path.lexists(p)]
        assert os.path.exists(live_unlocked) and os.path.exists(locked_dead)
    finally:
        holder.stdin.close()
        holder.wait(10)
        for p in dead + [live_unlocked]:
            if os.path.lexists(p):
                os.unlink(p)


# --- a hostile environment ----------------------------------------------------------------------

PLANT = "import os; open(os.path.join(%r, 'PWNED-' + %r), 'w').close()\n"


def plant_everything(evil):
    """Files that would run code if the wrapper's interpreter looked at its cwd, PYTHONPATH or PATH."""
    os.makedirs(os.path.join(evil, "sgewrap"), exist_ok=True)
    for name in ("site", "os", "sitecustomize", "usercustomize", "syslog", "fcntl", "stat", "signal", "_signal",
                 "errno", "pwd", "encodings", "io", "abc", "codecs"):
        with open(os.path.join(evil, name + ".py"), "w") as f:
            f.write(PLANT % (evil, name))
    for name in ("__init__", "rshd", "errors", "locate"):
        with open(os.path.join(evil, "sgewrap", name + ".py"), "w") as f:
            f.write(PLANT % (evil, "sgewrap." + name))
    with open(os.path.join(evil, "startup.py"), "w") as f:
        f.write(PLANT % (evil, "startup"))
    with open(os.path.join(evil, "python3"), "w") as f:
        f.write("#!/bin/sh\ntouch %s/PWNED-python3\nexec /usr/bin/python3 \"$@\"\n" % evil)
    os.chmod(os.path.join(evil, "python3"), 0o755)
    os.chmod(evil, 0o755)


def hostile_env(evil):
    return {"PYTHONPATH": evil, "PYTHONHOME": evil, "PYTHONSTARTUP": os.path.join(evil, "startup.py"),
            "PYTHONINSPECT": "1", "PYTHONUSERBASE": evil, "PYTHONWARNINGS": "error", "PYTHONVERBOSE": "1",
            "PYTHONDEBUG": "1", "PYTHONMALLOC": "debug", "PYTHONFAULTHANDLER": "1", "PYTHONDEVMODE": "1",
            "PYTHONPYCACHEPREFIX": evil, "PATH": evil + ":/usr/local/bin:/usr/bin:/bin",
            "LD_LIBRARY_PATH": evil, "GCONV_PATH": evil, "KRB5_CONFIG": os.path.join(evil, "krb5.conf"),
            "LANG": evil, "BASH_ENV": os.path.join(evil, "startup.py"), "ENV": os.path.join(evil, "startup.py"),
            "LD_PRELOAD": "/lib/x86_64-linux-gnu/libm.so.6"}


def test_hostile_interpreter_environment_changes_nothing(pam_line, wrapper, tmp_path):
    evil = str(tmp_path / "evil")
    os.makedirs(evil)
    plant_everything(evil)
    gid = unused_gids(1)[0]
    spool = make_spool(tmp_path / "spool", gid)
    env = dict(JOB_ENV, SGE_JOB_SPOOL_DIR=spool, **hostile_env(evil))
    with Shepherd([wrapper], env=env, cwd=evil) as sh:
        proc = ssh(sh.port, "id -G")
        assert proc.returncode == 0, proc.stderr
        assert str(gid) in proc.stdout.split()
        sh.wait()
    assert [n for n in os.listdir(evil) if n.startswith("PWNED")] == []


def test_hostile_environment_never_reaches_the_daemon(wrapper, tmp_path, host_ready):
    """/usr/bin/env as the daemon prints what it got onto the wire: nothing of ours around it."""
    evil = str(tmp_path / "evil")
    os.makedirs(evil)
    plant_everything(evil)
    spool = make_spool(tmp_path / "spool", unused_gids(1)[0])
    env = dict(JOB_ENV, SGE_JOB_SPOOL_DIR=spool, **hostile_env(evil))
    with Shepherd([wrapper, "/usr/bin/env"], env=env, cwd=evil) as sh:
        data = raw_bytes(sh)
        assert sh.wait() == 0
    seen = dict(line.split("=", 1) for line in data.decode().splitlines())
    assert seen["PATH"] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert seen["SGE_JOB_SPOOL_DIR"] == spool and seen["JOB_ID"] == "4711" and seen["SGE_TASK_ID"] == "undefined"
    assert not [k for k in seen if k.startswith(("LD_", "PYTHON")) or k in ("GCONV_PATH", "KRB5_CONFIG", "LANG",
                                                                              "BASH_ENV", "ENV")]
    assert [n for n in os.listdir(evil) if n.startswith("PWNED")] == []


def test_daemon_arguments_are_never_seen_by_a_shell(wrapper, tmp_path, host_ready):
    marker = tmp_path / "marker"
    words = ["$(touch %s)" % marker, "`touch %s`;" % marker, "|", "touch", str(marker)]
    with Shepherd([wrapper, "/usr/bin/printf", "[%s]"] + words, env=dict(JOB_ENV)) as sh:
        assert raw_bytes(sh) == "".join("[%s]" % w for w in words).encode()
        assert sh.wait() == 0
    assert not marker.exists()


def test_user_made_spool_dir_gives_no_group(pam_line, wrapper, tmp_path):
    """The job owner points SGE_JOB_SPOOL_DIR at her own directory asking for gid 0 (root's group)."""
    import pwd
    user = pwd.getpwnam(TEST_USER)
    base = tmp_path / "mine"
    spool = make_spool(base, 0, "FOO_FROM_JOB=evil\n", owner=user.pw_uid)
    with Shepherd([wrapper], env=dict(JOB_ENV, SGE_JOB_SPOOL_DIR=spool)) as sh:
        proc = ssh(sh.port, 'id -G; echo "[$FOO_FROM_JOB]"')
        assert proc.returncode == 0, proc.stderr
        groups, foo = proc.stdout.splitlines()
        assert "0" not in groups.split() and foo == "[]"
        sh.wait()
        assert not os.path.lexists(setup_file(sh.daemon.pid))


@pytest.mark.parametrize("case,argv,status", [
    ("bad option", ["--bogus"], 64),
    ("relative daemon", ["usr/sbin/sshd", "-i"], 64),
    ("missing daemon", ["/usr/sbin/no-such-sshd", "-i"], 69),
    ("not executable", ["/etc/passwd"], 69),
    ("help on the wire", ["--help"], 64),
    ("refused without job", ["--require-job"], 72),
    ("shell metacharacters", ["/usr/sbin/sshd;id"], 69),
])
def test_failures_leave_the_wire_silent(wrapper, host_ready, case, argv, status):
    with Shepherd([wrapper] + argv, env=dict(JOB_ENV, SGE_JOB_SPOOL_DIR="/nonexistent")) as sh:
        assert raw_bytes(sh) == b"", case
        assert sh.wait() == status, case


# --- syslog, in a private mount namespace whose /dev/log is ours (or missing, or broken) ----------

NSDEV = r"""
import os, stat, subprocess, sys
mnt, spec = sys.argv[1], sys.argv[2]
argv = sys.argv[4:]
subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755", "rshd-test-dev", mnt], check=True)
for name, (major, minor) in {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8),
                             "urandom": (1, 9), "tty": (5, 0)}.items():
    os.mknod(os.path.join(mnt, name), 0o666 | stat.S_IFCHR, os.makedev(major, minor))
    os.chmod(os.path.join(mnt, name), 0o666)
for sub in ("pts", "shm"):
    os.mkdir(os.path.join(mnt, sub))
    subprocess.run(["mount", "--bind", "/dev/" + sub, os.path.join(mnt, sub)], check=True)
os.symlink("pts/ptmx", os.path.join(mnt, "ptmx"))
os.symlink("/proc/self/fd", os.path.join(mnt, "fd"))
for i, n in enumerate(("stdin", "stdout", "stderr")):
    os.symlink("/proc/self/fd/%d" % i, os.path.join(mnt, n))
if spec != "none":
    os.symlink(spec, os.path.join(mnt, "log"))
subprocess.run(["mount", "--move", mnt, "/dev"], check=True)
os.execv(argv[0], argv)
"""


@pytest.fixture
def private_dev(tmp_path, host_ready):
    """argv prefix running the rest with /dev/log -> SPEC ('none': no /dev/log) in a private mount namespace."""
    helper = tmp_path / "nsdev.py"
    helper.write_text(NSDEV)
    mnt = tmp_path / "mnt"
    mnt.mkdir()

    def prefix(spec):
        return ["/usr/bin/unshare", "--mount", "--propagation", "private", "/usr/bin/python3", "-I", str(helper),
                str(mnt), spec, "--"]
    return prefix


@pytest.fixture
def syslog_socket(tmp_path):
    path = str(tmp_path / "log")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    os.chmod(path, 0o666)
    yield s, path
    s.close()


def messages(sock, pid, timeout=5):
    sock.settimeout(timeout)
    out = []
    try:
        while True:
            data = sock.recv(65536).decode()
            if "rshdwrapper[%d]:" % pid in data:
                out.append(data)
            if "session" in data or "refusing" in data or "error" in data:
                sock.settimeout(0.3)
    except socket.timeout:
        return out


def test_syslog_gets_the_reason_and_one_info_line(wrapper, private_dev, syslog_socket, tmp_path):
    sock, path = syslog_socket
    with Shepherd(private_dev(path) + [wrapper, "/bin/true"], env=dict(JOB_ENV)) as sh:
        assert raw_bytes(sh) == b""
        assert sh.wait() == 0
        logged = messages(sock, sh.daemon.pid)
    # authpriv (10) * 8 + warning (4) = 84; + info (6) = 86
    assert logged[0].startswith("<84>") and "no job context" in logged[0]
    assert "SGE_JOB_SPOOL_DIR is not set" in logged[0]
    assert logged[1].startswith("<86>") and "session without job context daemon /bin/true exit 0" in logged[1]
    assert len(logged) == 2


def test_syslog_info_line_names_job_task_gid_daemon_status(wrapper, private_dev, syslog_socket, tmp_path):
    sock, path = syslog_socket
    gid = unused_gids(1)[0]
    spool = make_spool(tmp_path / "spool", gid)
    env = dict(JOB_ENV, SGE_JOB_SPOOL_DIR=spool, SGE_TASK_ID="3")
    with Shepherd(private_dev(path) + [wrapper, "--facility=daemon", "/bin/false"], env=env) as sh:
        raw_bytes(sh)
        assert sh.wait() == 1
        logged = messages(sock, sh.daemon.pid)
    assert len(logged) == 1
    assert logged[0].startswith("<30>")      # daemon (3) * 8 + info (6)
    assert "session job 4711 task 3 spool %s gid %d daemon /bin/false exit 1" % (spool, gid) in logged[0]


def test_syslog_says_why_a_spool_dir_is_refused(wrapper, private_dev, syslog_socket, tmp_path):
    sock, path = syslog_socket
    spool = make_spool(tmp_path / "spool", 4242)
    os.chmod(spool, 0o777)
    with Shepherd(private_dev(path) + [wrapper, "--require-job", "/bin/true"],
                  env=dict(JOB_ENV, SGE_JOB_SPOOL_DIR=spool)) as sh:
        assert raw_bytes(sh) == b""
        assert sh.wait() == 72
        logged = messages(sock, sh.daemon.pid)
    assert len(logged) == 1 and logged[0].startswith("<83>")    # authpriv err
    assert "refusing the session (--require-job)" in logged[0] and "writable by group or others" in logged[0]


def test_log_injection_is_neutralised(wrapper, private_dev, syslog_socket, tmp_path):
    sock, path = syslog_socket
    with Shepherd(private_dev(path) + [wrapper, "/bin/true"],
                  env=dict(JOB_ENV, SGE_JOB_SPOOL_DIR="relative\nrshdwrapper[1]: fake", JOB_ID="1\n2")) as sh:
        raw_bytes(sh)
        sh.wait()
        logged = messages(sock, sh.daemon.pid)
    assert all("\n" not in m.rstrip("\n") for m in logged)


@pytest.mark.parametrize("spec", ["none", "stale-socket", "regular-file"])
def test_missing_or_broken_syslog_does_not_break_the_session(pam_line, wrapper, private_dev, tmp_path, spec):
    target = "none"
    if spec == "stale-socket":
        target = str(tmp_path / "stale")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(target)
        s.close()                          # the file stays, nobody listens: ECONNREFUSED
    elif spec == "regular-file":
        target = str(tmp_path / "plain")
        open(target, "w").close()
    gid = unused_gids(1)[0]
    spool = make_spool(tmp_path / "spool", gid)
    with Shepherd(private_dev(target) + [wrapper], env=dict(JOB_ENV, SGE_JOB_SPOOL_DIR=spool)) as sh:
        proc = ssh(sh.port, "id -G")
        assert proc.returncode == 0, proc.stderr
        assert str(gid) in proc.stdout.split()
        sh.wait()
        assert not os.path.lexists(setup_file(sh.daemon.pid))
    # and a failing wrapper with no syslog still writes nothing on the wire
    with Shepherd(private_dev(target) + [wrapper, "--bogus"], env=dict(JOB_ENV)) as sh:
        assert raw_bytes(sh) == b""
        assert sh.wait() == 64


def test_a_hung_syslog_delays_but_does_not_stop_the_session(wrapper, private_dev, syslog_socket, tmp_path):
    """A syslog daemon that reads nothing (full queue): every message would block send(2) forever."""
    sock, path = syslog_socket
    filler = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    filler.setblocking(False)
    filler.connect(path)
    try:
        while True:
            filler.send(b"<13>filler")
    except BlockingIOError:
        pass
    start = time.monotonic()
    with Shepherd(private_dev(path) + [wrapper, "/usr/bin/printf", "served"], env=dict(JOB_ENV)) as sh:
        assert raw_bytes(sh, timeout=20) == b"served"
        assert sh.wait(20) == 0
    assert time.monotonic() - start < 5
    filler.close()
