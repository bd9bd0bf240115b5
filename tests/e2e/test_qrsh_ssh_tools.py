"""Tools that only know ssh, through qrsh_ssh, in tight parallel jobs over two hosts (vm and node3,
open.pe): scp (its SFTP mode and -O), sftp and rsync with the settings ``qrsh_ssh --help`` and
README.rst give (qrshssh.TOOLS), and the exact argv Julia's Distributed and Charm++'s charmrun send
(neither is in Debian: the launcher side is replayed, a stand-in plays the worker).

Proved for each: the data crosses byte for byte in both directions (a file of several MiB and a
directory, sha256), the remote side runs on node3 in a task of the job (the SFTP server, rsync's
server and the workers report their host, the task's additional group id and their own groups), a
~/.bashrc that prints does not break sftp (and does reach a plain command: the hazard is real), and
after ``qdel`` of a job whose remote side still runs nothing of it is left on either host.
"""
import contextlib
import hashlib
import os
import pwd
import re
import shlex
import shutil
import subprocess
import tempfile

import pytest

from lib import mpijobs, need, sge, wait_until
from lib.mpijobs import JOB_PROCESSES, QUEUES, gid_range, qdel_leaves_nothing
from sgewrap import qrshssh

pytestmark = [pytest.mark.cluster, pytest.mark.slot("rsh"), pytest.mark.methods("ssh-tight")]

#: what a job running these tools may leave behind if its tasks escaped it
PROCESSES = JOB_PROCESSES + ("sftp-server", "sftp", "scp", "rsync", "qrsh_ssh", "qrsh", "julia", "cat", "python3")
#: every remote side reports this way (REMOTE WHAT HOST TASK-GID GROUPS); the SFTP server and rsync's
#: server into $S/remote.log (their standard output is the protocol), the workers on standard output
REPORTS = r"^REMOTE (\S+) (\S+) (\d+) (\S+)"
#: the SFTP server of these jobs (SGEWRAP_SFTP_SERVER): it reports, then becomes Debian's
REPORT_SFTP = """#!/bin/sh
echo "REMOTE sftp-server $(hostname) $(cat "$SGE_JOB_SPOOL_DIR/addgrpid") $(id -G | tr ' ' ,)" >> {S}/remote.log
exec /usr/lib/openssh/sftp-server "$@"
"""
#: rsync's server (--rsync-path): it reports, then becomes rsync
REPORT_RSYNC = """#!/bin/sh
echo "REMOTE rsync $(hostname) $(cat "$SGE_JOB_SPOOL_DIR/addgrpid") $(id -G | tr ' ' ,)" >> {S}/remote.log
exec rsync "$@"
"""
#: stands in for julia on node3: reads the cookie Distributed writes first, answers as a worker does
JULIA = """#!/bin/sh
read -r cookie
echo "julia_worker:9009#$(hostname)"
echo "REMOTE julia $(hostname) $(cat "$SGE_JOB_SPOOL_DIR/addgrpid") $(id -G | tr ' ' ,) cookie=$cookie args=$*"
exec sleep {hold}
"""
#: stands in for charmrun's start script (bash, sent on stdin to "/bin/bash -f")
CHARM_SCRIPT = """Echo() {{
  echo 'Charmrun remote shell(node3.0)>' $*
}}
Echo starting the node program
echo "REMOTE charm $(hostname) $(cat "$SGE_JOB_SPOOL_DIR/addgrpid") $(id -G | tr ' ' ,)"
exec sleep {hold}
"""
JOB = """#!/bin/sh
S={S}
echo "JOB $JOB_ID"
echo "MASTER $(hostname) $(cat "$SGE_JOB_SPOOL_DIR/addgrpid")"
{steps}
"""
COOKIE = "0123456789abcdef"
#: this host's address on node3's link (tests/cluster/up: HOST3_ADDR): where node3's engines find the
#: controller (vm's own name resolves to 127.0.0.1 here)
HOST_ON_NODE3 = "10.202.0.1"
#: ipyparallel (Debian's python3-ipyparallel 7.1) as its documentation sets it up, with TOOLS["ipyparallel"]'s
#: setting: a controller here, one engine on node3 started by its SSH engine launcher (profile create,
#: mkdir, scp of the connection file, then ``nohup ENGINE > LOG 2>&1 </dev/null & echo __remote_pid=$!__``,
#: and every 60 s a waiter through ssh); the engine reports where it runs; then HOLD seconds, then stop.
#: The remote profile is another directory than the local one: the hosts share their file systems, and
#: scp of a file onto itself would empty it.
IPYPARALLEL = """import os, sys, time
from traitlets.config import Config
import ipyparallel as ipp
S, ssh, scp, node, location, hold = sys.argv[1:7]
c = Config()
c.SSHEngineSetLauncher.engines = {{node: 1}}
c.SSHLauncher.ssh_cmd = ssh.split()
c.SSHLauncher.scp_cmd = scp.split()
c.SSHLauncher.remote_python = "/usr/bin/python3"
c.SSHEngineSetLauncher.remote_profile_dir = S + "/remote-profile"
cluster = ipp.Cluster(config=c, profile_dir=S + "/profile", cluster_id="sgewrap", engine_launcher_class="ssh",
                      controller_ip="*", controller_location=location)
t = time.monotonic()
rc = cluster.start_and_connect_sync(n=1)
print("STARTED %.1f" % (time.monotonic() - t), flush=True)


def where():
    import os, socket
    with open(os.environ["SGE_JOB_SPOOL_DIR"] + "/addgrpid") as f:
        return socket.gethostname(), f.read().strip(), ",".join(map(str, os.getgroups())), os.getpid()


for host, gid, groups, pid in rc[:].apply_sync(where):
    print("REMOTE ipyparallel %s %s %s pid=%d" % (host, gid, groups, pid), flush=True)
time.sleep(float(hold))
cluster.stop_cluster_sync()
print("STOPPED", flush=True)
"""


