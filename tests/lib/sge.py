"""Driving the real one-host Grid Engine from tests and the benchmark (as root).

The values applied come from :mod:`sgewrap.admin.sgeconf` (the same code behind
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
import collections
import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time

from sgewrap.admin import sgeconf
from sgewrap.admin.shepherd import as_user
from sgewrap.rootside import procs

from . import CLUSTER_STATE, CLUSTER_UP, PASSWORD_FILE, REPO, TEST_USER, wait_until

SGE_ROOT = "/var/lib/gridengine"
SGE_CELL = "default"
HOST = socket.gethostname()
QUEUE = "test.q"
PE = "test.pe"
ENV = {"SGE_ROOT": SGE_ROOT, "SGE_CELL": SGE_CELL, "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"}


def qconf(*args, check=True):
    proc = subprocess.run(["/usr/bin/qconf"] + list(args), env=ENV, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError("qconf %s failed (%d): %s" % (
            " ".join(args), proc.returncode, (proc.stderr or proc.stdout).strip()))
    return proc.stdout


def sgewrap(wrappers, *args):
    """The installed ``WRAPPERS/sgewrap ARGS...`` as root with Grid Engine's environment."""
    return subprocess.run([os.path.join(wrappers, "sgewrap"), *args], env=dict(ENV), capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)


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


NODE2 = "node2"              #: the firewalled second execution host (tests/cluster/up)
FW_QUEUE = "fw.q"            #: its queue
FW_PE = "fw.pe"              #: $round_robin over test.q and fw.q: master here, slave tasks on node2
NODE3 = "node3"              #: the third execution host, reachable on any port (tests/cluster/up)
OPEN_QUEUE = "open.q"        #: its queue
OPEN_PE = "open.pe"          #: $round_robin over test.q and open.q: a job with ranks on vm and node3
NODE4 = "node4"              #: the Debian 13 execution host (trixie's execd, OpenSSH 10; tests/cluster/up)
DEB13_QUEUE = "deb13.q"      #: its queue
MIXED_PE = "mixed.pe"        #: $round_robin over test.q and deb13.q: a job on a Debian 12 and a Debian 13 host
NODE4_ROOT = "/var/cache/sgewrap-test/node4"     #: its root file system, as seen from this host
EXEC_HOSTS = (HOST, NODE2, NODE3, NODE4)
SPOOL = "/var/spool/gridengine/execd"


def root_of(host):
    """Where ``host``'s own root file system is seen from here ('' for the hosts that share ours)."""
    return NODE4_ROOT if host == NODE4 else ""


def spool_of(host):
    """``host``'s execd spool directory, as seen from here."""
    return root_of(host) + os.path.join(SPOOL, host)


def node4_holder():
    """The PID whose network, UTS and mount namespaces are node4's (tests/cluster/up records it)."""
    with open(os.path.join(CLUSTER_STATE, NODE4 + "-holder.pid")) as f:
        return int(f.read())


def on_node4(argv, user=None, env=None, **kwargs):
    """argv on node4 (its namespaces, chrooted into its root), as root or as ``user``, with the Grid
    Engine environment and a PATH (plus ``env``); a CompletedProcess.  What an administrator or a
    user types on a Debian 13 host."""
    words = ["%s=%s" % item for item in dict(ENV, PATH="/usr/sbin:/usr/bin:/sbin:/bin", **(env or {})).items()]
    inner = ["/usr/bin/env", "-i"] + words + list(argv)
    if user is not None:
        inner = ["/usr/sbin/runuser", "-u", user, "--"] + inner
    return subprocess.run(["nsenter", "-t", str(node4_holder()), "-n", "-u", "-m", "chroot", NODE4_ROOT] + inner,
                          **kwargs)


def repo_on_node4():
    """This tree (REPO) visible on node4 at its own path, read-only, as tests/cluster/up binds the tree it
    was run from: a test run from another checkout (a git worktree) binds its own beside it, in node4's
    mount namespace, so that node4 builds and installs the code under test."""
    inside = NODE4_ROOT + REPO
    if os.path.exists(os.path.join("/proc", str(node4_holder()), "root" + inside, "setup.cfg")):
        return
    os.makedirs(inside, exist_ok=True)
    subprocess.run(["nsenter", "-t", str(node4_holder()), "-m", "sh", "-c",
                    'mount --bind "$1" "$2" && mount -o remount,bind,ro "$2"', "sh", REPO, inside], check=True)


