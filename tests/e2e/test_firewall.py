"""A firewalled execution host: only ssh gets through, and ssh_wrapper --tunnel.

node2 (tests/cluster/up) is a second execution host in its own network
namespace behind nftables rules that let in only ssh (22) and execd (6445):
the shepherd's random port is refused, the situation of remote_startup(5)
RESTRICTIONS.  The plain ssh_wrapper fails there; with ``--tunnel`` the
session reaches the port through node2's sshd and everything works: qrsh,
both logins, and the slave tasks of a parallel job whose master runs on this
host (``qrsh -inherit node2``).  No tunnel process outlives its session, even
when the session is deleted or its client is killed.
"""
import hashlib
import os
import random
import re
import signal
import subprocess

import pytest

from lib import sge, wait_until
from sgewrap.rootside import procs

pytestmark = [pytest.mark.cluster, pytest.mark.slot("rsh")]

#: the proxy ssh of --tunnel, as the process table shows it (argv words joined by NUL)
PROXY = "-W\x00127.0.0.1:"


def all_proxies():
    """Every tunnel ssh: each session's own, and the shared connections (ControlPersist masters, whose
    process title OpenSSH sets to ``ssh: SOCKET [mux]``)."""
    return set(sge.processes_with(PROXY)) | _masters()


def _masters():
    """The shared tunnel connections: in the background, titled after their socket."""
    return {p for p in sge.processes_with("[mux]") if b"/sgewrap-mux-" in sge.cmdline(p)
            or b"/sgewrap/" in sge.cmdline(p)}


def proxies():
    """The sessions' own tunnel processes: those a session's ssh runs as its ProxyCommand (the shared
    connection, once in the background, has another parent)."""
    return {p for p in all_proxies() if os.path.exists("/proc/%d" % p)
            and b"ProxyCommand=" in sge.cmdline(_parent(p))}


def _parent(pid):
    st = procs.stat_of(pid)
    return st.ppid if st else 0


@pytest.fixture
def no_tunnel_left(method):
    """After the test, no session's tunnel is left, and the shared connection ends once it has served
    no session for --tunnel-persist seconds (3 here): nothing of a tunnel stays for good."""
    yield
    assert wait_until(lambda: not proxies(), 10), "a tunnel process outlived its session: %r" % proxies()
    assert wait_until(lambda: not all_proxies(), method.tunnel_persist + 15), \
        "a shared tunnel connection outlived its persistence: %r" % all_proxies()


@pytest.mark.methods("ssh")
def test_the_firewall_refuses_the_plain_ssh_wrapper(method):
    proc = sge.qrsh("hostname", queue=sge.FW_QUEUE, stdin=subprocess.DEVNULL, text=True)
    assert proc.returncode != 0 and proc.stdout == ""
    assert re.search(r"connect to host %s port \d+: Connection refused" % sge.NODE2, proc.stderr), proc.stderr


@pytest.mark.methods("ssh-tunnel")
def test_qrsh_crosses_the_firewall_through_the_tunnel(method, no_tunnel_left):
    proc = sge.qrsh("hostname; id -G; cat \"$SGE_JOB_SPOOL_DIR/addgrpid\"", queue=sge.FW_QUEUE,
                    stdin=subprocess.DEVNULL, text=True)
    assert proc.returncode == 0, proc.stderr
    host, groups, gid = proc.stdout.splitlines()
    assert host == sge.NODE2
    assert gid in groups.split(), "tight integration holds through the tunnel"
    proc = sge.qrsh("exit 7", queue=sge.FW_QUEUE, stdin=subprocess.DEVNULL)
    assert proc.returncode == 7, proc.stderr
    proc = sge.qrsh("-noshell", "/usr/bin/printf", "[%s]", "a b", "c", queue=sge.FW_QUEUE,
                    stdin=subprocess.DEVNULL, text=True)
    assert (proc.returncode, proc.stdout) == (0, "[a b][c]"), proc.stderr


@pytest.mark.methods("ssh-tunnel")
def test_sgewrap_check_finds_the_tunnel_ends_ready(method, cluster):
    """sshd on this host (the far end of each tunnel) forwards and takes a parallel job's fan-out."""
    proc = sge.sgewrap(cluster, "check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    complaints = [line for line in proc.stdout.splitlines()
                  if line.startswith(("error", "warning")) and "tunnel" in line]
    assert "--tunnel" in proc.stdout and not complaints