def tool(key, wrappers):
    """TOOLS[key]'s setting with the installed qrsh_ssh, up to where the tool's own operands start."""
    line = qrshssh.setting(qrshssh.TOOLS[key][2], os.path.join(wrappers, "qrsh_ssh"))
    return re.split(r" \[| SOURCE| HOST", line)[0]


def steps(*commands):
    """Job script lines: each command, then ``STEP n STATUS``."""
    return "\n".join("%s\necho \"STEP %d $?\"" % (command, n) for n, command in enumerate(commands))


@pytest.fixture
def scratch():
    """A directory both hosts see (they share the file systems), the test user's: src/big (6 MiB of
    random bytes), src/tree (files of several sizes, one empty, in a subdirectory too), up/ and down/,
    and the reporting SFTP and rsync servers."""
    top = tempfile.mkdtemp(prefix="sgewrap-tools.")
    pw = pwd.getpwnam(sge.TEST_USER)
    try:
        os.chmod(top, 0o755)
        for d in ("src/tree/sub", "up", "down"):
            os.makedirs(os.path.join(top, d))
        files = {"src/big": os.urandom(6 * 1024 * 1024), "src/tree/a": os.urandom(1024 * 1024 + 7),
                 "src/tree/empty": b"", "src/tree/sub/text": b"hello\n" * 1000,
                 "report-sftp-server": REPORT_SFTP.format(S=top).encode(),
                 "report-rsync": REPORT_RSYNC.format(S=top).encode()}
        for name, data in files.items():
            with open(os.path.join(top, name), "wb") as f:
                f.write(data)
        for name in ("report-sftp-server", "report-rsync"):
            os.chmod(os.path.join(top, name), 0o755)
        for d, subdirs, names in os.walk(top):
            for name in [d] + [os.path.join(d, n) for n in subdirs + names]:
                os.chown(name, pw.pw_uid, pw.pw_gid)
        yield top
    finally:
        shutil.rmtree(top, ignore_errors=True)


@contextlib.contextmanager
def noisy_bashrc():
    """The test user's ~/.bashrc starts with an echo (Debian's bash reads it for sshd's ``bash -c``)."""
    pw = pwd.getpwnam(sge.TEST_USER)
    path = os.path.join(pw.pw_dir, ".bashrc")
    before = open(path, "rb").read() if os.path.exists(path) else None
    with open(path, "wb") as f:
        f.write(b"echo 'hello from ~/.bashrc'\n" + (before or b""))
    os.chown(path, pw.pw_uid, pw.pw_gid)
    try:
        yield
    finally:
        if before is None:
            os.unlink(path)
        else:
            with open(path, "wb") as f:
                f.write(before)


#: slots of each job: two on vm, two on node3 ($round_robin), so that a task that has just ended
#: never holds up the next one
SLOTS = "4"


def run_job(text):
    """``text`` as the master of a parallel job with slots on vm and on node3; its output."""
    with sge.user_script(text) as path:
        proc = sge.qrsh("-pe", sge.OPEN_PE, SLOTS, *QUEUES[2:], path, queue=QUEUES[1], stdin=subprocess.DEVNULL,
                        text=True, timeout=300)
    assert proc.returncode == 0 and "JOB " in proc.stdout, proc.stdout + proc.stderr
    return proc.stdout


def all_steps_passed(out, count, errors=""):
    assert re.findall(r"^STEP (\d+) (\d+)$", out, re.M) == [(str(n), "0") for n in range(count)], \
        out + ("\n--- standard error:\n" + errors[-4000:] if errors else "")


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def same_tree(a, b):
    """Directories ``a`` and ``b`` hold the same files, byte for byte."""
    def files(top):
        return sorted(os.path.relpath(os.path.join(d, n), top) for d, _, names in os.walk(top) for n in names)
    assert files(a) == files(b), (a, b)
    for name in files(a):
        assert sha256(os.path.join(a, name)) == sha256(os.path.join(b, name)), name


def copied_both_ways(top):
    """up/ holds what went to node3 and down/ what came back: both are src/, byte for byte."""
    for side in ("up", "down"):
        assert sha256(os.path.join(top, side, "big")) == sha256(os.path.join(top, "src", "big")), side
        same_tree(os.path.join(top, "src", "tree"), os.path.join(top, side, "tree"))


def remote_sides_in_tasks_of_node3(text, out, what, at_least=1):
    """Every REMOTE line of ``what`` in ``text``: on node3, in a group of node3's gid_range that its
    process carries, not the master's; at least ``at_least`` of them."""
    found = [r for r in re.findall(REPORTS, text, re.M) if r[0] == what]
    assert len(found) >= at_least, text
    master = re.search(r"^MASTER \S+ (\d+)$", out, re.M).group(1)
    node3 = gid_range((sge.NODE3,), everywhere=False)
    for _, host, gid, groups in found:
        assert host == sge.NODE3 and gid in groups.split(","), found
        assert int(gid) in node3 and gid != master, "a task's group of node3: %r" % found
    return found


def remote_log(top):
    path = os.path.join(top, "remote.log")
    return open(path).read() if os.path.exists(path) else ""


