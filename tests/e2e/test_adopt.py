"""node_access adopt: ssh into a host where your job runs and the login becomes part of that job.

Real sshd on port 22 (this host's and node2's, one /etc/pam.d/sshd between them), real PAM with
pam_sge-qrsh-setup, real jobs (``qsub -b y sleep``), real accounting and ``qdel``.  The adopt
block goes into /etc/pam.d/sshd as ``sgewrap node-access --adopt --apply`` writes it and is taken
out again (the file byte for byte as before).
"""
import contextlib
import os
import pwd
import random
import re
import subprocess
import threading
import time

import pytest

from lib import auth_log_since, auth_log_size, sge, wait_until
from lib.rootside import REFORKER, beating
from sgewrap.admin import pam, pammodule

USERS = (sge.TEST_USER, "sgeother", "sgethird", "sgefourth")
SSH = ["/usr/bin/ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o",
       "UserKnownHostsFile=/dev/null", "-o", "LogLevel=INFO"]


@contextlib.contextmanager
def adopt_block(wrappers, *options):
    with open(pam.PAM_FILE, "rb") as f:
        before = f.read()
    pammodule.ensure_installed(wrappers)
    pam.add_adopt(wrappers, options)
    try:
        yield
    finally:
        with open(pam.PAM_FILE, "wb") as f:
            f.write(before)


@pytest.fixture
def adopt(cluster):
    with adopt_block(cluster):
        yield cluster


def ssh(user, command, host=sge.HOST, **kw):
    return sge.user_run(SSH + [host, command], user=user, env={"HOME": pwd.getpwnam(user).pw_dir},
                        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, **kw)


