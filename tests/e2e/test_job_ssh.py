"""Reach your job: ``ssh JOB.job`` (and scp, rsync, -L, a ControlMaster) and ``qssh JOB`` land in exactly
that job, through qssh's record and the real adopt hook in the real sshd of vm and node2.

Real jobs of sgetest, real sshd on port 22, /etc/pam.d/sshd with the adopt block (as in
test_adopt.py, restored byte for byte).  The ssh client reads the drop-in ``sgewrap job-ssh`` would
write (with ``-F``: this machine's own /etc/ssh stays untouched), and the nodes' host keys from
sgetest's ~/.ssh/known_hosts under the nodes' own names (made here, removed after).
"""
import hashlib
import os
import pwd
import random
import re
import subprocess
import tempfile
import threading
import time
import urllib.request

import pytest

from lib import sge, wait_until
from sgewrap.admin import jobssh as admin_jobssh
from test_adopt import adopt_block, gid_of, running_job

USER = sge.TEST_USER
HOME = pwd.getpwnam(USER).pw_dir


@pytest.fixture(scope="module")
def setup(cluster):
    """(the ssh config file, the wrappers): adopt in the site's sshd, the nodes' keys known to sgetest."""
    known = os.path.join(HOME, ".ssh", "known_hosts")
    assert not os.path.exists(known), "sgetest has a known_hosts file of its own: not touching it"
    keys = subprocess.run(["ssh-keyscan", "-t", "ed25519", sge.HOST, sge.NODE2, sge.NODE3], capture_output=True,
                          text=True, timeout=60).stdout
    scratch = tempfile.mkdtemp(prefix="sgewrap-jobssh.")
    os.chmod(scratch, 0o755)
    config = os.path.join(scratch, "ssh_config")
    with open(config, "w") as f:
        f.write(admin_jobssh.drop_in(cluster, sge.SGE_ROOT) + "Host *\n    BatchMode yes\n")
    os.chmod(config, 0o644)
    try:
        sge.user_run(["/bin/sh", "-c", "cat > %s" % known], input=keys, text=True, check=True)
        with adopt_block(cluster, "--job-records"):
            yield config, cluster
    finally:
        if os.path.exists(known):
            os.unlink(known)
        subprocess.run(["rm", "-rf", scratch])


def ssh(config, *argv, user=USER, timeout=120, **kw):
    kw.setdefault("stdin", subprocess.DEVNULL)
    return sge.user_run(["/usr/bin/ssh", "-F", config, *argv], user=user, env={"HOME": pwd.getpwnam(user).pw_dir},
                        capture_output=True, text=True, timeout=timeout, **kw)


def in_job(proc, job, task="1", host=sge.HOST):
    """The session printed ``JOB=... GROUPS...``: it ran in job ``job`` (its JOB_ID and its group)."""
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.split("\n")[0].split()
    return first[0] == "JOB=%s" % job and gid_of(job, task, host) in first[1:]


PRINT = 'echo JOB=$JOB_ID $(id -G)'


def context_of(job):
    out = subprocess.run(["/usr/bin/qstat", "-j", job], env=sge.ENV, capture_output=True, text=True).stdout
    return "".join(line for line in out.splitlines() if line.startswith("context:"))


def groups_of(pid):
    from sgewrap.rootside import procs
    return procs.groups_of(pid)