@pytest.mark.methods("ssh-tunnel")
def test_10mib_of_stdin_cross_the_tunnel_byte_for_byte(method, no_tunnel_left):
    data = os.urandom(10 << 20)
    proc = sge.qrsh("cat", queue=sge.FW_QUEUE, input=data, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (len(proc.stdout), hashlib.sha256(proc.stdout).hexdigest()) == \
        (len(data), hashlib.sha256(data).hexdigest())


@pytest.mark.methods("ssh-tunnel")
@pytest.mark.parametrize("client", ["qlogin", "qrsh"])
def test_logins_cross_the_firewall_through_the_tunnel(method, client, no_tunnel_left):
    argv = ["/usr/bin/" + client, "-now", "yes", "-q", sge.FW_QUEUE, *method.login_options]
    assert sge.login(argv, command="echo on-$(hostname)", expect="on-" + sge.NODE2) == 0


TASKS = 16  # fw.pe is $round_robin over two hosts: 2 * TASKS slots give node2 TASKS of them


@pytest.mark.methods("ssh-tunnel")
def test_qrsh_inherit_crosses_the_firewall_through_the_tunnel(method, no_tunnel_left):
    proc, tasks = sge.fan_out(TASKS, sge.NODE2, "-pe", sge.FW_PE, str(2 * TASKS),
                              "-masterq", "%s@%s" % (sge.QUEUE, sge.HOST), queue="%s,%s" % (sge.QUEUE, sge.FW_QUEUE))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "master on %s failed=0" % sge.HOST in proc.stdout
    assert sorted(t[0] for t in tasks) == list(range(1, TASKS + 1)), proc.stdout
    assert {t[1] for t in tasks} == {sge.NODE2}
    assert all(t.gid in t.groups for t in tasks), proc.stdout


def _running_session(token):
    """A qrsh to node2 running ``sleep TOKEN`` through the tunnel; (Popen, proxy pid, name)."""
    name = "fw%s" % token
    client = subprocess.Popen(["/usr/sbin/runuser", "-u", sge.TEST_USER, "--", "/usr/bin/qrsh", "-now", "yes",
                               "-q", sge.FW_QUEUE, "-N", name, "sleep", token], env=sge.user_env(),
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_until(lambda: [p for p in sge.processes_with(token) if sge.comm(p) == "sleep"]
                      or client.poll() is not None, 60), "the remote sleep never started"
    assert client.poll() is None, "qrsh ended early"
    found = proxies()
    assert len(found) == 1, "one tunnel per session: %r" % found
    return client, found.pop(), name


@pytest.mark.methods("ssh-tunnel")
@pytest.mark.parametrize("how", ["qdel", "SIGKILL of the client"])
def test_no_tunnel_outlives_a_killed_session(method, how, no_tunnel_left):
    token = str(random.randrange(10 ** 6, 10 ** 7))
    client, proxy, name = _running_session(token)
    try:
        if how == "qdel":
            sge.user_run(["/usr/bin/qdel", name], capture_output=True, check=True)
        else:
            ssh = procs.stat_of(proxy).ppid      # the session's ssh runs its ProxyCommand (exec'd by a shell)
            assert b"ProxyCommand=" in sge.cmdline(ssh), sge.cmdline(ssh)
            os.kill(ssh, signal.SIGKILL)
        assert wait_until(lambda: not os.path.exists("/proc/%d" % proxy), 15), \
            "the tunnel outlived the session (%s)" % how
        client.wait(90)
        assert wait_until(lambda: not sge.processes_with(token), 60), "processes of the session are still running"
    finally:
        for pid in sge.processes_with(token):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if client.poll() is None:
            client.kill()
        subprocess.run(["/usr/bin/qdel", name], env=sge.ENV, capture_output=True)


@pytest.mark.methods("ssh-tunnel")
def test_the_tunnels_of_one_user_share_one_connection_and_a_dead_one_is_replaced(method, no_tunnel_left):
    for _ in range(4):
        proc = sge.qrsh("hostname", queue=sge.FW_QUEUE, stdin=subprocess.DEVNULL, text=True)
        assert (proc.returncode, proc.stdout.strip()) == (0, sge.NODE2), proc.stderr
    masters = _masters()
    assert len(masters) == 1, "four sessions, one shared connection: %r" % masters
    master = masters.pop()
    assert procs.real_uid(master) == sge.user_uid(), "the connection is the user's own"
    os.kill(master, signal.SIGKILL)         # its socket stays behind, refusing: ssh connects directly
    proc = sge.qrsh("hostname", queue=sge.FW_QUEUE, stdin=subprocess.DEVNULL, text=True, timeout=60)
    assert (proc.returncode, proc.stdout.strip()) == (0, sge.NODE2), proc.stderr
    assert _masters() and master not in _masters(), "a new shared connection replaced the dead one"
