"""Real qrsh, qlogin and qrsh -inherit through every method, on the one-host cluster.

One matrix: each test names the slot it exercises and runs for every method
serving that slot (tests/e2e/conftest.py).  Clients run as the unprivileged
test user, exactly as a user would type them.
"""
import hashlib
import os
import random
import re
import subprocess
import threading

import pytest

from lib import sge, wait_until

pytestmark = [pytest.mark.cluster]


qrsh = sge.qrsh


# --- qrsh CMD: the rsh slot ------------------------------------------------------

@pytest.mark.slot("rsh")
def test_qrsh_hostname(method):
    proc = qrsh("hostname", stdin=subprocess.DEVNULL, text=True)
    assert (proc.returncode, proc.stdout) == (0, sge.HOST + "\n"), proc.stderr


@pytest.mark.slot("rsh")
def test_qrsh_exit_status_is_the_remote_commands(method):
    proc = qrsh("exit 7", stdin=subprocess.DEVNULL)
    assert proc.returncode == 7, proc.stderr


@pytest.mark.slot("rsh")
def test_qrsh_nostdin_does_not_read_our_stdin(method):
    """-nostdin: qrsh finishes although our stdin stays open and silent.

    (Only qrsh's side is checked: with ``builtin`` the remote stdin is not
    /dev/null, a remote ``cat`` would wait; that is Grid Engine's own behaviour.)
    """
    with subprocess.Popen(["/usr/sbin/runuser", "-u", sge.TEST_USER, "--", "/usr/bin/qrsh", "-now", "yes",
                           "-q", sge.QUEUE, "-nostdin", "echo end"], env=sge.user_env(),
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as p:
        watchdog = threading.Timer(120, p.kill)
        watchdog.start()
        try:
            out = p.stdout.read()            # our end of stdin is still open meanwhile
            status = p.wait()
        finally:
            watchdog.cancel()
            p.stdin.close()
        err = p.stderr.read()
    assert (status, out) == (0, b"end\n"), err


@pytest.mark.slot("rsh")
def test_qrsh_noshell_keeps_argument_boundaries(method):
    proc = qrsh("-noshell", "/usr/bin/printf", "[%s]", "a b", "c", stdin=subprocess.DEVNULL, text=True)
    assert (proc.returncode, proc.stdout) == (0, "[a b][c]"), proc.stderr
    proc = qrsh("-noshell", "/bin/echo", "a b", "c", stdin=subprocess.DEVNULL, text=True)
    assert (proc.returncode, proc.stdout) == (0, "a b c\n"), proc.stderr


@pytest.mark.slot("rsh")
def test_qrsh_stdin_10mib_byte_for_byte(method, request):
    data = os.urandom(10 << 20)
    name = "stdin%d" % random.randrange(10 ** 6)
    try:   # a method known to hang here gets 60 s, ten times what ssh needs
        proc = qrsh("-N", name, "cat", input=data, timeout=60 if method.known(request.node.originalname) else 300)
    finally:   # after a timeout: no job left running, and no queue left in error state (killing the
        # hung builtin job before its shepherd started once crashed the shepherd: SIGSEGV, queue E)
        sge.user_run(["/usr/bin/qdel", name], capture_output=True)
        if method.known(request.node.originalname):
            sge.job_gone(name)
            sge.clear_queue_errors()
    assert proc.returncode == 0, proc.stderr
    assert (len(proc.stdout), hashlib.sha256(proc.stdout).hexdigest()) == \
        (len(data), hashlib.sha256(data).hexdigest())


TASKS = 16


@pytest.mark.slot("rsh")
def test_parallel_job_fans_out_16_qrsh_inherit(method):
    proc, tasks = sge.fan_out(TASKS, sge.HOST, "-pe", sge.PE, str(TASKS + 1))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "failed=0" in proc.stdout
    assert sorted(t[0] for t in tasks) == list(range(1, TASKS + 1)), proc.stdout
    gids = [t.gid for t in tasks]
    assert len(set(gids)) == TASKS, "each task has its own spool directory and group id"
    carries = [t.gid in t.groups for t in tasks]
    if method.accounted:
        assert all(carries), "every task's processes carry its own addgrpid: %s" % proc.stdout
        if method.tight:    # at production PIDs, where pam_sge-qrsh-setup's own lookup fails
            assert min(t.pid for t in tasks) > 150000, [t.pid for t in tasks]
    else:
        assert not any(carries), "%s does not give remote processes the job's group" % method


# --- qdel and accounting: what tight integration is for --------------------------------

@pytest.mark.slot("rsh")
@pytest.mark.accounted
def test_qdel_leaves_nothing_behind(method):
    token = str(random.randrange(10 ** 6, 10 ** 7))          # a unique `sleep` argument
    setup_files_before = sge.setup_files()
    name = "qdel%s" % token
    client = subprocess.Popen(["/usr/sbin/runuser", "-u", sge.TEST_USER, "--", "/usr/bin/qrsh", "-now", "yes",
                               "-q", sge.QUEUE, "-N", name, "sleep", token], env=sge.user_env(),
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def sleeping():
            return [p for p in sge.processes_with(token) if sge.comm(p) == "sleep"]
        assert wait_until(lambda: sleeping() or client.poll() is not None, 60), "remote sleep never started"
        assert sleeping() or client.poll() is None, "qrsh ended early"
        setup_files_during = sge.setup_files() - setup_files_before
        sge.user_run(["/usr/bin/qdel", name], capture_output=True, check=True)
        client.wait(60)
        assert sge.job_gone(name)
        wait_until(lambda: not sge.processes_with(token), 30)
        left = {p: sge.cmdline(p).replace(b"\0", b" ").decode(errors="replace") for p in sge.processes_with(token)}
        assert not left, "processes of the deleted job are still running: %r" % left
        if method.tight:      # pam_sgewrap finds the job from the process tree at each step: no file at all
            assert not setup_files_during, "a setup file for a job sshd session: %s" % setup_files_during
        assert qrsh("true", stdin=subprocess.DEVNULL).returncode == 0
    finally:
        for pid in sge.processes_with(token):
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        if client.poll() is None:
            client.kill()


@pytest.mark.slot("rsh")
@pytest.mark.accounted
def test_qacct_records_remote_cpu_time(method):
    name = "cpu%d" % random.randrange(10 ** 6)
    burn = 3
    proc = qrsh("-N", name, "timeout %d sh -c 'while :; do :; done'; true" % burn,
                stdin=subprocess.DEVNULL, text=True)
    assert proc.returncode == 0, proc.stderr
    acct = None

    def accounted():
        nonlocal acct
        acct = subprocess.run(["/usr/bin/qacct", "-j", name], env=sge.ENV, capture_output=True, text=True)
        return re.search(r"^cpu\s+([\d.]+)", acct.stdout, re.M)
    found = wait_until(accounted, 90, 1)        # qmaster writes accounting every flush_time (15 s)
    assert found, "no accounting record for %s: %s" % (name, acct.stdout + acct.stderr)
    assert float(found.group(1)) >= burn * 0.6, acct.stdout


# --- interactive: qrsh without a command (rlogin slot) and qlogin (qlogin slot) -----------

@pytest.mark.slot("rlogin")
def test_qrsh_without_command_gives_a_login_shell(method):
    assert sge.login(["/usr/bin/qrsh", "-now", "yes", "-q", sge.QUEUE, *method.login_options],
                     password=method.password) == 0


@pytest.mark.slot("qlogin")
def test_qlogin_gives_a_login_shell(method):
    assert sge.login(["/usr/bin/qlogin", "-now", "yes", "-q", sge.QUEUE, *method.login_options],
                     password=method.password) == 0


# --- tight integration at production PIDs (tests/cluster/up moved the counter past 150000) ----------

#: typed into a session: prints TIED-42 only if this shell's PID is above 150000 (where
#: pam_sge-qrsh-setup's own grandparent lookup fails) and it carries the job's additional group
TIED = ('test $$ -gt 150000 && id -G | tr " " "\\n" | grep -qx "$(cat $SGE_JOB_SPOOL_DIR/addgrpid)" '
        '&& echo TIED-$((6*7))')


@pytest.mark.slot("rsh")
@pytest.mark.methods("ssh-tight", "ssh-tunnel")
def test_qrsh_is_tied_to_its_job_above_pid_150000(method):
    proc = qrsh(TIED, stdin=subprocess.DEVNULL, text=True)
    assert proc.returncode == 0 and "TIED-42" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.slot("rlogin")
@pytest.mark.methods("ssh-tight", "ssh-tunnel")
def test_qrsh_without_command_is_tied_to_its_job_above_pid_150000(method):
    assert sge.login(["/usr/bin/qrsh", "-now", "yes", "-q", sge.QUEUE, *method.login_options],
                     command=TIED, expect="TIED-42") == 0


@pytest.mark.slot("qlogin")
@pytest.mark.methods("ssh-tight", "ssh-tunnel")
def test_qlogin_is_tied_to_its_job_above_pid_150000(method):
    assert sge.login(["/usr/bin/qlogin", "-now", "yes", "-q", sge.QUEUE, *method.login_options],
                     command=TIED, expect="TIED-42") == 0


# --- helpers -------------------------------------------------------------------------------

QRSH_SSH_MASTER = """#!/bin/sh
# a tool that only knows ssh, inside a parallel job: its "ssh" is qrsh_ssh
for i in 1 2 3; do
    {qrsh_ssh} -n -x -o BatchMode=yes {host} 'echo TASK $(cat $SGE_JOB_SPOOL_DIR/addgrpid) $(id -G | tr " " ,)' &
done
wait
{qrsh_ssh} -L 8080:localhost:80 {host} true
echo refused=$?
"""


@pytest.mark.slot("rsh")
@pytest.mark.methods("ssh-tight")
def test_qrsh_ssh_starts_an_ssh_tools_remote_commands_as_tasks_of_the_job(method, cluster):
    with sge.user_script(QRSH_SSH_MASTER.format(qrsh_ssh=os.path.join(cluster, "qrsh_ssh"), host=sge.HOST)) as master:
        proc = qrsh("-pe", sge.PE, "4", master, stdin=subprocess.DEVNULL, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tasks = re.findall(r"^TASK (\d+) (\S+)$", proc.stdout, re.M)
    assert len(tasks) == 3 and all(gid in groups.split(",") for gid, groups in tasks), proc.stdout
    assert len({gid for gid, _ in tasks}) == 3, "each remote command is a task of its own"
    assert "refused=64" in proc.stdout and "port forwarding (-L) cannot go through qrsh -inherit" in proc.stderr
