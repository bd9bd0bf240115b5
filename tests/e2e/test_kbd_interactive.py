"""Keyboard-interactive logins (the usual OTP/2FA setup) are tied like key logins: root-hooks issue,
finding 4, proved with a real OTP module (Debian's libpam-oath; the code computed by oathtool).

OpenSSH runs pam_authenticate and pam_acct_mgmt of such a login in a forked ``[pam]`` child of the
connection's monitor.  0.2 took that child for the monitor: the session got neither the job's
group nor its environment, and its setup file, named for the child, was left behind for the next
login that got the PID.  Here, for a job sshd (pam_sgewrap job, behind a stand-in shepherd) and
for an adopted login into a running job (pam_sgewrap setup under node_access adopt, through a
second real sshd on its own port with the site's PAM service), each login answers an OTP prompt.
"""
import contextlib
import os
import pwd
import secrets
import signal
import socket
import subprocess
import tempfile

import pytest

from lib import TEST_USER, auth_log_since, auth_log_size, make_spool, sge, wait_until
from lib.rootside import lent_job_stack
from sgewrap.admin import pam, pammodule
from sgewrap.admin.shepherd import Shepherd, as_user
from sgewrap.rootside import procs, setupfile

pytestmark = pytest.mark.root

OTHER_USER = "sgeother"
USERS_FILE = "/etc/sgewrap-test-users.oath"
OATH = "auth required pam_oath.so usersfile=%s window=50 digits=6" % USERS_FILE
KBD = ["-o", "KbdInteractiveAuthentication=yes", "-o", "AuthenticationMethods=keyboard-interactive"]


class Otp:
    """HOTP secrets of the test users in pam_oath's users file, and a code for each next login."""

    def __init__(self, directory):
        self.secret = {u: secrets.token_hex(20) for u in (TEST_USER, OTHER_USER)}
        self.counter = {u: 0 for u in self.secret}
        self.dir = directory
        with open(USERS_FILE, "w") as f:
            os.fchmod(f.fileno(), 0o600)
            for user, secret in self.secret.items():
                f.write("HOTP %s - %s\n" % (user, secret))

    def next_code(self, user):
        code = subprocess.run(["oathtool", "--hotp", "-c", str(self.counter[user]), self.secret[user]],
                              capture_output=True, text=True, check=True).stdout.strip()
        self.counter[user] += 1
        return code

    def ssh(self, user, port, command, host="127.0.0.1", popen=False, **kw):
        """ssh as ``user`` through keyboard-interactive only, the prompt answered by SSH_ASKPASS (a
        CompletedProcess, or with ``popen`` the running Popen)."""
        answer = os.path.join(self.dir, "answer-" + user)
        with open(answer, "w") as f:
            f.write("#!/bin/sh\necho %s\n" % self.next_code(user))
        os.chmod(answer, 0o755)
        home = pwd.getpwnam(user).pw_dir
        argv = ["/usr/bin/ssh", "-p", str(port), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "PreferredAuthentications=keyboard-interactive", "-o", "NumberOfPasswordPrompts=1",
                "-o", "LogLevel=ERROR", "-T", host, command]
        env = {"HOME": home, "USER": user, "LOGNAME": user, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8",
               "SSH_ASKPASS": answer, "SSH_ASKPASS_REQUIRE": "force"}
        if popen:
            return subprocess.Popen(["/usr/sbin/runuser", "-u", user, "--"] + argv, env=env, stdin=subprocess.PIPE,
                                    **kw)
        return as_user(user, argv, env=env, stdin=subprocess.DEVNULL, **kw)


@pytest.fixture(scope="module")
def otp():
    assert os.path.exists(os.path.join(pammodule.pam_dir(), "pam_oath.so")), "apt-get install libpam-oath"
    with tempfile.TemporaryDirectory(prefix="sgewrap-kbd.") as tmp:
        os.chmod(tmp, 0o755)
        try:
            yield Otp(tmp)
        finally:
            os.unlink(USERS_FILE)


@pytest.fixture(scope="module")
def otp_job_stack(host_ready, installed, otp):
    """/etc/pam.d/sge-sshd with pam_oath as its authentication (and pam_sgewrap as written)."""
    with lent_job_stack(installed, lambda text: text.replace("@include common-auth\n", OATH + "\n")):
        yield installed


def unused_gid(start=64100):
    import grp
    used = {g.gr_gid for g in grp.getgrall()}
    return next(g for g in range(start, 65500) if g not in used)