def _netns(pid):
    """The network namespace process ``pid`` runs in (None if it is gone)."""
    return procs.link(pid, "ns/net")


def _execd_pids():
    """{network namespace: PID} of the running sge_execd daemons, never a zombie.

    The init script leaves its daemonizing parent as ``[sge_execd] <defunct>``
    for a while: taking that one for the daemon made a restart a no-op and the
    next jobs ran with the old configuration.  node2's execd shares our PID
    space but not our network namespace.
    """
    out = subprocess.run(["pgrep", "-x", "-r", "D,R,S,T", "sge_execd"], capture_output=True,
                         text=True).stdout.split()
    found = {}
    for pid in map(int, out):
        found.setdefault(_netns(pid), pid)
    return found


def _execd_pid():
    """This host's sge_execd (not node2's)."""
    return _execd_pids().get(_netns(os.getpid()))


def restart_execd(timeout=30):
    """Stop both execution daemons (jobs keep running) and start them again: they read the
    configuration anew.  node2's comes back through tests/cluster/up."""
    old = _execd_pids()
    mine = old.get(_netns(os.getpid()))
    record = os.path.join(CLUSTER_STATE, "sge_execd.pid")
    ours = mine is None or (os.path.exists(record) and open(record).read().strip() == str(mine))
    for pid in old.values():
        os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not any(os.path.exists("/proc/%d" % pid) for pid in old.values()), timeout, 0.05)
    subprocess.run(["/etc/init.d/gridengine-exec", "start"], env=ENV, capture_output=True)
    if not wait_until(lambda: _execd_pid() not in (None, mine), timeout, 0.05):
        raise RuntimeError("sge_execd did not start again (still %r)" % _execd_pid())
    if ours:  # tests/cluster/down stops what up started: keep its record true
        with open(record, "w") as f:
            f.write("%d\n" % _execd_pid())
    subprocess.run([CLUSTER_UP], check=True, capture_output=True, env=dict(os.environ, QUIET="1"))


def probe(entries, timeout=90):
    """Poll until a job shows the exec side running with ``entries``; the seconds it took.

    The probe is a ``qrsh`` (rsh slot) printing the shepherd's configuration copy.
    """
    want = "rsh_daemon=%s" % entries["rsh_daemon"]
    start = time.monotonic()
    last = None

    def uses_it():
        nonlocal last
        last = user_run(["/usr/bin/qrsh", "-now", "yes", "-q", QUEUE, "grep", "^rsh_daemon=",
                         "$SGE_JOB_SPOOL_DIR/config"], capture_output=True, text=True, timeout=75,
                        stdin=subprocess.DEVNULL)
        return last.returncode == 0 and want in last.stdout.splitlines()
    if wait_until(uses_it, timeout, 0.5):
        return time.monotonic() - start
    raise RuntimeError("exec side does not use %r after %ds: %r / %r" % (want, timeout, last.stdout, last.stderr))


def apply(entries):
    """Set the six entries in the global configuration and wait until execd uses them."""
    conf = sgeconf.parse(show_global())
    set_global(sgeconf.render(sgeconf.with_entries(conf, entries)))
    restart_execd()
    return probe(entries)


def job_stack(wrappers):
    """/etc/pam.d/sge-sshd for ``wrappers`` (the job sshds' PAM service, as sgewrap config writes it)."""
    from sgewrap.admin import pam
    if os.path.exists(pam.JOB_PAM_FILE) and not pam.is_job_stack():
        os.unlink(pam.JOB_PAM_FILE)
    pam.install_job_stack(wrappers)


def front_state():
    """True if the qlogin/qrsh front (sgewrap front) is in place on this host."""
    from sgewrap.admin import fronts
    return all(fronts.state(fronts.client_dir(SGE_ROOT)).values())


def front(wanted):
    """The qlogin/qrsh front in place (True) or Grid Engine's own names (False), as sgewrap config does."""
    from sgewrap.admin import fronts
    fronts.apply_here(wanted, SGE_ROOT, report=lambda *a: None)


@contextlib.contextmanager
def commands(entries):
    """The ``*_command`` entries of ``entries`` in the global configuration for a while (the client
    side reads them at once: no execd restart)."""
    conf = sgeconf.parse(show_global())
    keys = [k for k in entries if k.endswith("_command")]
    before = {k: conf.get(k) for k in keys}
    set_global(sgeconf.render(sgeconf.with_entries(conf, {k: entries[k] for k in keys})))
    try:
        yield
    finally:
        set_global(sgeconf.render(sgeconf.with_entries(sgeconf.parse(show_global()), before)))


