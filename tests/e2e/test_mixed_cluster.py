"""A cluster of Debian 12 and Debian 13 hosts (the Debian 13 issue): node4 runs trixie's own sge_execd
(8.1.9+dfsg-13.1), OpenSSH 10 and PAM 1.7, joined to this Debian 12 qmaster (tests/cluster/up).

What node4 needs of this project is put there the way an administrator would: ``make install`` run
on node4 itself (its Python 3.13, its compiler: the launcher and the PAM module are built there),
then ``sgewrap config ssh --tight --apply`` run there, which finds the global configuration already
right (one configuration serves both releases) and writes node4's own job PAM service.  Then, tight:
``qrsh``, ``qrsh`` without a command and ``qlogin`` to node4, and ``qrsh -inherit`` from a Debian 12
master to node4 and from a Debian 13 master to this host, every session above PID 150000 and
carrying its task's group; another user who reaches the shepherd's port on node4 is refused; ``qdel``
leaves nothing on node4.
"""
import os
import pwd
import re
import shlex
import signal
import subprocess

import pytest

from lib import TEST_USER, sge, wait_until
from sgewrap.rootside import procs

pytestmark = [pytest.mark.cluster, pytest.mark.slot("rsh"), pytest.mark.methods("ssh-tight")]

ATTACKER = "sgeother"
#: typed or run in a session: TIED-42 only above PID 150000, carrying the task's group, on Debian 13
TIED = ('test $$ -gt 150000 && id -G | tr " " "\\n" | grep -qx "$(cat $SGE_JOB_SPOOL_DIR/addgrpid)" '
        '&& grep -q "^13\\." /etc/debian_version && echo TIED-$((6*7))')
#: a parallel job's master: one qrsh -inherit to $1, which reports where and as what it runs, then the
#: same through qrsh_ssh (in $2)
MASTER = """#!/bin/sh
echo "master on $(hostname) release $(cat /etc/debian_version)"
/usr/bin/qrsh -inherit -nostdin "$1" 'echo "task on $(hostname) release $(cat /etc/debian_version)\
 gid=$(cat $SGE_JOB_SPOOL_DIR/addgrpid) groups=$(id -G | tr " " ,) pid=$$"'
echo "master done $?"
# a tool that only knows ssh, through qrsh_ssh (this host's installed copy: Python 3.11 or 3.13)
"$2/qrsh_ssh" "$1" 'echo "ssh-task on $(hostname) gid=$(cat $SGE_JOB_SPOOL_DIR/addgrpid) groups=$(id -G | tr " " ,)"'
echo "qrsh_ssh done $?"
"""


def home(user):
    return pwd.getpwnam(user).pw_dir


def test_node4_is_debian_13_with_openssh_10_and_its_own_build(node4, cluster):
    release = open(os.path.join(sge.NODE4_ROOT, "etc/debian_version")).read()
    assert release.startswith("13."), release
    version = sge.on_node4(["/usr/sbin/sshd", "-V"], capture_output=True, text=True).stderr
    assert version.startswith("OpenSSH_10."), version
    assert os.path.exists(os.path.join(sge.NODE4_ROOT, "usr/lib/openssh/sshd-session"))
    # built on node4 by its own make install: a static launcher, the module in node4's PAM directory
    launcher = os.path.join(sge.NODE4_ROOT + cluster, "sge-sshd")
    assert not os.path.islink(launcher) and open(launcher, "rb").read(4) == b"\x7fELF"
    module = sge.NODE4_ROOT + os.path.join(cluster, "pam_sgewrap.so")
    with open(module, "rb") as f, open(os.path.join(cluster, "pam_sgewrap.so"), "rb") as mine:
        assert f.read() != mine.read(), "node4's module is its own build (trixie's gcc), not this host's"
    # its gid_range cache holds its own line (node4 cannot resolve every other host's name: those are skipped)
    assert "\nnode4 66000-66199\n" in open(os.path.join(sge.NODE4_ROOT, "var/lib/sgewrap/gid_range")).read()
    stack = open(os.path.join(sge.NODE4_ROOT, "etc/pam.d/sge-sshd")).read()
    assert "pam_sgewrap.so job" in stack, stack
    # every installed program runs under trixie's Python 3.13 (and its plumbum 1.9, copied by make install)
    from sgewrap.admin import installer
    for name in installer.entry_point_names():
        helped = sge.on_node4([os.path.join(cluster, name), "--help"], capture_output=True, text=True, timeout=60)
        assert helped.returncode == 0 and helped.stdout, (name, helped.stdout[-500:], helped.stderr[-500:])
    assert "python3.13" in os.listdir(os.path.join(sge.NODE4_ROOT + cluster, "sgewrap.venv", "lib"))


