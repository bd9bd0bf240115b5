"""qlogin_wrapper and ssh_wrapper against a real ``sshd -i``, through a stand-in shepherd.

The shepherd side (root): bind 127.0.0.1 port 0, accept one connection, put it
on fds 0-2 of ``/usr/sbin/sshd -i``.  The client side: the INSTALLED wrapper,
run as the unprivileged test user with exactly the words SGE appends.
"""
import hashlib
import os
import socket

import pytest

from lib import TEST_USER
from lib.ptydrive import user_pty
from sgewrap.admin.shepherd import Shepherd, as_user

HOST = socket.gethostname()
# keep the tests independent of the user's known_hosts: each session is a new port
SSH_OPTS = ["--ssh-option=StrictHostKeyChecking=no", "--ssh-option=UserKnownHostsFile=/dev/null",
            "--ssh-option=LogLevel=ERROR", "--ssh-option=BatchMode=yes"]
JOB_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "JOB_ID": "4711", "SGE_TASK_ID": "undefined"}

pytestmark = pytest.mark.root


@pytest.fixture
def sshd(host_ready):
    with Shepherd(["/usr/sbin/sshd", "-i"], env=JOB_ENV) as shepherd:
        yield shepherd


def wrapper(installed, name):
    return os.path.join(installed, name)


def test_rsh_slot_runs_command(sshd, installed):
    proc = as_user(TEST_USER, [wrapper(installed, "ssh_wrapper")] + SSH_OPTS +
                   ["-p", str(sshd.port), HOST, "echo", "hello from $(hostname)"],
                   capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "hello from %s\n" % HOST
    sshd.wait()   # sshd -i ended with the session (its status is 255 once the client hangs up)


def test_starter_words_already_quoted_reach_remote_shell_intact(sshd, installed):
    """SGE sends exec 'STARTER' 'JOBDIR' [noshell]: the remote shell removes the quotes."""
    proc = as_user(TEST_USER, [wrapper(installed, "ssh_wrapper")] + SSH_OPTS +
                   ["-p", str(sshd.port), HOST, "exec", "'/usr/bin/printf'", "'[%s]'", "'/a dir/with space'",
                    "noshell"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "[/a dir/with space][noshell]"


def test_exit_status_of_remote_command(sshd, installed):
    proc = as_user(TEST_USER, [wrapper(installed, "ssh_wrapper")] + SSH_OPTS +
                   ["-p", str(sshd.port), HOST, "exit", "7"], capture_output=True, timeout=60)
    assert proc.returncode == 7


def test_stdin_passes_byte_for_byte(sshd, installed):
    data = os.urandom(4 << 20)
    proc = as_user(TEST_USER, [wrapper(installed, "ssh_wrapper")] + SSH_OPTS +
                   ["-p", str(sshd.port), HOST, "cat"], input=data, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert hashlib.sha256(proc.stdout).hexdigest() == hashlib.sha256(data).hexdigest()


def test_nostdin_does_not_read_stdin(sshd, installed):
    proc = as_user(TEST_USER, [wrapper(installed, "ssh_wrapper")] + SSH_OPTS +
                   ["-n", "-p", str(sshd.port), HOST, "cat", ";", "echo", "end"], input=b"must not arrive\n",
                   capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"end\n"


def test_remote_stderr_kept_apart(sshd, installed):
    proc = as_user(TEST_USER, [wrapper(installed, "ssh_wrapper")] + SSH_OPTS +
                   ["-p", str(sshd.port), HOST, "echo out; echo err >&2"], capture_output=True, text=True,
                   timeout=60)
    assert (proc.stdout, proc.stderr) == ("out\n", "err\n")


@pytest.mark.parametrize("name,words", [
    ("qlogin_wrapper", lambda port: ["--no-x11"] + SSH_OPTS + [HOST, str(port)]),    # qlogin: HOST PORT
    ("ssh_wrapper", lambda port: SSH_OPTS + ["-p", str(port), HOST]),               # qrsh, no command
])
def test_interactive_login_shell_in_a_pty(sshd, installed, name, words):
    session = user_pty([wrapper(installed, name)] + words(sshd.port))
    try:
        session.send("echo $((6*7))-$(tty | cut -c1-8)\n")
        session.expect("42-/dev/pts")
        session.send("exit 3\n")
        assert session.wait(60) == 3
    finally:
        session.kill()


def test_qlogin_wrapper_default_x11_is_harmless_without_display(sshd, installed):
    session = user_pty([wrapper(installed, "qlogin_wrapper")] + SSH_OPTS + [HOST, str(sshd.port)])
    try:
        session.send("echo ok-$USER\n")
        session.expect("ok-" + TEST_USER)
        session.send("exit\n")
        assert session.wait(60) == 0
    finally:
        session.kill()