@pytest.mark.parametrize("mode", ["", "-O"])
def test_scp_copies_files_and_directories_both_ways_as_tasks_of_the_job(method, cluster, scratch, mode):
    """scp's SFTP mode (OpenSSH 9's default: ``ssh -s node3 sftp``) and the legacy protocol (-O:
    ``scp -t``/``-f`` through the user's shell).  One copy runs Debian's SFTP server itself (no
    SGEWRAP_SFTP_SERVER), the others the reporting one."""
    scp = "%s %s -q" % (tool("scp", cluster), mode)
    text = JOB.format(S=scratch, steps="export SGEWRAP_SFTP_SERVER=$S/report-sftp-server\n" + steps(
        "%s $S/src/big node3:$S/up/big" % scp,
        "%s -r $S/src/tree node3:$S/up" % scp,
        "env -u SGEWRAP_SFTP_SERVER %s node3:$S/src/big $S/down/big" % scp,
        "%s -r node3:$S/src/tree $S/down" % scp))
    out = run_job(text)
    all_steps_passed(out, 4)
    copied_both_ways(scratch)
    if not mode:
        remote_sides_in_tasks_of_node3(remote_log(scratch), out, "sftp-server", at_least=3)


@pytest.mark.parametrize("bashrc", ["plain", "noisy"])
def test_sftp_batch_copies_both_ways_whatever_the_bashrc_prints(method, cluster, scratch, bashrc):
    """``sftp -b``: put and get of the file and (-r) the directory in one session.  With a ~/.bashrc
    that echoes, a plain command through qrsh_ssh shows the echo (the login shell does print into the
    channel), and sftp works all the same: qrsh_ssh drops it before the server's first byte."""
    batch = os.path.join(scratch, "batch")
    with open(batch, "w") as f:
        f.write("put {S}/src/big {S}/up/big\nput -r {S}/src/tree {S}/up\nget {S}/src/big {S}/down/big\n"
                "get -r {S}/src/tree {S}/down\n".format(S=scratch))
    os.chmod(batch, 0o644)
    sftp = tool("sftp", cluster)
    text = JOB.format(S=scratch, steps=steps(
        "echo \"PLAIN $(%s node3 true | tr '\\n' ' ')\"" % os.path.join(cluster, "qrsh_ssh"),
        "SGEWRAP_SFTP_SERVER=$S/report-sftp-server %s -b $S/batch node3" % sftp))
    with noisy_bashrc() if bashrc == "noisy" else contextlib.nullcontext():
        out = run_job(text)
    all_steps_passed(out, 2)
    assert ("hello from ~/.bashrc" in re.search(r"^PLAIN (.*)$", out, re.M).group(1)) == (bashrc == "noisy"), out
    copied_both_ways(scratch)
    remote_sides_in_tasks_of_node3(remote_log(scratch), out, "sftp-server")


#: sftp interactive, as a user types at it: in a pseudo-terminal of its own in the job (TERM=dumb, no
#: batch file), each command typed after the "sftp> " prompt, what each answered printed after SAID N
INTERACTIVE_SFTP = """import os, pty, select, sys, time
S, sftp = sys.argv[1], sys.argv[2:]
typed = ["put %s/src/big %s/up/big" % (S, S), "put -r %s/src/tree %s/up" % (S, S),
         "get %s/src/big %s/down/big" % (S, S), "get -r %s/src/tree %s/down" % (S, S), "ls -l %s/up" % S, "bye"]
pid, fd = pty.fork()
if pid == 0:
    os.environ["TERM"] = "dumb"
    os.execvp(sftp[0], sftp)
seen = b""


def upto(needle, timeout=120):
    # what sftp printed up to needle (None: up to its end); None if neither came
    global seen
    deadline = time.monotonic() + timeout
    while needle is None or needle not in seen:
        left = deadline - time.monotonic()
        chunk = b""
        if left > 0 and select.select([fd], [], [], left)[0]:
            try:
                chunk = os.read(fd, 65536)
            except OSError:         # EIO: sftp has closed its terminal
                pass
        if not chunk:
            return seen.decode(errors="replace") if needle is None and left > 0 else None
        seen += chunk
    text, seen = seen.split(needle, 1)
    return text.decode(errors="replace")


print("SAID prompt %r" % upto(b"sftp> "), flush=True)
for n, line in enumerate(typed):
    os.write(fd, line.encode() + b"\\r")
    said = upto(b"sftp> " if line != "bye" else None)
    print("SAID %d %r" % (n, said), flush=True)
_, status = os.waitpid(pid, 0)
print("SFTP EXIT %d" % os.waitstatus_to_exitcode(status), flush=True)
"""


def test_sftp_interactive_in_a_terminal_puts_gets_and_lists(method, cluster, scratch):
    """``sftp -S qrsh_ssh node3`` as typed at a terminal (a pty of its own in the job, no -b): put and
    get of the file and (-r) the directory, ls -l, bye; byte for byte, the SFTP server a task of node3."""
    with open(os.path.join(scratch, "sftp-pty.py"), "w") as f:
        f.write(INTERACTIVE_SFTP)
    sftp = shlex.split(tool("sftp", cluster))
    out = run_job(JOB.format(S=scratch, steps=steps("SGEWRAP_SFTP_SERVER=$S/report-sftp-server /usr/bin/python3 "
                                                    "$S/sftp-pty.py $S %s node3" % " ".join(sftp))))
    all_steps_passed(out, 1)
    assert "SFTP EXIT 0" in out, out
    said = dict(re.findall(r"^SAID (\S+) (.*)$", out, re.M))
    assert "Connected to node3" in said["prompt"], out
    assert len(said) == 7 and said["5"] != "None", out
    listing = eval(said["4"])       # repr of what ls -l printed
    assert re.search(r" 6291456 .* %s/up/big\r?$" % re.escape(scratch), listing, re.M), listing
    copied_both_ways(scratch)
    remote_sides_in_tasks_of_node3(remote_log(scratch), out, "sftp-server")