@contextlib.contextmanager
def running_job(user, seconds=120, queue=sge.QUEUE, extra=()):
    """A batch job of ``user`` (``sleep SECONDS``), running; its job number."""
    out = sge.user_run(["/usr/bin/qsub", "-terse", "-q", queue, *extra, "-b", "y", "/bin/sleep", str(seconds)],
                       user=user, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    job = out.stdout.strip().split(".")[0]
    try:
        wait_running(job)
        yield job
    finally:
        sge.delete(job)


def wait_running(job, timeout=90):
    assert wait_until(lambda: sge.running(job), timeout, 0.3), "job %s never ran: %s" % (job, sge.qstat_all())
    time.sleep(0.5)         # the shepherd starts its task


def gid_of(job, task="1", host=sge.HOST):
    with open("/var/spool/gridengine/execd/%s/active_jobs/%s.%s/addgrpid" % (host, job, task)) as f:
        return f.read().strip()


def test_without_a_job_the_login_is_refused_with_a_reason(adopt):
    proc = ssh(sge.TEST_USER, "echo INSIDE")
    assert proc.returncode == 255 and "INSIDE" not in proc.stdout
    assert "Access denied by Grid Engine's node_access: no job of yours runs on this host." in proc.stderr


def test_with_a_job_the_login_carries_its_group_and_environment_and_leaves_no_file(adopt):
    before = sge.setup_files()
    with running_job(sge.TEST_USER) as job:
        proc = ssh(sge.TEST_USER, "id -G; echo JOB=$JOB_ID")
        assert proc.returncode == 0, proc.stderr
        assert gid_of(job) in proc.stdout.split("\n")[0].split()
        assert "JOB=%s" % job in proc.stdout
    assert wait_until(lambda: sge.setup_files() <= before, 30), sge.setup_files() - before


def test_qdel_kills_what_the_login_started_even_double_forked_and_setsid(adopt):
    token = str(random.randrange(10 ** 6, 10 ** 7))
    with running_job(sge.TEST_USER) as job:
        proc = ssh(sge.TEST_USER, "setsid sh -c 'sleep %s & exit' </dev/null >/dev/null 2>&1; echo started" % token)
        assert proc.returncode == 0 and "started" in proc.stdout, proc.stderr
        assert wait_until(lambda: [p for p in sge.processes_with(token) if sge.comm(p) == "sleep"], 30)
        subprocess.run(["/usr/bin/qdel", job], env=sge.ENV, capture_output=True, check=True)
        assert wait_until(lambda: not sge.processes_with(token), 60), "the escaped sleep survived qdel"


def test_the_logins_cpu_is_accounted_to_the_job(adopt):
    with running_job(sge.TEST_USER, seconds=15) as job:
        proc = ssh(sge.TEST_USER, "timeout 4 sh -c 'while :; do :; done'; echo burnt")
        assert proc.returncode == 0 and "burnt" in proc.stdout, proc.stderr
    acct = ""

    def accounted():
        nonlocal acct
        acct = subprocess.run(["/usr/bin/qacct", "-j", job], env=sge.ENV, capture_output=True, text=True).stdout
        return re.search(r"^cpu\s+([\d.]+)", acct, re.M)
    found = wait_until(accounted, 120, 2)       # the job ends, qmaster flushes accounting every 15 s
    assert found and float(found.group(1)) >= 2.5, acct     # a sleeping job alone uses ~0 s


def test_the_newest_job_by_default_the_named_one_when_named_and_never_someone_elses(adopt):
    home = pwd.getpwnam(sge.TEST_USER).pw_dir
    choice = os.path.join(home, ".sge_adopt_job")
    with running_job(sge.TEST_USER) as older, running_job(sge.TEST_USER) as newer, running_job("sgeother") as other:
        try:
            assert "JOB=%s" % newer in ssh(sge.TEST_USER, "echo JOB=$JOB_ID").stdout
            sge.user_run(["/bin/sh", "-c", "echo %s > %s" % (older, choice)], capture_output=True, check=True)
            proc = ssh(sge.TEST_USER, "echo JOB=$JOB_ID; id -G")
            assert "JOB=%s" % older in proc.stdout and gid_of(older) in proc.stdout, proc.stdout + proc.stderr
            sge.user_run(["/bin/sh", "-c", "echo %s > %s" % (other, choice)], capture_output=True, check=True)
            proc = ssh(sge.TEST_USER, "echo INSIDE")
            assert proc.returncode == 255 and "INSIDE" not in proc.stdout
            assert "you named job %s" % other in proc.stderr
        finally:
            if os.path.exists(choice):
                os.unlink(choice)


def test_warn_only_admits_everyone_and_logs_what_it_would_have_done(cluster):
    with adopt_block(cluster, "--warn-only"):
        mark = auth_log_size()
        proc = ssh(sge.TEST_USER, "echo INSIDE")
        assert proc.returncode == 0 and "INSIDE" in proc.stdout, proc.stderr
        assert wait_until(lambda: "adopt (--warn-only): would refuse %s: no job of yours runs on this host"
                          % sge.TEST_USER in auth_log_since(mark), 30)


def test_twenty_concurrent_logins_of_four_users_each_join_their_own_job(adopt):
    with contextlib.ExitStack() as stack:
        jobs = {user: stack.enter_context(running_job(user)) for user in USERS}
        results = {}

        def login(user, n):
            results[(user, n)] = ssh(user, "echo JOB=$JOB_ID; id -G")
        threads = [threading.Thread(target=login, args=(u, n)) for u in USERS for n in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for (user, n), proc in sorted(results.items()):
            assert proc.returncode == 0, (user, proc.stderr)
            assert "JOB=%s" % jobs[user] in proc.stdout, (user, proc.stdout)
            assert gid_of(jobs[user]) in proc.stdout.split("JOB=")[1].split("\n")[1].split(), (user, proc.stdout)


@pytest.mark.slot("rsh")
@pytest.mark.methods("ssh-tunnel")
def test_on_a_slave_host_of_a_parallel_job_the_login_joins_the_task_there(method, adopt):
    """fw.pe puts the master task here and slave tasks on node2: while a task runs on node2, the
    owner's ssh to node2 joins that task (its own group, its job)."""
    with sge.running_fan_out(sge.NODE2, "sleep 60", "-pe", sge.FW_PE, "2") as job:
        proc = None

        def joined():
            nonlocal proc
            proc = ssh(sge.TEST_USER, "echo JOB=$JOB_ID; id -G; cat $SGE_JOB_SPOOL_DIR/addgrpid", host=sge.NODE2)
            return proc.returncode == 0
        wait_until(joined, 60, 1)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.split("\n")
        assert lines[0] == "JOB=%s" % job and lines[2] in lines[1].split(), proc.stdout


def test_sgewrap_says_why_a_user_is_refused_or_where_the_login_goes(cluster):
    why = sge.sgewrap(cluster, "node-access", "--why", sge.TEST_USER).stdout
    assert "sgetest: REFUSED: no job of yours runs on this host" in why
    with running_job(sge.TEST_USER) as job:
        out = sge.sgewrap(cluster, "node-access", "--why", sge.TEST_USER).stdout
        assert "admitted, joins job %s.1 (gid %s" % (job, gid_of(job)) in out
    assert "admitted, not tied (uid 0 is below 1000)" in sge.sgewrap(cluster, "node-access", "--why", "root").stdout


def test_slots_on_a_slave_host_without_a_task_yet_follow_the_adopt_failure_policy(cluster):
    """A parallel job with a slot on node2 whose task there has not started: qmaster names its owner;
    there is nothing to join, so --action-adopt-failure decides (deny by default, allow: untied)."""
    scratch = sge.tempfile.mkdtemp(prefix="sgewrap-pe.")
    os.chmod(scratch, 0o755)
    master = os.path.join(scratch, "master.sh")
    with open(master, "w") as f:
        f.write("#!/bin/sh\nsleep 120\n")
    os.chmod(master, 0o755)
    out = sge.user_run(["/usr/bin/qsub", "-terse", "-q", "%s,%s" % (sge.QUEUE, sge.FW_QUEUE), "-masterq",
                        "%s@%s" % (sge.QUEUE, sge.HOST), "-pe", sge.FW_PE, "2", master],
                       capture_output=True, text=True, timeout=60)
    job = out.stdout.strip()
    try:
        slot = "/var/spool/gridengine/execd/%s/active_jobs/%s.1" % (sge.NODE2, job)
        assert wait_until(lambda: os.path.isdir(slot), 90), "job %s never reached %s" % (job, sge.NODE2)
        with adopt_block(cluster):
            proc = ssh(sge.TEST_USER, "echo INSIDE", host=sge.NODE2)
            assert proc.returncode == 255 and "your parallel job %s has slots here but no task started yet" % job \
                in proc.stderr, proc.stderr
            assert ssh("sgeother", "echo INSIDE", host=sge.NODE2).returncode == 255
        with adopt_block(cluster, "--action-adopt-failure=allow"):
            proc = ssh(sge.TEST_USER, "echo INSIDE; id -G", host=sge.NODE2)
            assert proc.returncode == 0 and "INSIDE" in proc.stdout, proc.stderr
            assert "no job of yours" in ssh("sgeother", "echo INSIDE", host=sge.NODE2).stderr
    finally:
        sge.delete(job)
        subprocess.run(["rm", "-rf", scratch])


def test_what_an_adopted_login_leaves_lives_on_with_the_job_and_dies_with_it_even_re_forking(adopt):
    """Root-hooks issue, finding 6, for adopt: the login's end kills nothing (it shares a running
    job); at qdel, a chain that forks and exits every 300 microseconds -- which Grid Engine's /proc
    scan of the job's group never catches whole -- dies with the job: pam_sgewrap put the login in a
    cgroup of its own, and its watcher kills that cgroup when the task's shepherd exits."""
    beat = "/tmp/sgewrap-adopt-beat-%d" % random.randrange(10 ** 6, 10 ** 7)
    with running_job(sge.TEST_USER) as job:
        try:
            proc = ssh(sge.TEST_USER, "touch %s && nohup /usr/bin/python3 -c '%s' %s >/dev/null 2>&1 & sleep 1; "
                       "echo started" % (beat, REFORKER, beat))
            assert proc.returncode == 0 and "started" in proc.stdout, proc.stderr
            time.sleep(2)
            assert beating(beat), "the login's end killed what it left in a running job"
            subprocess.run(["/usr/bin/qdel", job], env=sge.ENV, capture_output=True, check=True)
            assert wait_until(lambda: not beating(beat, 0.5), 60, 0.2), "the re-forking chain outlived its job"
            time.sleep(1)
            assert not beating(beat)
        finally:
            if os.path.exists(beat):
                os.unlink(beat)        # a chain still running dies on its next touch


def test_a_background_list_that_keeps_the_logins_output_keeps_ssh_waiting_as_openssh_does(adopt):
    """What looked like a kill at the login's end (round 3) was ssh waiting: sshd closes the session only at
    EOF of its output, and ``cd /tmp && nohup server &`` runs in a subshell that keeps that pipe (nohup's own
    redirection is the server's, not the subshell's).  ssh returned only when the job ended and took the
    server with it.  Here the list ends by itself: ssh waits for it, and what it printed arrives."""
    with running_job(sge.TEST_USER):
        proc = ssh(sge.TEST_USER, "cd /tmp && (sleep 3; echo late-$((6*7))) & echo early")
        assert proc.returncode == 0 and proc.stdout.split() == ["early", "late-42"], proc.stderr
