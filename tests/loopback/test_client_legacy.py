"""The legacy adapters against the real Debian peers, through a stand-in shepherd.

rsh:    rsh_adapter    -> /usr/bin/rsh-redone-rsh    <-> /usr/sbin/in.rshd
rlogin: rlogin_adapter -> /usr/bin/rsh-redone-rlogin <-> /usr/sbin/in.rlogind
telnet: telnet_adapter -> /usr/bin/telnet            <-> /usr/sbin/telnetd (inetutils)

Trust for rsh/rlogin comes from /etc/hosts.equiv and ~sgetest/.rhosts
(tests/cluster/up); telnet asks for a password, which the test sets.
"""
import os
import socket

import pytest

from lib import PASSWORD_FILE, TEST_USER, need
from lib.ptydrive import user_pty
from sgewrap.admin.shepherd import Shepherd, as_user

HOST = socket.gethostname()
JOB_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "JOB_ID": "4711"}

pytestmark = pytest.mark.root


def daemon(path, *args):
    need(os.access(path, os.X_OK), "%s not installed" % path, "run tests/cluster/up as root")
    return Shepherd([path] + list(args), env=JOB_ENV)


def test_rsh_adapter_runs_command(host_ready, installed):
    with daemon("/usr/sbin/in.rshd") as shepherd:
        proc = as_user(TEST_USER, [os.path.join(installed, "rsh_adapter"), "-p", str(shepherd.port), HOST,
                                   "echo", "via rsh; exit 7"], capture_output=True, text=True, timeout=60)
    assert proc.stdout == "via rsh\n", proc.stderr
    # the rsh protocol carries no exit status (under SGE the shepherd reports it)
    assert proc.returncode == 0


def test_rsh_adapter_starter_words_and_stdin(host_ready, installed):
    data = os.urandom(1 << 20).hex()
    with daemon("/usr/sbin/in.rshd") as shepherd:
        proc = as_user(TEST_USER, [os.path.join(installed, "rsh_adapter"), "-p", str(shepherd.port), HOST,
                                   "exec", "'/bin/cat'"], input=data, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout == data


def test_rsh_adapter_nostdin(host_ready, installed):
    with daemon("/usr/sbin/in.rshd") as shepherd:
        proc = as_user(TEST_USER, [os.path.join(installed, "rsh_adapter"), "-n", "-p", str(shepherd.port), HOST,
                                   "cat; echo end"], input="must not arrive\n", capture_output=True, text=True,
                       timeout=60)
    assert proc.returncode == 0 and proc.stdout == "end\n"


def test_rlogin_adapter_login_shell(host_ready, installed):
    with daemon("/usr/sbin/in.rlogind") as shepherd:
        session = user_pty([os.path.join(installed, "rlogin_adapter"), "-p", str(shepherd.port), HOST])
        try:
            session.send("echo $((6*7))-$(id -un)\n")
            session.expect("42-" + TEST_USER)
            session.send("exit\n")
            session.wait(60)
        finally:
            session.kill()


@pytest.fixture
def password(host_ready):
    """The test user's password, set by tests/cluster/up (telnetd's login asks for it)."""
    with open(PASSWORD_FILE) as f:
        return f.read().strip()


def test_telnet_adapter_login(host_ready, installed, password):
    with daemon("/usr/sbin/telnetd") as shepherd:
        session = user_pty([os.path.join(installed, "telnet_adapter"), HOST, str(shepherd.port)])
        try:
            session.expect("login:", timeout=60)
            session.send(TEST_USER + "\r\n")
            session.expect("assword:")
            session.send(password + "\r\n")
            session.expect("$ ")
            session.send("echo $((6*7))-$(id -un)\r\n")
            session.expect("42-" + TEST_USER)
            session.send("exit\r\n")
            session.wait(60)
        finally:
            session.kill()