def test_tight_qrsh_to_debian_13_is_tied_above_pid_150000(node4):
    proc = sge.qrsh(TIED, queue=sge.DEB13_QUEUE, stdin=subprocess.DEVNULL, text=True, timeout=120)
    assert proc.returncode == 0 and "TIED-42" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize("client", ["qrsh", "qlogin"])
def test_tight_logins_to_debian_13_are_tied_above_pid_150000(node4, client):
    assert sge.login(["/usr/bin/" + client, "-now", "yes", "-q", sge.DEB13_QUEUE], command=TIED,
                     expect="TIED-42") == 0


@pytest.mark.parametrize("master, target", [(sge.HOST, sge.NODE4), (sge.NODE4, sge.HOST)],
                         ids=["debian12-to-debian13", "debian13-to-debian12"])
def test_qrsh_inherit_between_debian_12_and_13_is_tied_both_ways(node4, cluster, master, target):
    script = os.path.join(home(TEST_USER), "mixed-master.sh")      # /home is shared, /tmp is not
    with open(script, "w") as f:
        f.write(MASTER)
    os.chmod(script, 0o755)
    master_queue = "%s@%s" % (sge.DEB13_QUEUE if master == sge.NODE4 else sge.QUEUE, master)
    try:
        sge.wait_no_user_jobs()
        proc = sge.qrsh("-pe", sge.MIXED_PE, "4", "-masterq", master_queue, script, target, cluster,
                        queue="%s,%s" % (sge.QUEUE, sge.DEB13_QUEUE), stdin=subprocess.DEVNULL, text=True,
                        timeout=180)
    finally:
        os.unlink(script)
    assert proc.returncode == 0 and "master done 0" in proc.stdout, proc.stdout + proc.stderr
    assert re.search(r"^master on %s release %s" % (master, "13" if master == sge.NODE4 else "12"),
                     proc.stdout, re.M), proc.stdout
    found = re.search(r"^task on (\S+) release (\d+)\.\S* gid=(\d+) groups=(\S+) pid=(\d+)$", proc.stdout, re.M)
    assert found, proc.stdout + proc.stderr
    host, release, gid, groups, pid = found.groups()
    assert host == target and release == ("13" if target == sge.NODE4 else "12"), proc.stdout
    assert gid in groups.split(","), "the task carries its own group: %s" % proc.stdout
    assert int(pid) > 150000
    through = re.search(r"^ssh-task on (\S+) gid=(\d+) groups=(\S+)$", proc.stdout, re.M)
    assert through and "qrsh_ssh done 0" in proc.stdout, proc.stdout + proc.stderr
    assert through.group(1) == target and through.group(2) in through.group(3).split(","), proc.stdout