#: Ray's own SSHCommandRunner (ray.autoscaler._private.command_runner, as ``ray up`` drives it for each node)
#: with TOOLS["ray"]'s setting (``ssh`` from PATH is qrsh_ssh): node3 by its IP address (user@IP), a stand-in
#: node provider that only knows that address, Ray's options as they are (-i KEY, ControlMaster=auto,
#: ControlPath, ControlPersist, ConnectTimeout...).  With login shells (ray up's default: -tt and ``bash
#: --login -c -i``) the command with and without captured output and with Ray's environment variables;
#: without them the exit status (ProcessRunnerError's code) and port forwarding refused; rsync up and down.
RAY = """import subprocess, sys
from ray.autoscaler._private import command_runner, subprocess_output_util
from ray.autoscaler._private.cli_logger import cli_logger
S, ip, user, report = sys.argv[1:5]


class Provider:                 # what SSHCommandRunner asks a NodeProvider
    def internal_ip(self, node_id):
        return ip

    def external_ip(self, node_id):
        return ip

    def is_terminated(self, node_id):
        return False


runner = command_runner.SSHCommandRunner(
    log_prefix="", node_id="worker-1", provider=Provider(), cluster_name="sgewrap", process_runner=subprocess,
    use_internal_ip=True, auth_config={"ssh_user": user, "ssh_private_key": "~/.ssh/ray-sgewrap.pem"})
print(runner.run(report.replace("WHAT", "ray-captured"), with_output=True).decode().strip(), flush=True)
cli_logger.configure(verbosity=0)
code = runner.run(report.replace("WHAT", "ray-plain") + " $SGEWRAP_RAY",
                  environment_variables={"SGEWRAP_RAY": "a b"})
print("RAY redirected", code, flush=True)
command_runner.set_using_login_shells(False)          # as ray up --no-use-login-shells sets it
subprocess_output_util.set_allow_interactive(False)
# with_output: Ray's other path (stdout and stderr read by threads, then poll()) races with the end of
# the process whatever ssh it runs: poll() may still say None after both reached EOF (measured: 189 of
# 200 with /bin/sh -c 'exit 3' in that place), and it fails on None > 0 instead of reporting the status
for cmd, kwargs in (("exit 3", {}), ("true", {"port_forward": [(18265, 8265)]})):
    try:
        runner.run(cmd, with_output=True, **kwargs)
        print("RAY exit 0", flush=True)
    except Exception as e:
        print("RAY exit", getattr(e, "code", repr(e)), flush=True)
# Ray's rsync goes the same racy way (run_cmd_redirected: measured once in a full run, TypeError from
# run_rsync_down): asked again on that error only; the copies are compared byte for byte after
for rsync, args in ((runner.run_rsync_up, (S + "/src/big", S + "/up/big")),
                    (runner.run_rsync_down, (S + "/src/big", S + "/down/big"))):
    for _ in range(5):
        try:
            rsync(*args)
            break
        except TypeError:
            print("RAY poll race", flush=True)
print("RAY done", flush=True)
"""


@pytest.fixture(scope="module")
def ray_path():
    """Ray (pip: ray, setup.cfg's test extra) where the job's user reads it: the site directory holding it,
    hard-linked (else copied) into a new directory of /opt (the tree under test may sit where another user
    cannot reach it), for the job's /usr/bin/python3 of the same version."""
    import importlib.util
    import sys
    spec = importlib.util.find_spec("ray")
    need(spec is not None, "ray is not installed", "make venv: setup.cfg's test extra installs it")
    version = subprocess.run(["/usr/bin/python3", "-c", "import sys; print(sys.version_info[:2])"],
                             capture_output=True, text=True).stdout.strip()
    need(version == str(sys.version_info[:2]), "the venv's Python is not /usr/bin/python3's version")
    site = os.path.dirname(os.path.dirname(spec.origin))
    top = tempfile.mkdtemp(prefix="sgewrap-ray.", dir="/opt")
    try:
        os.chmod(top, 0o755)
        copy = os.path.join(top, "site")
        if subprocess.run(["cp", "-al", site, copy], capture_output=True).returncode != 0:
            shutil.rmtree(copy, ignore_errors=True)
            subprocess.run(["cp", "-a", site, copy], check=True)
        yield copy
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_ray_ssh_command_runner_runs_each_command_as_a_task(method, cluster, scratch, ray_path):
    """TOOLS["ray"]: Ray's SSHCommandRunner itself, ``ssh`` from PATH being qrsh_ssh, node3 named by its
    address: every command a task of node3 (-tt and ControlMaster/ControlPath/ControlPersist accepted;
    bash -i without a pty only warns), Ray's environment variables arrive, the exit status comes back
    (3 is 3), port forwarding is refused (64), rsync up and down byte for byte."""
    import socket
    with open(os.path.join(scratch, "ray-runner.py"), "w") as f:
        f.write(RAY)
    path = qrshssh.setting(qrshssh.TOOLS["ray"][2], os.path.join(cluster, "qrsh_ssh")).split(" ray ")[0]
    report = "echo REMOTE WHAT $(hostname) $(cat $SGE_JOB_SPOOL_DIR/addgrpid) $(id -G | tr \\  ,)"
    line = "%s PYTHONPATH=%s /usr/bin/python3 $S/ray-runner.py $S %s %s %s" % (
        path, ray_path, socket.gethostbyname(sge.NODE3), sge.TEST_USER, shlex.quote(report))
    with sge.user_script(JOB.format(S=scratch, steps=steps(line))) as job:
        proc = sge.qrsh("-pe", sge.OPEN_PE, SLOTS, *QUEUES[2:], job, queue=QUEUES[1], stdin=subprocess.DEVNULL,
                        text=True, timeout=300)
    out = proc.stdout
    all_steps_passed(out, 1, proc.stderr)
    # -tt: bash -i without a terminal says so, on standard error, and runs the command all the same
    assert "no job control in this shell" in proc.stderr, proc.stderr
    for what in ("ray-captured", "ray-plain"):
        remote_sides_in_tasks_of_node3(out, out, what)
    assert re.search(r'^REMOTE ray-plain .* "a b"$', out, re.M), out       # Ray sends the value as JSON
    assert re.findall(r"^RAY (redirected|exit) (\S+)$", out, re.M) == [
        ("redirected", "0"), ("exit", "3"), ("exit", "64")], out
    assert "RAY done" in out, out
    for side in ("up", "down"):
        assert sha256(os.path.join(scratch, side, "big")) == sha256(os.path.join(scratch, "src", "big")), side


