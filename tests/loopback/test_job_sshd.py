"""The job sshd (``sge-sshd -i``) with its own PAM service, the real pam_sge-qrsh-setup and the real
``node_access session`` hook, behind a stand-in shepherd on loopback; a second real user attacks.

The stand-in (sgewrap.admin.shepherd) is a root process whose executable is called
sge_shepherd, working in a fake job spool directory: to the hook it is a
shepherd.  The client is plain ssh as the test user (the job's owner) or as
the second user, each with a key of their own.  PIDs are above 150000 here
(tests/cluster/up moves the counter): the module's own grandparent lookup
would fail, so these tests prove the getppid() path.  Holds the host lock
while /etc/pam.d/sge-sshd (or /etc/pam.d/sshd) is changed.
"""
import grp
import os
import pwd
import signal
import socket
import subprocess
import time

import pytest

from lib import SSH, TEST_USER, auth_log_since, auth_log_size, host_lock, make_spool, wait_until
from lib.rootside import REFORKER, beating, lent_job_stack
from lib.sge import setup_files
from sgewrap.admin import pam
from sgewrap.rootside import procs, setupfile
from sgewrap.admin.shepherd import Shepherd, as_user

pytestmark = pytest.mark.root

OTHER_USER = "sgeother"
HOST = socket.gethostname()


def unused_gids(n, start=64000):
    used = {g.gr_gid for g in grp.getgrall()}
    return [g for g in range(start, 65500) if g not in used][:n]


@pytest.fixture(scope="module")
def job_stack(host_ready, installed):
    """/etc/pam.d/sge-sshd for the installed wrappers (put back as found); nobody changes it meanwhile."""
    with lent_job_stack(installed):
        yield installed


@pytest.fixture
def job_sshd(job_stack):
    return [os.path.join(job_stack, "sge-sshd"), "-i"]


@pytest.fixture
def spool(tmp_path):
    os.chmod(tmp_path, 0o755)
    return make_spool(tmp_path, unused_gids(1)[0], TEST_USER)


def gid_of(spool):
    return int(open(os.path.join(spool, "addgrpid")).read())


def job_env(spool):
    return {"PATH": "/usr/bin:/bin", "SGE_JOB_SPOOL_DIR": spool, "JOB_ID": "4711", "SGE_TASK_ID": "undefined"}


def ssh_command(port, command):
    return SSH + ["-p", str(port), HOST, command]


def ssh(port, command, user=TEST_USER, **kw):
    return as_user(user, ssh_command(port, command), capture_output=True, text=True, timeout=60, **kw)