def restore(text):
    set_global(text)
    restart_execd()


def queues_in_error():
    """Queue instances in error state (E): a shepherd that failed before its job ran puts its
    queue there, and then no job is scheduled on it until ``qmod -c``."""
    out = subprocess.run(["/usr/bin/qselect", "-qs", "E"], env=ENV, capture_output=True, text=True).stdout
    return out.split()


def clear_queue_errors():
    """``qmod -c`` every queue instance in error state; the ones that were."""
    stuck = queues_in_error()
    if stuck:
        subprocess.run(["/usr/bin/qmod", "-c", *stuck], env=ENV, capture_output=True)
    return stuck


def clean_queue(timeout=60):
    """No job of the test user left, the test queue out of error state (a killed job puts it there)."""
    subprocess.run(["/usr/bin/qdel", "-u", TEST_USER], env=ENV, capture_output=True)
    if not wait_until(lambda: not user_jobs(), timeout, 0.2):
        raise RuntimeError("jobs of %s still there after qdel" % TEST_USER)
    clear_queue_errors()


def qstat_all():
    """``qstat -u *``: every user's jobs."""
    return subprocess.run(["/usr/bin/qstat", "-u", "*"], env=ENV, capture_output=True, text=True).stdout


def running(job):
    """A match if qstat shows job ``job`` (its number) running (state r), else None."""
    import re
    return re.search(r"^\s*%s\s.*\sr\s" % job, qstat_all(), re.M)


def job_gone(name, timeout=60):
    """Wait until no job named ``name`` is known to qstat; False if one still is."""
    return wait_until(lambda: name[:10] not in qstat_all(), timeout, 0.2)


def comm(pid):
    """The process's name (/proc/PID/comm), or None if it is gone."""
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return None