#: a job of mixed.pe with its master on node4 (Debian 13) and slots on vm: qrsh_ssh there is node4's own
#: install (the node4 fixture: make install with trixie's Python), the tools node4's OpenSSH 10
QUEUES4 = ("-q", "%s,%s" % (sge.QUEUE, sge.DEB13_QUEUE), "-masterq", "%s@%s" % (sge.DEB13_QUEUE, sge.NODE4))


@pytest.fixture
def scratch4():
    """The same new path D on node4 and on vm, whose /tmp they do not share: on node4 src/big (6 MiB),
    src/tree and down-MODE/ for what comes back; on vm up-MODE/ for what arrives, src/ with other random
    bytes (what comes back must be vm's, not node4's own) and the reporting SFTP server."""
    path = tempfile.mkdtemp(prefix="sgewrap-ossh10.")
    pw = pwd.getpwnam(sge.TEST_USER)
    sides = {sge.NODE4: sge.NODE4_ROOT + path, sge.HOST: path}
    try:
        for host, top in sides.items():
            os.makedirs(top, exist_ok=True)
            os.chmod(top, 0o755)
            for d in ["src/tree/sub"] + ["%s-%s" % ("down" if host == sge.NODE4 else "up", mode)
                                         for mode in OPENSSH_10_MODES]:
                os.makedirs(os.path.join(top, d))
            files = {"src/big": os.urandom(6 * 1024 * 1024), "src/tree/a": os.urandom(1024 * 1024 + 7),
                     "src/tree/empty": b"", "src/tree/sub/text": (host + "\n").encode() * 1000}
            if host == sge.HOST:
                files["report-sftp-server"] = REPORT_SFTP.format(S=path).encode()
            for name, data in files.items():
                with open(os.path.join(top, name), "wb") as f:
                    f.write(data)
            for d, subdirs, names in os.walk(top):
                for name in [d] + [os.path.join(d, n) for n in subdirs + names]:
                    os.chown(name, pw.pw_uid, pw.pw_gid)
        os.chmod(os.path.join(path, "report-sftp-server"), 0o755)
        yield path, sides
    finally:
        for top in sides.values():
            shutil.rmtree(top, ignore_errors=True)


#: how node4's OpenSSH 10 clients copy in test_openssh_10_clients_*: mode -> the lines of one direction pair
#: ({tool}: the setting; {S}: the scratch path, the same on both hosts); the file and (-r) the directory to
#: vm into up-MODE, then vm's back from its src/ into down-MODE
OPENSSH_10_MODES = {
    "scp": ["{tool} -q $S/src/big {host}:$S/up-scp/big", "{tool} -q -r $S/src/tree {host}:$S/up-scp",
            "{tool} -q {host}:$S/src/big $S/down-scp/big", "{tool} -q -r {host}:$S/src/tree $S/down-scp"],
    "scp-O": ["{tool} -O -q $S/src/big {host}:$S/up-scp-O/big", "{tool} -O -q -r $S/src/tree {host}:$S/up-scp-O",
              "{tool} -O -q {host}:$S/src/big $S/down-scp-O/big", "{tool} -O -q -r {host}:$S/src/tree $S/down-scp-O"],
    "sftp": ["{tool} -b $S/batch {host}"],
}
SFTP_BATCH = ("put {S}/src/big {S}/up-sftp/big\nput -r {S}/src/tree {S}/up-sftp\nget {S}/src/big {S}/down-sftp/big\n"
              "get -r {S}/src/tree {S}/down-sftp\n")