def user_popen(argv, user=TEST_USER, **kw):
    pw = pwd.getpwnam(user)
    env = {"HOME": pw.pw_dir, "USER": user, "LOGNAME": user, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    return subprocess.Popen(["/usr/sbin/runuser", "-u", user, "--"] + list(argv), env=env, **kw)


# --- tied to the job, at any PID ------------------------------------------------------------------


def cgroup_of(pid):
    """The cgroup v2 path of ``pid`` ("" if it has none)."""
    for line in open("/proc/%d/cgroup" % pid):
        if line.startswith("0::"):
            return line[3:].strip()
    return ""


def cgroup2_mount():
    for line in open("/proc/self/mountinfo"):
        if " - cgroup2 " in line:
            return line.split()[4]
    return None


def test_the_owners_session_carries_the_job_group_and_environment_at_high_pids(job_sshd, spool):
    """pam_sgewrap gives the session the job's group and environment, in a cgroup of its own named
    for the job and the job sshd; no setup file is written for it (none can be left behind)."""
    gid = gid_of(spool)
    with Shepherd(job_sshd, env=job_env(spool), cwd=spool) as sh:
        client = user_popen(ssh_command(sh.port, 'echo $$; id -G; echo "$FOO_FROM_JOB"; read x'),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        shell_pid = int(client.stdout.readline())
        groups = client.stdout.readline().split()
        assert not os.path.lexists(setupfile.path_of(setupfile.SETUP_DIR, sh.daemon_pid))
        group = cgroup_of(shell_pid)
        assert group.endswith("/sgewrap-4711.1-%d" % sh.daemon_pid), group
        assert cgroup_of(sh.daemon_pid) == group
        client.stdin.write("\n")
        client.stdin.close()
        out = client.stdout.read()
        assert client.wait(60) == 0, client.stderr.read()
        assert shell_pid > 99999 and sh.daemon_pid > 99999    # where the old module's %5d lookup fails
        assert str(gid) in groups
        assert out == "hello\n"
        sh.wait()
    assert wait_until(lambda: not os.path.exists(cgroup2_mount() + group), 10, 0.02)    # removed at the end


def test_spool_tree_of_the_grid_engine_admin_user_is_trusted(job_sshd, tmp_path):
    """Like a real execd spool: owned by bootstrap's admin_user (Debian: sgeadmin)."""
    os.chmod(tmp_path, 0o755)
    admin = pwd.getpwnam("sgeadmin").pw_uid
    spool = make_spool(tmp_path / "execd", unused_gids(1)[0], TEST_USER, admin_uid=admin)
    with Shepherd(job_sshd, env=job_env(spool), cwd=spool) as sh:
        proc = ssh(sh.port, "id -G")
        assert proc.returncode == 0, proc.stderr
        assert str(gid_of(spool)) in proc.stdout.split()


def test_nothing_precedes_the_ssh_banner(job_sshd, spool):
    with Shepherd(job_sshd, env=job_env(spool), cwd=spool) as sh:
        with socket.create_connection(("127.0.0.1", sh.port), timeout=30) as s:
            assert s.recv(8) == b"SSH-2.0-"


def test_exit_status_is_the_remote_commands(job_sshd, spool):
    with Shepherd(job_sshd, env=job_env(spool), cwd=spool) as sh:
        assert ssh(sh.port, "exit 3").returncode == 3


def test_rshdwrapper_of_version_0_1_runs_sshd_under_the_job_service(job_stack, spool):
    with Shepherd([os.path.join(job_stack, "rshdwrapper")], env=job_env(spool), cwd=spool) as sh:
        proc = ssh(sh.port, "id -G")
        assert proc.returncode == 0, proc.stderr
        assert str(gid_of(spool)) in proc.stdout.split()


def test_32_concurrent_sessions_each_carry_their_own_group(job_sshd, tmp_path):
    os.chmod(tmp_path, 0o755)
    gids = unused_gids(32)
    spools = [make_spool(tmp_path / ("j%d" % i), gid, TEST_USER, job_id=5000 + i) for i, gid in enumerate(gids)]
    shepherds = [Shepherd(job_sshd, env=job_env(s), cwd=s) for s in spools]
    try:
        clients = [user_popen(ssh_command(sh.port, "id -G; read x"), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for sh in shepherds]
        seen = [c.stdout.readline().split() for c in clients]
        for c in clients:
            c.stdin.write("\n")
            c.stdin.close()
            assert c.wait(60) == 0
        assert [str(g) in groups for g, groups in zip(gids, seen)] == [True] * 32
        assert all(str(g) not in groups for g, groups in zip(gids[1:], seen[:-1]))
        monitors = {str(sh.daemon_pid) for sh in shepherds}
        for sh in shepherds:
            sh.wait()
    finally:
        for sh in shepherds:
            sh.close()
    assert not [n for n in setup_files() if n.rsplit(".", 1)[1] in monitors]
    assert wait_until(lambda: not [n for n in os.listdir(cgroup2_mount()) if n.startswith("sgewrap-50")], 10, 0.05)


def watchers_of(monitor):
    """The PIDs of the session watchers (forked by pam_sgewrap from the monitor, reparented, in a
    session of their own, named sgewrap-watch) holding a pidfd of ``monitor``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if open("/proc/%s/comm" % pid).read().strip() != "sgewrap-watch":
                continue
            fds = os.listdir("/proc/%s/fd" % pid)
            infos = [open("/proc/%s/fdinfo/%s" % (pid, fd)).read() for fd in fds]
        except OSError:
            continue
        if any("Pid:\t%d\n" % monitor in info for info in infos):
            found.append(int(pid))
    return found


def test_a_sigkilled_sshd_leaves_nothing_of_its_session_running(job_sshd, spool):
    """qdel SIGKILLs the job sshd: no PAM close runs; the session's watcher kills what the session
    started (here a process that left the session's process group and ignores SIGHUP) and removes
    its cgroup.  The watcher is no member of the job: not in its group, process group or cgroup."""
    with Shepherd(job_sshd, env=job_env(spool), cwd=spool) as sh:
        client = user_popen(ssh_command(sh.port, "setsid nohup sleep 600 >/dev/null 2>&1 & echo $!; sleep 60"),
                            stdout=subprocess.PIPE, text=True)
        left = int(client.stdout.readline())
        killed = sh.daemon_pid
        watchers = watchers_of(killed)
        assert len(watchers) == 1
        watcher = watchers[0]
        assert gid_of(spool) not in procs.groups_of(watcher) and "sgewrap-" not in cgroup_of(watcher)
        group = cgroup_of(left)
        assert "sgewrap-" in group
        os.kill(killed, signal.SIGKILL)          # qdel: no session close
        client.kill()
        client.wait(60)
    assert wait_until(lambda: procs.stat_of(left) is None, 10, 0.02)
    assert wait_until(lambda: not os.path.exists(cgroup2_mount() + group), 10, 0.02)
    assert wait_until(lambda: procs.stat_of(watcher) is None, 10, 0.02)


# --- the second user attacks ----------------------------------------------------------------------


def test_another_user_who_reaches_the_port_is_refused_and_the_owner_still_gets_in(job_sshd, spool):
    """The shepherd's port is visible to everyone (/proc/net/tcp): whoever connects first gets the
    session.  A second user with his own key is refused (logged), and is never tied to the job."""
    mark = auth_log_size()
    with Shepherd(job_sshd, env=job_env(spool), cwd=spool) as sh:
        proc = ssh(sh.port, "id -G; echo INSIDE", user=OTHER_USER)
        assert proc.returncode == 255 and "INSIDE" not in proc.stdout
        monitor = sh.daemon_pid
        sh.wait()
    assert not os.path.exists(setupfile.path_of(setupfile.SETUP_DIR, monitor))
    assert not watchers_of(monitor)
    assert wait_until(lambda: "session of %s refused: user '%s' is not %s, the owner of job 4711.1"
                      % (OTHER_USER, OTHER_USER, TEST_USER) in auth_log_since(mark), 10, 0.02)
    with Shepherd(job_sshd, env=job_env(spool), cwd=spool) as sh:
        proc = ssh(sh.port, "id -G")
        assert proc.returncode == 0 and str(gid_of(spool)) in proc.stdout.split()


ATTACKER = r"""
import fcntl, os, sys, time
held, tried, deadline = [], 0, time.monotonic() + float(sys.argv[1])
while time.monotonic() < deadline:
    for name in os.listdir("/var/run"):
        if name.startswith("sge-qrsh-setup.") or name == ".sgewrap-setup.lock":
            tried += 1
            try:
                fd = os.open(os.path.join("/var/run", name), os.O_RDONLY | os.O_NONBLOCK)
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                held.append(fd)
            except OSError:
                pass
print(len(held), tried)
"""


def test_a_user_grabbing_every_setup_file_as_it_appears_delays_and_detaches_nothing(job_sshd, spool):
    attacker = user_popen(["/usr/bin/python3", "-I", "-c", ATTACKER, "20"], user=OTHER_USER,
                          stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(10):
            with Shepherd(job_sshd, env=job_env(spool), cwd=spool) as sh:
                start = time.monotonic()
                proc = ssh(sh.port, "id -G")
                assert proc.returncode == 0 and str(gid_of(spool)) in proc.stdout.split()
                assert time.monotonic() - start < 10
    finally:
        held, tried = map(int, attacker.communicate(timeout=60)[0].split())
    assert held == 0


def test_the_sites_sshd_stack_refusing_the_user_does_not_touch_job_sessions(job_sshd, spool):
    """Job sshds use their own PAM service: /etc/pam.d/sshd may refuse a user outright (here: every
    account) and the job's session still works, tied to the job."""
    with host_lock():
        before = open(pam.PAM_FILE, "rb").read()
        try:
            with open(pam.PAM_FILE, "wb") as f:
                f.write(b"account required pam_deny.so\n" + before)
            with Shepherd(["/usr/sbin/sshd", "-i"], env=job_env(spool), cwd=spool) as plain:
                assert ssh(plain.port, "true").returncode == 255        # the site's stack says no
            with Shepherd(job_sshd, env=job_env(spool), cwd=spool) as sh:
                proc = ssh(sh.port, "id -G")
                assert proc.returncode == 0, proc.stderr
                assert str(gid_of(spool)) in proc.stdout.split()
        finally:
            with open(pam.PAM_FILE, "wb") as f:
                f.write(before)


def test_a_hostile_daemon_environment_changes_nothing(job_sshd, spool, tmp_path):
    """PYTHON* and LD_* in the environment the shepherd gives the daemon: pam_exec starts the hook
    with PAM's environment only, and the hook's interpreter is isolated anyway."""
    planted = tmp_path / "planted"
    planted.mkdir(mode=0o755)
    marker = tmp_path / "owned"
    (planted / "sitecustomize.py").write_text("open(%r, 'w').write('root code ran')\n" % str(marker))
    env = dict(job_env(spool), PYTHONPATH=str(planted), PYTHONSTARTUP=str(planted / "sitecustomize.py"),
               PYTHONINSPECT="1", PYTHONHOME="/nonexistent")
    with Shepherd(job_sshd, env=env, cwd=spool) as sh:
        proc = ssh(sh.port, "id -G")
        assert proc.returncode == 0, proc.stderr
        assert str(gid_of(spool)) in proc.stdout.split()
    assert not marker.exists()


def test_a_user_made_spool_directory_ties_nothing(job_sshd, tmp_path):
    """A shepherd working in a directory a user owns (planted through a symlink, say): refused."""
    os.chmod(tmp_path, 0o755)
    spool = make_spool(tmp_path, unused_gids(1)[0], TEST_USER, admin_uid=pwd.getpwnam(OTHER_USER).pw_uid)
    with Shepherd(job_sshd, env=job_env(spool), cwd=spool) as sh:
        proc = ssh(sh.port, "id -G; echo INSIDE")
        assert proc.returncode == 255 and "INSIDE" not in proc.stdout


def test_a_re_forking_chain_left_by_a_session_dies_at_its_end(job_sshd, spool):
    """Root-hooks issue, finding 6: a process that forks and exits every 300 microseconds is never
    seen twice by a /proc scan.  The session's cgroup holds every descendant of the job sshd, and
    cgroup.kill takes them all at once."""
    beat = "/tmp/sgewrap-tight-beat-%d" % os.getpid()
    try:
        with Shepherd(job_sshd, env=job_env(spool), cwd=spool) as sh:
            client = user_popen(ssh_command(sh.port, "touch %s && nohup /usr/bin/python3 -c '%s' %s >/dev/null 2>&1 & "
                                                     "sleep 3; echo done" % (beat, REFORKER, beat)),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            assert wait_until(lambda: beating(beat), 10, 0.05), "the chain never ran"
            out, err = client.communicate(timeout=60)
            assert client.returncode == 0 and "done" in out, err
            sh.wait()
        assert wait_until(lambda: not beating(beat, 0.5), 15, 0.05), "the re-forking chain outlived its session"
        time.sleep(1)
        assert not beating(beat)
    finally:
        if os.path.exists(beat):
            os.unlink(beat)


def test_a_closed_sessions_leftovers_are_told_before_they_are_killed(job_sshd, spool):
    """The session's end (here its client simply leaves; Ctrl-C of qrsh and qdel end it the same way)
    gives what is left SIGHUP and SIGTERM first, as the end of ssh -t's terminal would: a trap runs.
    What ignores both is killed after the grace all the same, and so is what it forks meanwhile."""
    told = "/tmp/sgewrap-told-%d" % os.getpid()
    loop = "while :; do sleep 0.1; done"
    command = ("setsid sh -c 'trap \"echo told >> %s; exit 0\" TERM HUP; %s' </dev/null >/dev/null 2>&1 & echo A$!; "
               "setsid sh -c 'trap \"\" TERM HUP; %s' </dev/null >/dev/null 2>&1 & echo B$!" % (told, loop, loop))
    with Shepherd(job_sshd, env=job_env(spool), cwd=spool) as sh:
        proc = ssh(sh.port, command)
        assert proc.returncode == 0, proc.stderr
        pids = dict((line[0], int(line[1:])) for line in proc.stdout.split())
        sh.wait()
    try:
        assert wait_until(lambda: all(procs.stat_of(p) is None for p in pids.values()), 15, 0.05), \
            "a leftover outlived its session's grace"
        with open(told) as f:
            assert f.read() == "told\n", "the trap did not run before the kill"
    finally:
        if os.path.exists(told):
            os.unlink(told)


def test_the_launcher_gives_sshd_the_job_sshd_configuration_when_there_is_one(job_sshd, spool):
    """sge-sshd is the launcher (not a link to sshd): with /etc/ssh/sge-sshd_config (what --apply
    writes: an Include of the site's file) the session is the same, tied to its job."""
    from sgewrap import methods
    from sgewrap.admin import config
    assert methods.job_sshd_is_launcher(os.path.dirname(job_sshd[0]))
    with host_lock():
        existed = os.path.exists(methods.JOB_SSHD_CONFIG)
        config.write_job_sshd_config()
        try:
            with Shepherd(job_sshd, env=job_env(spool), cwd=spool) as sh:
                proc = ssh(sh.port, "id -G")
                assert proc.returncode == 0, proc.stderr
                assert str(gid_of(spool)) in proc.stdout.split()
        finally:
            if not existed:
                os.unlink(methods.JOB_SSHD_CONFIG)