def cmdline(pid):
    """The process's argv joined by NUL bytes, as /proc shows it (b"" if it is gone)."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read()
    except OSError:
        return b""


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


def qrsh(*words, queue=QUEUE, **kwargs):
    """``qrsh -now yes -q QUEUE WORDS...`` as the test user; CompletedProcess (output captured)."""
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("timeout", 120)
    return user_run(["/usr/bin/qrsh", "-now", "yes", "-q", queue] + list(words), **kwargs)


def login(argv, password=False, command="echo $((6*7))-$(id -un)", expect=None, timeout=90, capture=False,
          env=None, user=TEST_USER):
    """Drive an interactive qlogin/qrsh ``argv`` as the test user in a real pty: wait for the
    shell prompt (typing user and password first if asked), type ``command``, wait for
    ``expect`` (default: what the default command prints), exit; the client's exit code
    (``capture``: everything the session showed, once it exited 0).  ``env``: more variables."""
    from .ptydrive import user_pty
    session = user_pty(argv, env=dict(user_env(user), **(env or {})), user=user)
    try:
        if password:
            session.expect("login:", timeout=timeout)
            session.send(TEST_USER + "\r")
            session.expect("assword:")
            with open(PASSWORD_FILE) as f:
                session.send(f.read().strip() + "\r")
        session.expect("$ ", timeout=timeout)
        session.send(command + "\r")
        session.expect(expect or "42-" + user)
        session.send("exit\r")
        code = session.wait(60)
        if capture:
            assert code == 0, session.buffer.decode(errors="replace")[-2000:]
            return session.buffer.decode(errors="replace")
        return code
    finally:
        session.kill()


FAN_OUT_MASTER = """#!/bin/sh
# the master task of a tight parallel job: {tasks} qrsh -inherit at once, to {targets} in turn
set -- {targets}
pids=""
echo "fan-out start $(date +%s.%N)"
for i in $(seq {tasks}); do
    target=$(eval echo \\${{$(( (i - 1) % $# + 1 ))}})
    /usr/bin/qrsh -inherit -nostdin $target {task} $i &
    pids="$pids $!"
done
fail=0
for p in $pids; do wait $p || fail=$((fail + 1)); done
echo "fan-out end $(date +%s.%N)"
echo "master on $(hostname) failed=$fail"
exit $fail
"""
FAN_OUT_TASK = """#!/bin/sh
echo "task $1 on $(hostname) gid=$(cat "$SGE_JOB_SPOOL_DIR/addgrpid") groups=$(id -G | tr ' ' ,) pid=$$"
"""


@contextlib.contextmanager
def user_script(text, name="script.sh"):
    """An executable script holding ``text`` where the test user can run it; its path."""
    with tempfile.TemporaryDirectory(prefix="sgewrap-script.") as scratch:
        os.chmod(scratch, 0o755)
        path = os.path.join(scratch, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o755)
        yield path


@contextlib.contextmanager
def running_fan_out(target, command, *qsub_options, timeout=90):
    """A batch parallel job of the test user whose master (here) runs ``qrsh -inherit TARGET
    COMMAND``; yields its job number once the task's shepherd works on TARGET; deleted after."""
    scratch = tempfile.mkdtemp(prefix="sgewrap-pe.")
    os.chmod(scratch, 0o755)
    master = os.path.join(scratch, "master.sh")
    with open(master, "w") as f:
        f.write("#!/bin/sh\n/usr/bin/qrsh -inherit -nostdin %s %s\n" % (target, command))
    os.chmod(master, 0o755)
    out = user_run(["/usr/bin/qsub", "-terse", "-q", "%s,%s" % (QUEUE, FW_QUEUE), "-masterq",
                    "%s@%s" % (QUEUE, HOST), *qsub_options, master], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    job = out.stdout.strip()
    try:
        tasks = "/var/spool/gridengine/execd/%s/active_jobs/%s.1" % (target, job)
        if not wait_until(lambda: os.path.isdir(tasks) and [d for d in os.listdir(tasks)
                                                            if os.path.exists(os.path.join(tasks, d, "pid"))],
                          timeout, 0.3):
            raise RuntimeError("no task of job %s started on %s" % (job, target))
        yield job
    finally:
        delete(job)
        subprocess.run(["rm", "-rf", scratch])


def delete(job, timeout=60):
    """qdel, and wait until no host keeps a trace of the job (the next test must not see it)."""
    import re
    subprocess.run(["/usr/bin/qdel", job], env=ENV, capture_output=True)
    traces = ["%s/active_jobs/%s.1" % (spool_of(h), job) for h in EXEC_HOSTS]
    return wait_until(lambda: not (any(os.path.exists(t) for t in traces)
                                   or re.search(r"^\s*%s\s" % job, qstat_all(), re.M)), timeout)


Task = collections.namedtuple("Task", "number host gid groups pid")


def fan_out(tasks, target, *qrsh_options, queue=QUEUE, timeout=300):
    """A parallel job (``qrsh QRSH_OPTIONS... MASTER``) whose master starts ``tasks`` ``qrsh -inherit
    TARGET`` at once (TARGET: a host, or a tuple of hosts taken in turn); (CompletedProcess,
    [Task(number, host, its addgrpid, its groups, its shell's PID)])."""
    targets = " ".join(target) if isinstance(target, (tuple, list)) else target
    import re
    scratch = tempfile.mkdtemp(prefix="sgewrap-fan-out.")
    try:
        os.chmod(scratch, 0o755)
        master, task = os.path.join(scratch, "master.sh"), os.path.join(scratch, "task.sh")
        with open(master, "w") as f:
            f.write(FAN_OUT_MASTER.format(tasks=tasks, targets=targets, task=task))
        with open(task, "w") as f:
            f.write(FAN_OUT_TASK)
        os.chmod(master, 0o755)
        os.chmod(task, 0o755)
        proc = qrsh(*qrsh_options, master, queue=queue, stdin=subprocess.DEVNULL, text=True, timeout=timeout)
    finally:
        subprocess.run(["rm", "-rf", scratch])
    found = re.findall(r"^task (\d+) on (\S+) gid=(\d+) groups=(\S+) pid=(\d+)$", proc.stdout, re.M)
    return proc, [Task(int(n), host, gid, groups.split(","), int(pid)) for n, host, gid, groups, pid in found]


def task_gids(job):
    """{additional group id: host} of every task of ``job`` running now (master and qrsh -inherit
    tasks, read from the execution hosts' spool directories)."""
    found = {}
    for host in EXEC_HOSTS:
        top = "%s/active_jobs/%s.1" % (spool_of(host), job)
        for directory in [top] + [os.path.join(top, d) for d in (os.listdir(top) if os.path.isdir(top) else ())]:
            try:
                with open(os.path.join(directory, "addgrpid")) as f:
                    found[int(f.read().strip())] = host
            except (OSError, ValueError):
                pass
    return found


def proc_groups(pid):
    """The supplementary groups of process ``pid`` (empty if it is gone).  Not procs.groups_of, which
    gives a zombie none: what a test says is left of a job counts zombies too."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("Groups:"):
                    return {int(g) for g in line.split()[1:]}
    except OSError:
        pass
    return set()


def processes_in_groups(gids):
    """{PID: command line} of every process carrying one of ``gids``."""
    gids = set(gids)
    return {int(p): cmdline(int(p)).replace(b"\0", b" ").decode(errors="replace").strip()
            for p in os.listdir("/proc") if p.isdigit() and proc_groups(int(p)) & gids}


def host_of(pid):
    """The execution host whose network namespace process ``pid`` runs in."""
    ns = subprocess.run(["ip", "netns", "identify", str(pid)], capture_output=True, text=True).stdout.strip()
    return {"sgewrap-node2": NODE2, "sgewrap-node3": NODE3}.get(ns, HOST if not ns else ns)


#: what a session's sshd is called, on OpenSSH 9.2 and 10 (sshd -i execs sshd-session, which runs sshd-auth
#: for authentication; a job sshd started by the launcher keeps the launcher's name until sshd execs)
SSHD_PROCESSES = ("sshd", "sge-sshd", "sshd-session", "sshd-auth")


def processes_of(user, names):
    """{PID: name} of the processes of ``user`` named one of ``names`` (/proc/PID/comm)."""
    import pwd
    uid = pwd.getpwnam(user).pw_uid
    found = {}
    for p in os.listdir("/proc"):
        if p.isdigit() and comm(int(p)) in names:
            try:
                if os.stat("/proc/" + p).st_uid == uid:
                    found[int(p)] = comm(int(p))
            except OSError:
                pass
    return found


@contextlib.contextmanager
def batch_job(script, *qsub_options):
    """A batch job of the test user running ``script`` (text), its output in a file; yields
    (job number, path of the output); deleted (and waited for) after."""
    import pwd
    scratch = tempfile.mkdtemp(prefix="sgewrap-job.")
    pw = pwd.getpwnam(TEST_USER)
    os.chown(scratch, pw.pw_uid, pw.pw_gid)
    path, out = os.path.join(scratch, "job.sh"), os.path.join(scratch, "out")
    with open(path, "w") as f:
        f.write(script)
    os.chmod(path, 0o755)
    proc = user_run(["/usr/bin/qsub", "-terse", "-j", "y", "-o", out, *qsub_options, path],
                    capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    job = proc.stdout.strip()
    try:
        yield job, out
    finally:
        delete(job)
        subprocess.run(["rm", "-rf", scratch])


def wait_for_lines(path, pattern, count, timeout=120):
    """The lines of file ``path`` matching ``pattern`` once there are ``count`` of them."""
    import re

    def lines():
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            text = ""
        return text, re.findall(pattern, text, re.M)
    wait_until(lambda: len(lines()[1]) >= count, timeout, 0.2)
    text, found = lines()
    if len(found) >= count:
        return found
    raise AssertionError("%d of %d lines matching %r after %ds:\n%s" % (len(found), count, pattern, timeout, text))


def user_uid(user=TEST_USER):
    import pwd
    return pwd.getpwnam(user).pw_uid


def wait_queues_up(*queues, timeout=60):
    """Wait until no instance of ``queues`` is in unknown state (u): after an execd restart a queue
    takes jobs again only once its execd has reported."""
    if not wait_until(lambda: not subprocess.run(["/usr/bin/qselect", "-q", ",".join(queues), "-qs", "u"], env=ENV,
                                                 capture_output=True, text=True).stdout.strip(), timeout, 0.5):
        raise RuntimeError("queue instances still in unknown state: %s" % ",".join(queues))


def setup_files():
    """The names of the setup files now."""
    from sgewrap.rootside import setupfile
    return {n for n in os.listdir(setupfile.SETUP_DIR) if n.startswith(setupfile.PREFIX)}


def user_jobs(user=TEST_USER):
    """``qstat -u USER``: empty when the user has no job (any more)."""
    return subprocess.run(["/usr/bin/qstat", "-u", user], env=ENV, capture_output=True, text=True).stdout.strip()


def wait_no_user_jobs(user=TEST_USER, timeout=60):
    """Wait until ``user`` has no job (the slots of the jobs before are free); what is left."""
    wait_until(lambda: not user_jobs(user), timeout, 0.5)
    return user_jobs(user)


def fan_out_seconds(stdout):
    """From the master's first qrsh -inherit to the last task's exit, as the master measured it."""
    import re
    start = float(re.search(r"^fan-out start ([\d.]+)$", stdout, re.M).group(1))
    return float(re.search(r"^fan-out end ([\d.]+)$", stdout, re.M).group(1)) - start