def _listening_ports(pid):
    """The TCP ports process ``pid`` listens on, read in its own network namespace."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        target = procs.link(pid, "fd/" + fd) or ""
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = []
    for table in ("net/tcp", "net/tcp6"):
        with open("/proc/%d/%s" % (pid, table)) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:
                    ports.append(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _shepherd_port_on_node4(job):
    where = "%s/active_jobs/%s.1" % (sge.spool_of(sge.NODE4), job)     # /proc/PID/cwd, read from our root

    def port():
        for pid, spool in procs.shepherds().items():
            if spool == where:
                try:
                    ports = _listening_ports(pid)
                except OSError:
                    ports = []
                if ports:
                    return ports[0]
        return None
    return wait_until(port, 60)


def test_another_user_at_the_shepherd_s_port_on_debian_13_is_refused(node4):
    """sgetest's qrsh to node4 waits at its shepherd's port (its client held stopped); sgeother, who can
    see the port, connects first with a key of its own: the job sshd (OpenSSH 10 under the job PAM
    service) refuses, and the attacker's command never runs."""
    ran = os.path.join(home(ATTACKER), "attacker-command-ran-node4")
    owner = subprocess.Popen(["/usr/sbin/runuser", "-u", TEST_USER, "--", "/usr/bin/qrsh", "-now", "no", "-h",
                              "-q", sge.DEB13_QUEUE, "sleep", "60"], env=sge.user_env(), start_new_session=True,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    job = None
    try:
        assert wait_until(lambda: sge.user_jobs(), 30), "the owner's qrsh job never appeared"
        job = sge.user_jobs().splitlines()[-1].split()[0]
        os.killpg(owner.pid, signal.SIGSTOP)
        subprocess.run(["/usr/bin/qrls", job], env=sge.ENV, capture_output=True, check=True)
        port = _shepherd_port_on_node4(job)
        assert port, "the shepherd of job %s on node4 never listened" % job
        proc = sge.user_run(["/usr/bin/ssh", "-o", "BatchMode=yes", "-p", str(port), sge.NODE4,
                             "touch %s; echo INSIDE" % shlex.quote(ran)], user=ATTACKER,
                            env={"HOME": home(ATTACKER)}, capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL)
    finally:
        os.killpg(owner.pid, signal.SIGKILL)
        os.killpg(owner.pid, signal.SIGCONT)
        owner.wait(30)
        if job:
            sge.delete(job)
        command_ran = os.path.exists(ran)
        if command_ran:
            os.unlink(ran)
    assert proc.returncode == 255 and "INSIDE" not in proc.stdout, (proc.stdout, proc.stderr[-500:])
    assert not command_ran, "the attacker's command ran in the owner's job sshd on node4"


def _node4_sshd_of(user):
    """{PID: name} of ``user``'s sshd processes on node4 (its network namespace)."""
    node4_net = procs.link(sge.node4_holder(), "ns/net")
    return {p: n for p, n in sge.processes_of(user, sge.SSHD_PROCESSES).items()
            if procs.link(p, "ns/net") == node4_net}


def test_qdel_of_a_job_on_debian_13_leaves_nothing(node4):
    token = str(os.getpid() * 1000 + 4)
    name = "deb13qdel"
    client = subprocess.Popen(["/usr/sbin/runuser", "-u", TEST_USER, "--", "/usr/bin/qrsh", "-now", "yes", "-q",
                               sge.DEB13_QUEUE, "-N", name, "sh", "-c",
                               shlex.quote("sleep %s & sleep %s; wait" % (token, token))],
                              env=sge.user_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        def sleeping():
            return [p for p in sge.processes_with(token) if sge.comm(p) == "sleep"]
        assert wait_until(lambda: len(sleeping()) >= 2, 60), "the remote sleeps never started"
        gids = {g for p in sleeping() for g in sge.proc_groups(p) if 66000 <= g <= 66199}
        assert gids, "the remote processes carry node4's task group (its gid_range)"
        sge.user_run(["/usr/bin/qdel", name], capture_output=True, check=True)
        client.wait(60)
        assert sge.job_gone(name)
        wait_until(lambda: not (sge.processes_with(token) or sge.processes_in_groups(gids)), 30, 0.2)
        assert not sge.processes_with(token), "processes of the deleted job are still running on node4"
        assert not sge.processes_in_groups(gids), sge.processes_in_groups(gids)
        # OpenSSH 10's own processes of the session (sshd-session as the user) are gone too
        wait_until(lambda: not _node4_sshd_of(TEST_USER), 30, 0.2)
        assert not _node4_sshd_of(TEST_USER), _node4_sshd_of(TEST_USER)
    finally:
        for pid in sge.processes_with(token):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if client.poll() is None:
            client.kill()


# --- check over the mixed cluster ---------------------------------------------------------------

def _check(wrappers):
    return subprocess.run([os.path.join(wrappers, "sgewrap"), "check"], env=sge.ENV, capture_output=True,
                          text=True, timeout=120)


def test_check_sees_the_debian_13_host_through_its_recorded_facts(node4, cluster):
    """node4's --apply recorded its facts in the cell's common directory; check on this Debian 12 host
    reads them: consistent, and says what node4's job sshd is.  Then node4's sge-sshd becomes a link to
    sshd (what make install does without a compiler, or 0.2 left): check names node4 and the exact
    problem, and node4's own ``sgewrap facts`` first said its record was stale."""
    facts = sge.on_node4([os.path.join(cluster, "sgewrap"), "facts"], capture_output=True, text=True, timeout=60)
    assert facts.returncode == 0 and "record: up to date" in facts.stdout, facts.stdout + facts.stderr
    proc = _check(cluster)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^note: node4: job sshd launcher, OpenSSH_10\.\S+, job PAM service ok \(recorded ",
                     proc.stdout, re.M), proc.stdout
    # selftest, run here, says the same of the other execution hosts after its own live run
    selftest = subprocess.run([os.path.join(cluster, "sgewrap"), "selftest", "--user", TEST_USER, "ssh", "--tight"],
                              env=sge.ENV, capture_output=True, text=True, timeout=180)
    assert selftest.returncode == 0, selftest.stdout + selftest.stderr
    assert re.search(r"^  ok: node4: job sshd launcher, OpenSSH_10", selftest.stdout, re.M), selftest.stdout
    launcher = sge.NODE4_ROOT + os.path.join(cluster, "sge-sshd")
    saved = launcher + ".test-saved"
    os.rename(launcher, saved)
    try:
        os.symlink("/usr/sbin/sshd", launcher)
        stale = sge.on_node4([os.path.join(cluster, "sgewrap"), "facts"], capture_output=True, text=True,
                             timeout=60)
        assert stale.returncode == 1 and "record: stale" in stale.stdout and "job_sshd was 'launcher', is 'link'" \
            in stale.stdout, stale.stdout
        recorded = sge.on_node4([os.path.join(cluster, "sgewrap"), "facts", "--record"], capture_output=True,
                                text=True, timeout=60)
        assert recorded.returncode == 0, recorded.stdout + recorded.stderr
        proc = _check(cluster)
        assert proc.returncode == 1, proc.stdout
        assert re.search(r"^error: node4: rsh_daemon runs the job sshd \(a link to sshd there\) without -o "
                         r"PamServiceName=sge-sshd, and node4's sshd takes its PAM service from PamServiceName "
                         r"\(OpenSSH 9\.8 or later\): job sessions would run under its 'sshd' service, untied and "
                         r"open to any user at the port \(recorded .*Debian GNU/Linux 13 \(trixie\), "
                         r"OpenSSH_10", proc.stdout, re.M), proc.stdout
    finally:
        os.unlink(launcher)
        os.rename(saved, launcher)
        sge.on_node4([os.path.join(cluster, "sgewrap"), "facts", "--record"], capture_output=True, timeout=60)
    assert _check(cluster).returncode == 0


# --- an in-place upgrade: what a Debian 12 host's --apply wrote, under Debian 13's sshd -------------

def test_after_an_in_place_upgrade_the_debian_12_files_keep_sessions_tied(node4, cluster):
    """What `make install` and `--apply` wrote on a Debian 12 host (this host's launcher, PAM module, job
    stack and job sshd configuration, built and written here) put in place on node4 as an upgrade from
    12 to 13 leaves them: Debian 13's sshd under them, the session is tied."""
    from sgewrap import methods
    from sgewrap.admin import pammodule
    pam_dir = sge.on_node4(["/bin/sh", "-c", "dirname $(ls /usr/lib/*/security/pam_unix.so)"], capture_output=True,
                           text=True, check=True).stdout.strip()
    files = {os.path.join(cluster, methods.JOB_SSHD_NAME): os.path.join(cluster, methods.JOB_SSHD_NAME),
             os.path.join(cluster, pammodule.NAME): os.path.join(pam_dir, pammodule.NAME),
             methods.JOB_PAM_FILE: methods.JOB_PAM_FILE, methods.JOB_SSHD_CONFIG: methods.JOB_SSHD_CONFIG}
    saved = {}
    try:
        for here, there in files.items():
            with open(sge.NODE4_ROOT + there, "rb") as f:
                saved[there] = f.read()
            if here == methods.JOB_SSHD_CONFIG and not os.path.exists(here):    # the fixture wrote no such file
                from sgewrap.admin.config import job_sshd_config_text
                data = job_sshd_config_text().encode()
            else:
                with open(here, "rb") as f:
                    data = f.read()
            with open(sge.NODE4_ROOT + there, "wb") as f:
                f.write(data)
        proc = sge.qrsh(TIED, queue=sge.DEB13_QUEUE, stdin=subprocess.DEVNULL, text=True, timeout=120)
        assert proc.returncode == 0 and "TIED-42" in proc.stdout, proc.stdout + proc.stderr
    finally:
        for there, data in saved.items():
            with open(sge.NODE4_ROOT + there, "wb") as f:
                f.write(data)


# --- adopt on the Debian 13 host ------------------------------------------------------------------

@pytest.fixture
def node4_adopt(node4, cluster):
    path = os.path.join(sge.NODE4_ROOT, "etc/pam.d/sshd")
    with open(path, "rb") as f:
        before = f.read()
    proc = sge.on_node4([os.path.join(cluster, "sgewrap"), "node-access", "--adopt", "--apply"], capture_output=True,
                        text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    try:
        yield
    finally:
        sge.on_node4([os.path.join(cluster, "sgewrap"), "node-access", "--remove-adopt"], capture_output=True,
                     timeout=120)
        with open(path, "rb") as f:
            after = f.read()
        if after != before:
            with open(path, "wb") as f:
                f.write(before)


def _ssh_node4(user, command):
    return sge.user_run(["/usr/bin/ssh", "-o", "BatchMode=yes", "-o", "LogLevel=INFO", sge.NODE4, command], user=user,
                        env={"HOME": home(user)}, capture_output=True, text=True, timeout=120,
                        stdin=subprocess.DEVNULL)


def test_adopt_on_debian_13_joins_the_owner_s_job_and_refuses_without_one(node4_adopt):
    proc = _ssh_node4(TEST_USER, "echo INSIDE")
    assert proc.returncode == 255 and "INSIDE" not in proc.stdout
    assert "no job of yours runs on this host" in proc.stderr, proc.stderr
    out = sge.user_run(["/usr/bin/qsub", "-terse", "-q", sge.DEB13_QUEUE, "-b", "y", "/bin/sleep", "120"],
                       capture_output=True, text=True, timeout=60)
    job = out.stdout.strip()
    try:
        assert wait_until(lambda: sge.running(job), 90, 0.3), sge.qstat_all()
        spool = os.path.join(sge.spool_of(sge.NODE4), "active_jobs", job + ".1", "addgrpid")
        assert wait_until(lambda: os.path.exists(spool), 30)
        gid = open(spool).read().strip()
        proc = _ssh_node4(TEST_USER, "id -G; echo JOB=$JOB_ID; cat /etc/debian_version")
        assert proc.returncode == 0, proc.stderr
        groups, job_line, release = proc.stdout.split("\n")[:3]
        assert gid in groups.split() and job_line == "JOB=" + job and release.startswith("13"), proc.stdout
        other = _ssh_node4(ATTACKER, "echo INSIDE")
        assert other.returncode == 255 and "INSIDE" not in other.stdout
    finally:
        sge.delete(job)