def test_twenty_interleaved_connections_to_two_jobs_on_one_host_each_land_in_the_named_job(setup):
    config, _ = setup
    with running_job(USER) as first, running_job(USER) as second:
        results = {}

        def login(n):
            job = (first, second)[n % 2]
            results[n] = (job, ssh(config, "%s.job" % job, PRINT))
        threads = [threading.Thread(target=login, args=(n,)) for n in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for n, (job, proc) in sorted(results.items()):
            assert in_job(proc, job), (n, job, proc.stdout, proc.stderr)
        assert wait_until(lambda: not [j for j in (first, second) if "qssh_" in context_of(j)], 30), "records left"
        assert not [n for n in os.listdir("/tmp/sgewrap-mux-%d" % pwd.getpwnam(USER).pw_uid) if n.startswith("qssh-")
                    and n.split(".")[2] in (first, second)]


def test_refused_with_their_lines_another_users_job_suspended_finished_unknown_garbage(setup):
    config, _ = setup
    with running_job("sgeother") as other, running_job(USER) as suspended:
        proc = ssh(config, "%s.job" % other, "echo INSIDE")
        assert "qssh: error: job %s is not yours (it is sgeother's)" % other in proc.stderr and proc.returncode == 255
        subprocess.run(["/usr/bin/qmod", "-sj", suspended], env=sge.ENV, capture_output=True, check=True)
        assert wait_until(lambda: re.search(r"^\s*%s\s.*\ss\s" % suspended, sge.qstat_all(), re.M), 30)
        proc = ssh(config, "%s.job" % suspended, "echo INSIDE")
        assert "qssh: error: job %s is suspended (state s)" % suspended in proc.stderr, proc.stderr
    with running_job(USER, seconds=1) as done:
        pass
    assert wait_until(lambda: subprocess.run(["/usr/bin/qacct", "-j", done], env=sge.ENV, capture_output=True)
                      .returncode == 0 and subprocess.run(["/usr/bin/qstat", "-j", done], env=sge.ENV,
                                                          capture_output=True).returncode != 0, 60, 1)
    assert "qssh: error: job %s has finished" % done in ssh(config, "%s.job" % done, "true").stderr
    assert "qssh: error: job 9999999 is unknown" in ssh(config, "9999999.job", "true").stderr
    proc = ssh(config, "x1.y.job", "echo INSIDE")
    assert "qssh: error: 'x1.y.job' is not a job name" in proc.stderr and "INSIDE" not in proc.stdout


def test_scp_and_rsync_into_the_job_byte_for_byte_and_the_sftp_server_runs_in_it(setup):
    config, _ = setup
    data = os.urandom(6 << 20)
    src = tempfile.mkdtemp(prefix="sgewrap-jobssh-src.")
    os.chmod(src, 0o755)
    path = os.path.join(src, "blob")
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o644)
    digest = hashlib.sha256(data).hexdigest()
    token = "/tmp/sgewrap-jobssh-%d" % random.randrange(10 ** 6)
    try:
        with running_job(USER) as job:
            cp = sge.user_run(["/usr/bin/scp", "-F", config, path, "%s.job:%s.scp" % (job, token)],
                              env={"HOME": HOME}, capture_output=True, text=True, timeout=120)
            assert cp.returncode == 0, cp.stderr
            rs = sge.user_run(["/usr/bin/rsync", "-e", "/usr/bin/ssh -F %s" % config, path,
                               "%s.job:%s.rsync" % (job, token)], env={"HOME": HOME}, capture_output=True, text=True,
                              timeout=120)
            assert rs.returncode == 0, rs.stderr
            proc = ssh(config, "%s.job" % job, "sha256sum %s.scp %s.rsync" % (token, token))
            assert [line.split()[0] for line in proc.stdout.splitlines()] == [digest, digest], proc.stderr
    finally:
        subprocess.run(["rm", "-rf", src, token + ".scp", token + ".rsync"])