def test_openssh_10_clients_on_debian_13_copy_to_the_other_host_and_back(method, cluster, node4, scratch4):
    """Debian 13's own scp (its SFTP mode and -O) and sftp -b (OpenSSH 10: -oControlMaster=no, sftp's
    "-oForwardX11 no" as one word) with TOOLS' settings, in a job whose master is node4 (mixed.pe):
    a 6 MiB file and a directory to vm and back, byte for byte, across two hosts that share no /tmp;
    the SFTP servers each in a task of vm, not the master's."""
    path, sides = scratch4
    with open(os.path.join(sides[sge.NODE4], "batch"), "w") as f:
        f.write(SFTP_BATCH.format(S=path))
    lines = ["export SGEWRAP_SFTP_SERVER=$S/report-sftp-server", "ssh -V 2>&1 | sed 's/^/CLIENT /'"]
    count = 0
    for mode, commands in OPENSSH_10_MODES.items():
        setting = tool(mode.split("-")[0], cluster)
        lines += [c.format(tool=setting, host=sge.HOST) for c in commands]
        count += len(commands)
    text = JOB.format(S=path, steps=lines[0] + "\n" + lines[1] + "\n" + steps(*lines[2:]))
    job_script = os.path.join(sides[sge.NODE4], "job.sh")
    with open(job_script, "w") as f:
        f.write(text)
    os.chmod(job_script, 0o755)
    sge.wait_no_user_jobs()
    proc = sge.qrsh("-pe", sge.MIXED_PE, "4", *QUEUES4[2:], os.path.join(path, "job.sh"), queue=QUEUES4[1],
                    stdin=subprocess.DEVNULL, text=True, timeout=300)
    out = proc.stdout
    assert proc.returncode == 0 and "JOB " in out, out + proc.stderr
    assert re.search(r"^MASTER %s \d+$" % sge.NODE4, out, re.M), out
    assert re.search(r"^CLIENT OpenSSH_10\.", out, re.M), out
    all_steps_passed(out, count)
    node4, vm = sides[sge.NODE4], sides[sge.HOST]
    assert sha256(os.path.join(vm, "src", "big")) != sha256(os.path.join(node4, "src", "big"))
    for mode in OPENSSH_10_MODES:
        assert sha256(os.path.join(vm, "up-" + mode, "big")) == sha256(os.path.join(node4, "src", "big")), mode
        same_tree(os.path.join(node4, "src", "tree"), os.path.join(vm, "up-" + mode, "tree"))
        assert sha256(os.path.join(node4, "down-" + mode, "big")) == sha256(os.path.join(vm, "src", "big")), mode
        same_tree(os.path.join(vm, "src", "tree"), os.path.join(node4, "down-" + mode, "tree"))
    # the SFTP servers: one per SFTP session (scp: 4, sftp: 1), each in a task's group of vm
    found = [r for r in re.findall(REPORTS, remote_log(vm), re.M) if r[0] == "sftp-server"]
    assert len(found) == 5, remote_log(vm)
    master = re.search(r"^MASTER \S+ (\d+)$", out, re.M).group(1)
    vm_range = gid_range((), everywhere=True) - gid_range((sge.NODE4,), everywhere=False)
    for _, host, gid, groups in found:
        assert host == sge.HOST and gid in groups.split(",") and gid != master and int(gid) in vm_range, found


def test_rsync_copies_both_ways_as_tasks_of_the_job(method, cluster, scratch):
    rsync = "%s --rsync-path=$S/report-rsync" % tool("rsync", cluster)
    text = JOB.format(S=scratch, steps=steps(
        "%s $S/src/big $S/src/tree node3:$S/up/" % rsync,
        "%s node3:$S/src/big node3:$S/src/tree $S/down/" % rsync))
    out = run_job(text)
    all_steps_passed(out, 2)
    copied_both_ways(scratch)
    remote_sides_in_tasks_of_node3(remote_log(scratch), out, "rsync", at_least=2)


def julia_argv(scratch, cluster):
    """What Distributed's SSHManager runs for addprocs([user@node3]; ssh=qrsh_ssh, dir=scratch,
    exename=scratch/julia) (Distributed.jl, launch_on_machine: ``$ssh -T -a -x -o
    ClearAllForwardings=yes $sshflags $host $remotecmd``, remotecmd = ``sh -l -c`` of ``cd --
    DIR\\nexec EXENAME --worker``, quoted as shell_escape_posixly does)."""
    remote = "sh -l -c %s" % shlex.quote("cd -- %s\nexec %s/julia --worker" % (scratch, scratch))
    return [os.path.join(cluster, "qrsh_ssh"), "-T", "-a", "-x", "-o", "ClearAllForwardings=yes",
            "%s@%s" % (sge.TEST_USER, sge.NODE3), remote]


def charm_argv(cluster):
    """What charmrun runs for a node of its nodelist with ``++remote-shell qrsh_ssh`` (charmrun.C,
    ssh_fork): options after the host, the start script on stdin."""
    return [os.path.join(cluster, "qrsh_ssh"), sge.NODE3, "-l", sge.TEST_USER, "-o", "KbdInteractiveAuthentication=no",
            "-o", "PasswordAuthentication=no", "-o", "NoHostAuthenticationForLocalhost=yes", "/bin/bash -f"]


def replay(launcher, scratch, cluster, hold):
    """The job script line that replays ``launcher``'s argv (its worker holding ``hold`` seconds)."""
    if launcher == "julia":
        with open(os.path.join(scratch, "julia"), "w") as f:
            f.write(JULIA.format(hold=hold))
        os.chmod(os.path.join(scratch, "julia"), 0o755)
        return "printf '%%s\\n' %s | %s" % (COOKIE, " ".join(shlex.quote(w) for w in julia_argv(scratch, cluster)))
    with open(os.path.join(scratch, "charm.sh"), "w") as f:
        f.write(CHARM_SCRIPT.format(hold=hold))
    os.chmod(os.path.join(scratch, "charm.sh"), 0o644)
    return "%s < $S/charm.sh" % " ".join(shlex.quote(w) for w in charm_argv(cluster))