def test_a_keyboard_interactive_job_session_is_tied_under_its_monitor_and_reaped(otp, otp_job_stack, tmp_path):
    os.chmod(tmp_path, 0o755)
    gid = unused_gid()
    spool = make_spool(tmp_path, gid, TEST_USER)
    env = {"PATH": "/usr/bin:/bin", "SGE_JOB_SPOOL_DIR": spool, "JOB_ID": "4711", "SGE_TASK_ID": "undefined"}
    mark = auth_log_size()
    with Shepherd([os.path.join(otp_job_stack, "sge-sshd"), "-i"] + KBD, env=env, cwd=spool) as sh:
        proc = otp.ssh(TEST_USER, sh.port, "id -G; echo FOO=$FOO_FROM_JOB; setsid nohup sleep 600 >/dev/null 2>&1 & "
                                           "echo LEFT=$!", capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        monitor = sh.daemon_pid
        sh.wait()
    lines = proc.stdout.split("\n")
    assert str(gid) in lines[0].split() and "FOO=hello" in proc.stdout
    left = int(proc.stdout.split("LEFT=")[1].split()[0])
    assert wait_until(lambda: procs.stat_of(left) is None, 15, 0.05), "a process of the session survived its end"
    log = auth_log_since(mark)
    assert "session of %s tied to the job (gid %d, sshd %d" % (TEST_USER, gid, monitor) in log
    assert "Accepted keyboard-interactive/pam for %s" % TEST_USER in log


def test_a_keyboard_interactive_login_of_another_user_into_the_job_sshd_is_refused(otp, otp_job_stack, tmp_path):
    os.chmod(tmp_path, 0o755)
    spool = make_spool(tmp_path, unused_gid(), TEST_USER)
    env = {"PATH": "/usr/bin:/bin", "SGE_JOB_SPOOL_DIR": spool, "JOB_ID": "4711", "SGE_TASK_ID": "undefined"}
    mark = auth_log_size()
    with Shepherd([os.path.join(otp_job_stack, "sge-sshd"), "-i"] + KBD, env=env, cwd=spool) as sh:
        proc = otp.ssh(OTHER_USER, sh.port, "echo INSIDE", capture_output=True, text=True, timeout=60)
    assert proc.returncode == 255 and "INSIDE" not in proc.stdout
    assert wait_until(lambda: "user '%s' is not %s, the owner of job 4711.1" % (OTHER_USER, TEST_USER)
                      in auth_log_since(mark), 10, 0.05)


# --- adopt: the site's PAM service, a second sshd that asks for an OTP ----------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def otp_site_sshd(wrappers):
    """/etc/pam.d/sshd as adopt leaves it, with pam_oath in place of common-auth, and a second sshd
    (the site's PAM service: OpenSSH 9.2 takes it from the program's name) asking for an OTP."""
    with open(pam.PAM_FILE, "rb") as f:
        before = f.read()
    port = free_port()
    daemon = None
    try:
        pammodule.ensure_installed(wrappers)
        pam.add_adopt(wrappers)
        text = open(pam.PAM_FILE).read()
        assert "@include common-auth\n" in text
        with open(pam.PAM_FILE, "w") as f:
            f.write(text.replace("@include common-auth\n", OATH + "\n"))
        daemon = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-p", str(port), "-o", "ListenAddress=127.0.0.1",
                                   "-o", "PidFile=none"] + KBD, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def listening():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False
        assert wait_until(listening, 15, 0.05)
        yield port, daemon.pid
    finally:
        if daemon:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(30)
        with open(pam.PAM_FILE, "wb") as f:
            f.write(before)


def test_a_keyboard_interactive_login_is_adopted_under_its_monitor_and_leaves_no_file(cluster, otp):
    from test_adopt import gid_of, running_job
    with otp_site_sshd(cluster) as (port, listener), running_job(TEST_USER) as job:
        before = sge.setup_files()
        client = otp.ssh(TEST_USER, port, "id -G; echo JOB=$JOB_ID; read x", stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, popen=True)
        try:
            groups = client.stdout.readline().split()
            assert "JOB=%s" % job in client.stdout.readline()
            assert gid_of(job) in groups
            new = sge.setup_files() - before
            assert len(new) == 1
            owner = int(new.pop().rsplit(".", 1)[1])
            st = procs.stat_of(owner)
            # named for the monitor (a child of the listening sshd), not for its short-lived [pam] child
            assert st is not None and st.ppid == listener and st.sid == owner
        finally:
            client.stdin.write("\n")          # the remote read returns: the session ends
            client.stdin.close()
            client.wait(30)
        assert wait_until(lambda: sge.setup_files() <= before, 30), sge.setup_files() - before
        assert not os.path.exists(setupfile.path_of(setupfile.SETUP_DIR, owner))