def test_a_port_forward_reaches_a_listener_started_in_the_job(setup):
    config, _ = setup
    port, local = random.randrange(20000, 30000), random.randrange(30000, 40000)
    with running_job(USER) as job:
        log = os.path.join(HOME, "jobssh-http-%d.log" % port)
        proc = ssh(config, "%s.job" % job, "nohup python3 -m http.server %d --bind 127.0.0.1 --directory /tmp "
                   "</dev/null >%s 2>&1 & sleep 1; echo started" % (port, log))
        assert "started" in proc.stdout, proc.stderr
        server = sge.processes_with("%d\0--bind" % port)
        why = open(log).read() if os.path.exists(log) else "no log"
        assert server and all(int(gid_of(job)) in groups_of(p) for p in server), why
        forward = subprocess.Popen(["/usr/sbin/runuser", "-u", USER, "--", "/usr/bin/ssh", "-F", config, "-N", "-L",
                                    "%d:127.0.0.1:%d" % (local, port), "%s.job" % job], env=dict(sge.ENV, HOME=HOME),
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            body = None

            def fetched():
                nonlocal body
                try:
                    body = urllib.request.urlopen("http://127.0.0.1:%d/" % local, timeout=5).read()
                except OSError:
                    return False
                return True
            assert wait_until(fetched, 30, 0.5) and b"Directory listing" in body
        finally:
            forward.terminate()
            forward.wait(30)


# What VS Code Remote-SSH runs (its "useLocalServer" mode, the default on Linux and macOS): one ssh with -T, a
# dynamic forward for its own connections and a connect timeout, a remote bash fed on stdin that starts the
# server in the background (nohup, output to a log, port 0), waits for the port in the log and prints it
# between markers; the connection then stays open, the laptop reaches the server through the SOCKS forward.
VSCODE_SCRIPT = """
log=$HOME/.sgewrap-vscode-replay-%(token)s.log
nohup python3 -u -m http.server 0 --bind 127.0.0.1 --directory /tmp </dev/null >"$log" 2>&1 &
for i in $(seq 100); do grep -q 'Serving HTTP' "$log" 2>/dev/null && break; sleep 0.1; done
port=$(sed -n 's/.* port \\([0-9]*\\) .*/\\1/p' "$log" | head -n 1)
echo "JOB=$JOB_ID $(id -G)"
echo "listeningOn==$port=="
"""


def test_vs_code_remote_ssh_replayed_lands_in_the_job_and_its_server_dies_with_it(setup):
    config, _ = setup
    token = str(random.randrange(10 ** 6, 10 ** 7))
    socks = random.randrange(40000, 50000)
    with running_job(USER) as job:
        client = subprocess.Popen(["/usr/sbin/runuser", "-u", USER, "--", "/usr/bin/ssh", "-F", config, "-T", "-D",
                                   str(socks), "-o", "ConnectTimeout=15", "%s.job" % job, "bash"],
                                  env=dict(sge.ENV, HOME=HOME), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        try:
            client.stdin.write(VSCODE_SCRIPT % {"token": token})
            client.stdin.flush()
            lines = []
            reader = threading.Thread(target=lambda: lines.extend(iter(client.stdout.readline, "")), daemon=True)
            reader.start()
            assert wait_until(lambda: any(line.startswith("listeningOn==") for line in lines), 60, 0.2), lines
            assert lines[0].split()[0] == "JOB=%s" % job and gid_of(job) in lines[0].split()[1:], lines
            port = [line for line in lines if line.startswith("listeningOn==")][0].strip().split("==")[1]
            assert port.isdigit(), lines
            server = sge.processes_with("http.server\0" + "0\0--bind")
            assert server and all(int(gid_of(job)) in groups_of(p) for p in server)
            got = subprocess.run(["/usr/bin/curl", "-s", "--max-time", "20", "--socks5-hostname",
                                  "127.0.0.1:%d" % socks, "http://127.0.0.1:%s/" % port], capture_output=True,
                                 text=True)
            assert "Directory listing" in got.stdout, got.stderr
        finally:
            client.stdin.close()
            client.wait(60)
        assert sge.processes_with("http.server\0" + "0\0--bind"), "the server died with the connection"
        subprocess.run(["/usr/bin/qdel", job], env=sge.ENV, capture_output=True, check=True)
        assert wait_until(lambda: not sge.processes_with("http.server\0" + "0\0--bind"), 60), "outlived its job"
    log = os.path.join(HOME, ".sgewrap-vscode-replay-%s.log" % token)
    if os.path.exists(log):
        os.unlink(log)


def test_a_control_master_per_job_two_jobs_on_one_host_stay_apart(setup):
    config, _ = setup
    with running_job(USER) as first, running_job(USER) as second:
        for job in (first, second):
            proc = ssh(config, "-o", "ControlMaster=yes", "-o", "ControlPersist=60", "-f", "-N", "%s.job" % job)
            assert proc.returncode == 0, proc.stderr
        try:
            for job in (first, second, first):
                assert ssh(config, "-O", "check", "%s.job" % job).returncode == 0
                assert in_job(ssh(config, "-o", "ControlMaster=no", "%s.job" % job, PRINT), job)
        finally:
            for job in (first, second):
                ssh(config, "-O", "exit", "%s.job" % job)


def test_the_slave_host_of_a_parallel_job_and_an_array_task(setup):
    config, _ = setup
    with sge.running_fan_out(sge.NODE2, "sleep 60", "-pe", sge.FW_PE, "2") as job:
        proc = ssh(config, "%s.%s.job" % (sge.NODE2, job), 'echo JOB=$JOB_ID $(id -G); cat $SGE_JOB_SPOOL_DIR/addgrpid')
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.split("\n")
        assert lines[0].split()[0] == "JOB=%s" % job and lines[1] in lines[0].split()[1:], proc.stdout
    with running_job(USER, extra=("-t", "1-2")) as job:
        assert wait_until(lambda: len(re.findall(r"^\s*%s\s.*\sr\s" % job, sge.qstat_all(), re.M)) == 2, 60)
        time.sleep(0.5)
        proc = ssh(config, "%s.2.job" % job, "echo JOB=$JOB_ID $(id -G); echo TASK=$SGE_TASK_ID")
        assert in_job(proc, job, task="2") and "TASK=2" in proc.stdout, proc.stdout + proc.stderr
        assert "is an array job: name a task" in ssh(config, "%s.job" % job, "true").stderr


def test_qdel_kills_what_each_session_started(setup):
    config, _ = setup
    tokens = [str(random.randrange(10 ** 6, 10 ** 7)) for _ in range(2)]
    with running_job(USER) as first, running_job(USER) as second:
        for job, token in zip((first, second), tokens):
            proc = ssh(config, "%s.job" % job, "setsid sh -c 'sleep %s & exit' </dev/null >/dev/null 2>&1; "
                       "echo started" % token)
            assert "started" in proc.stdout, proc.stderr
        assert wait_until(lambda: all(sge.processes_with(t) for t in tokens), 30)
        subprocess.run(["/usr/bin/qdel", first], env=sge.ENV, capture_output=True, check=True)
        assert wait_until(lambda: not sge.processes_with(tokens[0]), 60), "the first job's sleep survived its qdel"
        assert sge.processes_with(tokens[1]), "qdel of one job killed what a session of the other started"


def test_qssh_the_same_without_configuration(setup):
    _, wrappers = setup
    qssh = os.path.join(wrappers, "qssh")
    env = {"HOME": HOME}
    with running_job(USER) as first, running_job(USER) as second, running_job("sgeother") as other:
        for job in (first, second):
            proc = sge.user_run([qssh, job, "-o", "BatchMode=yes", PRINT], env=env, capture_output=True, text=True,
                                timeout=120, stdin=subprocess.DEVNULL)
            assert in_job(proc, job), proc.stderr
        proc = sge.user_run([qssh, other, "true"], env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1 and proc.stderr == "qssh: error: job %s is not yours (it is sgeother's)\n" % other


def test_sgewrap_job_ssh_writes_and_takes_out_its_drop_in(cluster, tmp_path):
    path = str(tmp_path / "sgewrap-job-ssh.conf")
    out = sge.sgewrap(cluster, "job-ssh", "--apply", "--file", path).stdout
    assert "wrote %s" % path in out
    with open(path) as f:
        text = f.read()
    assert "Host *.job\n" in text and "ProxyCommand %s/qssh --sge-root" % cluster in text
    assert "StrictHostKeyChecking no" not in text and "ControlPath ~/.ssh/sgewrap-%r@%n" in text
    assert "removed" in sge.sgewrap(cluster, "job-ssh", "--restore", "--file", path).stdout
    assert not os.path.exists(path)
    laptop = sge.sgewrap(cluster, "job-ssh", "--user-config", "--via", "me@login01").stdout
    assert "ProxyCommand ssh -T -o BatchMode=yes me@login01 %s/qssh" % cluster in laptop