@pytest.mark.parametrize("launcher", ["julia", "charm"])
def test_julia_and_charm_start_their_workers_as_tasks(method, cluster, scratch, launcher):
    """The setting is TOOLS["julia"] (ssh=qrsh_ssh) and TOOLS["charm"] (++remote-shell qrsh_ssh); the
    argv is the one each sends, replayed, and the worker gets its standard input (Julia's cookie,
    charmrun's start script)."""
    out = run_job(JOB.format(S=scratch, steps=steps(replay(launcher, scratch, cluster, 0))))
    all_steps_passed(out, 1)
    remote_sides_in_tasks_of_node3(out, out, launcher)
    if launcher == "julia":
        assert "julia_worker:9009#%s" % sge.NODE3 in out
        assert "cookie=%s args=--worker" % COOKIE in out
    else:
        assert "Charmrun remote shell(node3.0)> starting the node program" in out


def ipyparallel_line(scratch, cluster, hold):
    """The job script line that runs IPYPARALLEL with TOOLS["ipyparallel"]'s ssh_cmd (``--linger``)."""
    with open(os.path.join(scratch, "ipp.py"), "w") as f:
        f.write(IPYPARALLEL.format())
    ssh = re.search(r"ssh_cmd = \[(.*)\]", qrshssh.setting(qrshssh.TOOLS["ipyparallel"][2], os.path.join(
        cluster, "qrsh_ssh"))).group(1).replace("'", "").replace(",", " ")
    return "/usr/bin/python3 $S/ipp.py $S '%s' 'scp -S %s' %s %s %s" % (
        ssh, os.path.join(cluster, "qrsh_ssh"), sge.NODE3, HOST_ON_NODE3, hold)


#: ipyparallel's jobs hold a task on node3 for the engine and one for its waiter (an ssh every 60 s), and
#: start more (profile, mkdir, scp; at the stop a kill and a second waiter at once): measured, 4 slots
#: there are not enough (execd "didn't accept task" for the fifth task at the stop); 8 there
IPP_SLOTS = "16"


def test_ipyparallel_engine_started_over_ssh_lingers_as_a_task_and_answers(method, cluster, scratch):
    """ipyparallel's SSH engine launcher through ``qrsh_ssh --linger``: its ``nohup ... &`` engine on
    node3 outlives the ssh that started it (which returns at once with the engine's pid), runs in that
    task's group on node3, answers apply_sync, and stops with the cluster; the job ends cleanly."""
    with sge.user_script(JOB.format(S=scratch, steps=steps(ipyparallel_line(scratch, cluster, 0)))) as path:
        proc = sge.qrsh("-pe", sge.OPEN_PE, IPP_SLOTS, *QUEUES[2:], path, queue=QUEUES[1],
                        stdin=subprocess.DEVNULL, text=True, timeout=300)
    out = proc.stdout
    assert proc.returncode == 0 and "STOPPED" in out, out + proc.stderr
    all_steps_passed(out, 1)
    remote_sides_in_tasks_of_node3(out, out, "ipyparallel")


@pytest.mark.parametrize("holder", ["sftp", "julia", "charm", "ipyparallel"])
def test_qdel_of_a_job_whose_remote_side_runs_leaves_nothing(method, cluster, scratch, holder):
    """A job whose sftp session (its stdin never ends: the relay stays), Julia worker or charmrun node
    program still runs on node3: qdel, and nothing of it is left on either host."""
    slots = SLOTS
    if holder == "sftp":
        line = "sleep 600 | SGEWRAP_SFTP_SERVER=$S/report-sftp-server %s -b - node3" % tool("sftp", cluster)
        name = "sftp-server"
    elif holder == "ipyparallel":
        line, name, slots = ipyparallel_line(scratch, cluster, 600), "python3", IPP_SLOTS
    else:
        line = replay(holder, scratch, cluster, 600)
        name = "sleep"
    with sge.batch_job(JOB.format(S=scratch, steps=line), "-pe", sge.OPEN_PE, slots, *QUEUES) as (job, _):
        tasks = {}

        def held_on_node3():
            tasks.clear()
            tasks.update(sge.task_gids(job))
            return [p for p in sge.processes_of(sge.TEST_USER, (name,)) if sge.proc_groups(p) & set(tasks)
                    and sge.host_of(p) == sge.NODE3]
        held = wait_until(held_on_node3, 120, 0.3)
        assert held, "no %s of the job on node3" % name
        for pid in held:        # in the group of a task of its own host
            assert {tasks[g] for g in sge.proc_groups(pid) if g in tasks} == {sge.NODE3}, pid
        qdel_leaves_nothing(job, tasks, PROCESSES)


#: many at once: what each of the 64 commands runs on node3 (its number, host, task group, groups)
MANY = "echo MANY {n} $(hostname) $(cat $SGE_JOB_SPOOL_DIR/addgrpid) $(id -G | tr \\  ,)"


def many_at_once(out, count=64):
    """``count`` MANY lines, numbers 1..count, each from node3 in a task's group of node3 it carries."""
    found = re.findall(r"^MANY (\d+) (\S+) (\d+) (\S+)$", out, re.M)
    assert sorted(int(n) for n, _, _, _ in found) == list(range(1, count + 1)), out
    node3 = gid_range((sge.NODE3,), everywhere=False)
    for _, host, gid, groups in found:
        assert host == sge.NODE3 and int(gid) in node3 and gid in groups.split(","), found


@pytest.mark.parametrize("fan_out", ["parallel", "clush"])
def test_64_at_once_to_a_host_of_two_slots_all_run_as_tasks(method, cluster, fan_out):
    """GNU parallel -j64 and ClusterShell's fan-out of 64 (-f 64: its exec worker runs TOOLS["clush"]'s
    qrsh_ssh once per name) to node3, where the job holds 2 slots: qrsh_ssh queues the connections for
    the slots (before: 13 of 64 ran, Grid Engine refused the others), every command runs in a task of
    node3 and nothing is refused."""
    qrsh_ssh = os.path.join(cluster, "qrsh_ssh")
    if fan_out == "parallel":
        line = "seq 64 | %s -j64 -S node3 %s" % (tool("parallel", cluster).split(" -S")[0],
                                                 shlex.quote(MANY.format(n="{}")))
    else:
        # the exec worker runs its command line through a shell of its own: quoted twice
        line = "clush -N -R exec -f 64 -w 'n[1-64]' %s node3 %s" % (
            qrsh_ssh, shlex.quote(shlex.quote(MANY.format(n="$(echo %h | tr -d n)"))))
    out = run_job(JOB.format(S="/tmp", steps=steps(line)))
    all_steps_passed(out, 1)
    many_at_once(out)


def test_clush_runs_one_task_on_each_host_and_exit_statuses_come_back(method, cluster):
    """TOOLS["clush"]'s setting across vm and node3 (its ssh worker: one qrsh_ssh per host); the exit
    status through qrsh_ssh is the remote command's (42 is 42, 255 is the command's own too), and
    qrsh_ssh's own refusals keep their codes."""
    qrsh_ssh = os.path.join(cluster, "qrsh_ssh")
    clush = qrshssh.setting(qrshssh.TOOLS["clush"][2], qrsh_ssh, command="'%s'" % mpijobs.REPORT)
    text = JOB.format(S="/tmp", steps="hosts=%s\n" % qrshssh.HOSTS_WORD + steps(
        clush,
        "%s node3 'exit 42'; echo \"EXIT 42 $?\"" % qrsh_ssh,
        "%s -n node3 'exit 255'; echo \"EXIT 255 $?\"" % qrsh_ssh,
        "%s node3 'true'; echo \"EXIT 0 $?\"" % qrsh_ssh,
        "%s node2 'true' 2>/dev/null; echo \"EXIT 67 $?\"" % qrsh_ssh,
        "%s -L 1:h:2 node3 'true' 2>/dev/null; echo \"EXIT 64 $?\"" % qrsh_ssh))
    out = run_job(text)
    found = re.findall(r"TASK (\S+) (\d+) (\S+)$", out, re.M)
    assert sorted(h for h, _, _ in found) == sorted([sge.HOST, sge.NODE3]), out
    assert all(gid in groups.split(",") for _, gid, groups in found) and len({g for _, g, _ in found}) == 2, out
    assert re.findall(r"^EXIT (\d+) (\d+)$", out, re.M) == [(c, c) for c in ("42", "255", "0", "67", "64")], out


#: Ctrl-C of a tool: qrsh_ssh in a process group of its own (as a tool's child in a terminal's foreground
#: group), SIGINT to that group once the remote command has started; what the remote traps saw
CTRL_C = """import os, signal, subprocess, sys, time
S, qrsh_ssh = sys.argv[1:3]
remote = ("for s in INT TERM HUP; do trap \\"echo $s >> $S/trap; exit 1\\" $s; done; echo started; "
          "sleep 300 & wait").replace("$S", S)
p = subprocess.Popen([qrsh_ssh, "node3", remote], stdout=subprocess.PIPE, start_new_session=True, text=True)
print("REMOTE", p.stdout.readline().strip(), flush=True)
time.sleep(1)
os.killpg(p.pid, signal.SIGINT)
t = time.monotonic()
p.wait(120)
print("CTRLC %d %.1f" % (p.returncode, time.monotonic() - t), flush=True)
time.sleep(3)
"""


def test_ctrl_c_of_the_tool_reaches_the_remote_command_as_a_hangup_and_leaves_nothing(method, cluster, scratch):
    """A SIGINT to qrsh_ssh's process group: qrsh_ssh ends at once (129), and the remote command's trap
    runs before nothing of it is left.  qrsh -inherit passes SIGINT to its ssh client only, which closes
    the connection; the end of the task's session then gives what is left SIGHUP and SIGTERM, as the end
    of ssh -t's terminal would, and kills what is left after a grace (README: Ctrl-C).  Before, the
    session's end killed the task with SIGKILL at once and no trap ran."""
    with open(os.path.join(scratch, "ctrlc.py"), "w") as f:
        f.write(CTRL_C)
    out = run_job(JOB.format(S=scratch, steps=steps("/usr/bin/python3 $S/ctrlc.py $S %s" % os.path.join(
        cluster, "qrsh_ssh"))))
    assert "REMOTE started" in out, out
    code, took = re.search(r"^CTRLC (-?\d+) ([\d.]+)$", out, re.M).groups()
    # 129, or 255 when ssh's own exit on SIGINT wins the race with qrsh's (measured once in a full run)
    assert code in ("129", "255") and float(took) < 10, out
    with open(os.path.join(scratch, "trap")) as f:
        assert f.read().split()[0] in ("HUP", "TERM"), "the remote trap saw another signal"
    assert not sge.processes_of(sge.TEST_USER, ("sleep",)), "the remote command was left running"
