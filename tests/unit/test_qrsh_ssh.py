"""qrsh_ssh: what ssh-only tools pass, turned into qrsh -inherit; and everything it refuses."""
import os
import socket
import subprocess
import sys

import pytest

from lib import WRAPPERS_SRC
from sgewrap import errors, qrshssh


@pytest.fixture
def job(tmp_path):
    """A parallel job's environment: PE_HOSTFILE with two hosts, a qrsh on PATH."""
    hostfile = tmp_path / "pe_hostfile"
    hostfile.write_text("node01.example.org 4 all.q@node01.example.org UNDEFINED\nnode02 4 all.q@node02 UNDEFINED\n")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    qrsh = bindir / "qrsh"
    qrsh.write_text("#!/bin/sh\nprintf '%s\\n' \"$@\"\n")
    qrsh.chmod(0o755)
    return {"JOB_ID": "42", "PE_HOSTFILE": str(hostfile), "PATH": str(bindir) + ":/usr/bin:/bin"}


#: The name service the unit tests see (no test asks the real one): name -> its addresses, and
#: address -> (its name, aliases).  This host is "node01" (the job's node01.example.org); its own
#: addresses are the loopback ones and 0.0.0.0 (the real check binds a socket: test_is_here).
NAMES = {"node01.example.org": ["192.0.2.1", "2001:db8::1"], "n1": ["192.0.2.1"],
         "compute-2.example.org": ["192.0.2.2"], "node02": ["192.0.2.2"], "localhost": ["127.0.0.1", "::1"],
         "elsewhere": ["192.0.2.99"]}
REVERSE = {"192.0.2.1": ("node01.example.org", ["n1"]), "192.0.2.2": ("compute-2.example.org", ["node02"]),
           "192.0.2.99": ("elsewhere", [])}


@pytest.fixture(autouse=True)
def name_service(monkeypatch):
    """getaddrinfo, gethostbyaddr and gethostname answer from NAMES; the calls are counted."""
    calls = []

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        calls.append(host)
        literal = any(_parses(f, host.split("%")[0]) for f in (socket.AF_INET, socket.AF_INET6))
        addresses = [host] if literal else NAMES.get(host.lower())
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                 (a, 0, 0, 0) if ":" in a else (a, 0)) for a in addresses]

    def gethostbyaddr(address):
        if address not in REVERSE:
            raise socket.herror(1, "Unknown host")
        return REVERSE[address] + ([address],)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket, "gethostbyaddr", gethostbyaddr)
    monkeypatch.setattr(socket, "gethostname", lambda: "node01")
    monkeypatch.setattr(qrshssh, "_is_here", lambda family, sockaddr: qrshssh._loopback(sockaddr[0]) or
                        sockaddr[0] == "0.0.0.0")
    return calls


def _parses(family, text):
    try:
        socket.inet_pton(family, text)
        return True
    except OSError:
        return False


#: qrshssh._is_here itself (the fixture replaces it)
IS_HERE = qrshssh._is_here


def test_is_here_knows_this_hosts_own_addresses_by_binding_to_them():
    """Every address ``ip`` lists here (link-local ones name a host only with their zone), loopback and
    the any-address are this host's; an address no interface has is not (unless the kernel lets
    anyone bind anything: ip_nonlocal_bind)."""
    listed = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, text=True, check=True).stdout
    own = [word.split("/")[0] for line in listed.splitlines() if "scope link" not in line
           for i, word in enumerate(line.split()) if i and line.split()[i - 1] in ("inet", "inet6")]
    assert "127.0.0.1" in own
    for address in own + ["127.0.0.1", "127.1.2.3", "0.0.0.0", "::1"]:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        assert IS_HERE(family, (address, 22, 0, 0) if family == socket.AF_INET6 else (address, 22)), address
    with open("/proc/sys/net/ipv4/ip_nonlocal_bind") as f:
        nonlocal_bind = f.read().strip() != "0"
    stranger = next(a for a in ("198.51.100.254", "203.0.113.254", "192.0.2.254") if a not in own)
    assert IS_HERE(socket.AF_INET, (stranger, 22)) == nonlocal_bind


def plan(argv, environ, me="alice"):
    return qrshssh.plan(argv, environ, me).command[1:]


@pytest.mark.parametrize("argv,expected", [
    (["node02", "hostname"], ["-inherit", "node02", "hostname"]),
    (["-n", "node01", "echo", "a b"], ["-inherit", "-nostdin", "node01.example.org", "echo a b"]),  # joined like ssh
    (["-x", "-oStrictHostKeyChecking=no", "-p", "2222", "-q", "node01.example.org", "true"],
     ["-inherit", "node01.example.org", "true"]),
    (["-nT", "-o", "BatchMode=yes", "alice@node02", "orted", "--daemonize"],
     ["-inherit", "-nostdin", "node02", "orted --daemonize"]),
    (["-l", "alice", "-i", "/id", "-c", "aes128-ctr", "-4", "node02", "cmd"], ["-inherit", "node02", "cmd"]),
    (["node02", "-l", "alice", "-n", "cmd", "-l"], ["-inherit", "-nostdin", "node02", "cmd -l"]),  # rsh spelling
    (["--", "node02", "-x"], ["-inherit", "node02", "-x"]),
    # options after the host, as OpenSSH reads them; GNU parallel sends `ssh HOST -- exec perl -e ...`
    (["node02", "--", "exec", "perl", "-e", "x"], ["-inherit", "node02", "exec perl -e x"]),
    (["node02", "-p", "22", "-oBatchMode=yes", "-n", "cmd", "-n"], ["-inherit", "-nostdin", "node02", "cmd -n"]),
    (["-B", "eth0", "-P", "tag", "-I", "lib.so", "node02", "x"], ["-inherit", "node02", "x"]),
])
def test_what_ssh_tools_pass(job, argv, expected):
    assert plan(argv, job) == expected


@pytest.mark.parametrize("argv,code,why", [
    (["-L", "8080:localhost:80", "node02", "x"], errors.USAGE, "port forwarding (-L)"),
    (["-R8080:x:80", "node02", "x"], errors.USAGE, "port forwarding (-R)"),
    (["-D", "1080", "node02", "x"], errors.USAGE, "port forwarding (-D)"),
    (["-W", "h:22", "node02"], errors.USAGE, "stdio forwarding"),
    (["-J", "gw", "node02", "x"], errors.USAGE, "a jump host"),
    (["-oProxyCommand=nc %h %p", "node02", "x"], errors.USAGE, "-o ProxyCommand"),
    (["-o", "LocalForward 1 h:2", "node02", "x"], errors.USAGE, "-o LocalForward"),
    (["-f", "node02", "x"], errors.USAGE, "background"),
    (["node02", "-L", "1:h:2", "x"], errors.USAGE, "port forwarding (-L)"),      # after the host too
    (["node02", "-l", "bob", "x"], errors.USAGE, "user 'bob'"),
    (["-Q", "cipher"], errors.USAGE, "a query (-Q)"),
    (["-N", "node02"], errors.USAGE, "running no command"),
    (["-G", "node02", "x"], errors.USAGE, "printing the configuration (-G)"),
    (["node02"], errors.USAGE, "no command"),
    ([], errors.USAGE, "no host"),
    (["-p"], errors.USAGE, "needs a value"),
    (["-Z", "node02", "x"], errors.USAGE, "unknown option -Z"),
    (["bob@node02", "x"], errors.USAGE, "user 'bob'"),
    (["-l", "root", "node02", "x"], errors.USAGE, "user 'root'"),
    (["-l", "alice", "bob@node02", "x"], errors.USAGE, "user 'bob'"),       # ssh would take alice: both count
    (["-l", "bob", "alice@node02", "x"], errors.USAGE, "user 'bob'"),       # ssh would take bob
    (["alice@node02", "-l", "bob", "x"], errors.USAGE, "user 'bob'"),
    (["node03", "x"], errors.BAD_HOST, "node03 is not a host of this job"),
])
def test_what_it_refuses(job, argv, code, why):
    with pytest.raises(errors.WrapperError) as e:
        plan(argv, job)
    assert e.value.code == code and why in str(e.value), str(e.value)


#: What real tools pass to ssh, recorded with a stand-in ssh that logs its argv (Debian 12: OpenSSH 9.2's
#: scp and sftp, rsync 3.2, ClusterShell 1.9's clush, pdsh 2.34, GNU parallel 20221122) or read off
#: their sources (OpenSSH 10.0, Julia's Distributed, Charm++'s charmrun, Ray's SSHCommandRunner,
#: ipyparallel's SSH launchers); the user is the job's owner (alice), the host one of the job's.
#: tool -> (argv, what qrsh -inherit gets after "-inherit")
RECORDED = {
    "scp -O (to)": (["-x", "-oPermitLocalCommand=no", "-oClearAllForwardings=yes", "-oRemoteCommand=none",
                     "-oRequestTTY=no", "-oForwardAgent=no", "--", "node02", "scp -t /tmp/x"],
                    ["node02", "scp -t /tmp/x"]),
    "scp -O (from)": (["-x", "-oPermitLocalCommand=no", "-oClearAllForwardings=yes", "-oRemoteCommand=none",
                       "-oRequestTTY=no", "-oForwardAgent=no", "--", "node02", "scp -f /tmp/x"],
                      ["node02", "scp -f /tmp/x"]),
    "scp -O, OpenSSH 10.0": (["-x", "-oPermitLocalCommand=no", "-oClearAllForwardings=yes", "-oRemoteCommand=none",
                              "-oRequestTTY=no", "-oControlMaster=no", "-oForwardAgent=no", "-l", "alice", "--",
                              "node02", "scp -r -t /tmp/x"], ["node02", "scp -r -t /tmp/x"]),
    "rsync -e": (["node02", "rsync", "--server", "-logDtpre.iLsfxCIvu", ".", "/tmp/x"],
                 ["node02", "rsync --server -logDtpre.iLsfxCIvu . /tmp/x"]),
    "rsync -e, from, -l": (["-l", "alice", "node02", "rsync", "--server", "--sender", "-logDtpre.iLsfxCIvu", ".",
                            "/tmp/x"], ["node02", "rsync --server --sender -logDtpre.iLsfxCIvu . /tmp/x"]),
    "rsync -e 'ssh -x -o BatchMode=yes'": (["-x", "-o", "BatchMode=yes", "node02", "rsync", "--server", "-e.iLsfxC",
                                            ".", "/tmp/x"], ["node02", "rsync --server -e.iLsfxC . /tmp/x"]),
    "clush": (["-oForwardAgent=no", "-oForwardX11=no", "-oConnectTimeout=15", "-oBatchMode=yes", "node02",
               "hostname"], ["node02", "hostname"]),
    "clush -l": (["-oForwardAgent=no", "-oForwardX11=no", "-l", "alice", "-oConnectTimeout=15", "-oBatchMode=yes",
                  "node02", "echo a b"], ["node02", "echo a b"]),
    "pdsh -R ssh": (["-oConnectTimeout=10", "-2", "-a", "-x", "-lalice", "node02", "echo a b"],
                    ["node02", "echo a b"]),
    "GNU parallel": (["-l", "alice", "node02", "--", "exec", "parallel", "--number-of-threads"],
                     ["node02", "exec parallel --number-of-threads"]),
    "Julia Distributed": (["-T", "-a", "-x", "-o", "ClearAllForwardings=yes", "-p", "22", "alice@node02",
                           "sh -l -c 'cd -- /home/alice\nexec /usr/bin/julia --worker'"],
                          ["node02", "sh -l -c 'cd -- /home/alice\nexec /usr/bin/julia --worker'"]),
    "Julia Distributed, interrupt": (["-T", "-a", "-x", "-o", "ClearAllForwardings=yes", "-n", "node02",
                                      "kill -2 4242"], ["-nostdin", "node02", "kill -2 4242"]),
    "Charm++ charmrun": (["node02", "-l", "alice", "-o", "KbdInteractiveAuthentication=no", "-o",
                          "PasswordAuthentication=no", "-o", "NoHostAuthenticationForLocalhost=yes", "/bin/bash -f"],
                         ["node02", "/bin/bash -f"]),
    "Charm++ charmrun ++interactive": (["-t", "node02", "-X", "-l", "alice", "-o", "KbdInteractiveAuthentication=no",
                                        "-o", "PasswordAuthentication=no", "-o", "NoHostAuthenticationForLocalhost=yes",
                                        "/bin/bash /tmp/charmrun.1234"], ["node02", "/bin/bash /tmp/charmrun.1234"]),
    "Ray SSHCommandRunner": (["-tt", "-i", "/home/alice/.ssh/ray.pem", "-o", "StrictHostKeyChecking=no", "-o",
                              "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes", "-o",
                              "ExitOnForwardFailure=yes", "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3",
                              "-o", "ControlMaster=auto", "-o", "ControlPath=/tmp/ray_ssh_1a2b3c4d5e/6f7a8b9c0d/%C",
                              "-o", "ControlPersist=10s", "-o", "ConnectTimeout=120s", "alice@node02", "bash",
                              "--login", "-c", "-i", "'true && source ~/.bashrc && export OMP_NUM_THREADS=1 "
                              "PYTHONWARNINGS=ignore && (uptime)'"],
                             ["node02", "bash --login -c -i 'true && source ~/.bashrc && export OMP_NUM_THREADS=1 "
                              "PYTHONWARNINGS=ignore && (uptime)'"]),
    "Ray 2.60 SSHCommandRunner (recorded in tests/e2e)": (
        ["-tt", "-i", "~/.ssh/ray-sgewrap.pem", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "IdentitiesOnly=yes", "-o", "ExitOnForwardFailure=yes", "-o", "ServerAliveInterval=5", "-o",
         "ServerAliveCountMax=3", "-o", "ControlMaster=auto", "-o", "ControlPath=/tmp/ray_ssh_3668fbd70e/d66c4faaa9/%C",
         "-o", "ControlPersist=10s", "-o", "ConnectTimeout=120s", "alice@node02", "bash", "--login", "-c", "-i",
         "'source ~/.bashrc; export OMP_NUM_THREADS=1 PYTHONWARNINGS=ignore && (uptime)'"],
        ["node02", "bash --login -c -i 'source ~/.bashrc; export OMP_NUM_THREADS=1 PYTHONWARNINGS=ignore && "
         "(uptime)'"]),
    "ipyparallel": (["alice@node02", "python3"], ["node02", "python3"]),
    "reframe (-o and its value in one word)": (["-o BatchMode=yes", "node02", "true"], ["node02", "true"]),
}


#: The SFTP subsystem as each OpenSSH client asks for it (recorded on Debian 12; 10.0 from its source, and
#: sftp -b of 10.0p2 recorded on node4; its scp sends "scp, OpenSSH 10.0" exactly)
SUBSYSTEM_ARGV = {
    "scp": ["-x", "-oPermitLocalCommand=no", "-oClearAllForwardings=yes", "-oRemoteCommand=none", "-oRequestTTY=no",
            "-oForwardAgent=no", "-s", "--", "node02", "sftp"],
    "scp -r -l -P": ["-x", "-oPermitLocalCommand=no", "-oClearAllForwardings=yes", "-oRemoteCommand=none",
                     "-oRequestTTY=no", "-oForwardAgent=no", "-p", "2222", "-l", "alice", "-s", "--", "node02",
                     "sftp"],
    "scp, OpenSSH 10.0": ["-x", "-oPermitLocalCommand=no", "-oClearAllForwardings=yes", "-oRemoteCommand=none",
                          "-oRequestTTY=no", "-oControlMaster=no", "-oForwardAgent=no", "-s", "--", "node02", "sftp"],
    "sftp -b": ["-oForwardX11 no", "-oPermitLocalCommand no", "-oClearAllForwardings yes", "-obatchmode yes",
                "-oForwardAgent no", "-s", "--", "node02", "sftp"],
    "sftp -P, OpenSSH 10.0": ["-oForwardX11 no", "-oPermitLocalCommand no", "-oClearAllForwardings yes",
                              "-oControlMaster no", "-oForwardAgent no", "-oPort 2222", "-l", "alice", "-s", "--",
                              "node02", "sftp"],
    "-o SessionType=subsystem": ["-o", "SessionType=subsystem", "node02", "sftp"],
    "sftp -b, OpenSSH 10.0p2 (recorded on node4, Debian 13)": [
        "-oForwardX11 no", "-oPermitLocalCommand no", "-oClearAllForwardings yes", "-oControlMaster no",
        "-obatchmode yes", "-oForwardAgent no", "-s", "--", "node02", "sftp"],
}


@pytest.mark.parametrize("tool", sorted(SUBSYSTEM_ARGV))
def test_the_sftp_subsystem_runs_the_sftp_server_with_no_shell_of_the_users(job, tool):
    """qrsh -inherit -noshell: the words reach qrsh_starter as they are and it execs them, no shell."""
    todo = qrshssh.plan(SUBSYSTEM_ARGV[tool], job, "alice")
    assert todo.marker.startswith("qrsh_ssh-sftp-") and len(todo.marker) == len("qrsh_ssh-sftp-") + 24
    assert todo.command[1:] == ["-inherit", "-noshell", "node02", "/bin/sh", "-c", 'echo "$1" && exec "$2"',
                                "sh", todo.marker, "/usr/lib/openssh/sftp-server"]
    assert qrshssh.plan(SUBSYSTEM_ARGV[tool], job, "alice").marker != todo.marker      # a new one each time


def test_the_sftp_server_may_be_named_by_the_jobs_environment(job):
    todo = qrshssh.plan(["-s", "node02", "sftp"], dict(job, SGEWRAP_SFTP_SERVER="/usr/libexec/openssh/sftp-server"),
                        "alice")
    assert todo.command[-1] == "/usr/libexec/openssh/sftp-server"
    with pytest.raises(errors.WrapperError) as e:
        qrshssh.plan(["-s", "node02", "sftp"], dict(job, SGEWRAP_SFTP_SERVER="sftp-server"), "alice")
    assert e.value.code == errors.USAGE and str(e.value) == "SGEWRAP_SFTP_SERVER='sftp-server' is not an absolute path"


@pytest.mark.parametrize("argv,name", [(["-s", "node02", "netconf"], "netconf"),
                                       (["-s", "node02", "sftp", "x"], "sftp x"),
                                       (["-o", "SessionType=subsystem", "node02", "x11"], "x11")])
def test_another_subsystem_is_refused(job, argv, name):
    with pytest.raises(errors.WrapperError) as e:
        plan(argv, job)
    assert e.value.code == errors.USAGE and str(e.value) == "subsystem %r: only sftp runs through qrsh -inherit" % name


@pytest.mark.parametrize("tool", sorted(RECORDED))
def test_the_recorded_argv_of_each_tool(job, tool):
    argv, expected = RECORDED[tool]
    assert plan(argv, job) == ["-inherit"] + expected


@pytest.mark.parametrize("option", [
    "ControlMaster=auto", "ControlMaster=no", "ControlPath=/tmp/c/%C", "ControlPersist=10s", "ControlPath none",
    "ForwardAgent=no", "ForwardAgent=yes", "ForwardX11 no", "ForwardX11=yes", "ForwardX11Trusted=yes",
    "ClearAllForwardings=yes", "RequestTTY=no", "RequestTTY=force", "PermitLocalCommand no",
    "PermitLocalCommand=NO", "RemoteCommand=none", "ProxyCommand=none", "ProxyJump=none", "Tunnel=no",
    "SessionType=default", "ForkAfterAuthentication=no", "StdinNull=no", "ExitOnForwardFailure=yes",
    "ServerAliveInterval 5", "BatchMode = yes", "Port 2222",
])
def test_options_that_only_disable_or_shape_the_connection_are_accepted(job, option):
    assert plan(["-o", option, "node02", "true"], job) == ["-inherit", "node02", "true"]
    assert plan(["-o" + option, "node02", "true"], job) == ["-inherit", "node02", "true"]


@pytest.mark.parametrize("flags", [["-t"], ["-tt"], ["-T"], ["-A"], ["-a"], ["-X"], ["-Y"], ["-x"], ["-M"],
                                   ["-S", "/tmp/ctl"], ["-S", "none"], ["-C", "-k", "-K", "-g", "-y"]])
def test_tty_agent_x11_and_control_master_flags_are_accepted(job, flags):
    """No pty, no agent, no X11 through qrsh -inherit (qrshssh.POLICIES): the command runs all the same."""
    assert plan(flags + ["node02", "true"], job) == ["-inherit", "node02", "true"]


def test_stdin_null_is_nostdin(job):
    assert plan(["-o", "StdinNull=yes", "node02", "true"], job) == ["-inherit", "-nostdin", "node02", "true"]


@pytest.mark.parametrize("option", ["RemoteCommand=uptime", "PermitLocalCommand=yes", "ProxyJump=gw",
                                    "Tunnel=yes", "ForkAfterAuthentication=yes", "SessionType=none",
                                    "DynamicForward 1080", "RemoteForward=1 h:2"])
def test_options_that_would_need_what_qrsh_cannot_are_refused(job, option):
    with pytest.raises(errors.WrapperError) as e:
        plan(["-o", option, "node02", "true"], job)
    assert e.value.code == errors.USAGE and str(e.value) == "-o %s cannot go through qrsh -inherit" % option


@pytest.mark.parametrize("argv,said", [
    (["-O", "check", "node02"], 'No ControlPath specified for "-O" command'),
    (["-O", "exit", "-o", "ControlPath=none", "node02"], 'No ControlPath specified for "-O" command'),
    (["-O", "check", "-o", "ControlPath=/tmp/c/%C", "node02"],
     "Control socket connect(/tmp/c/%C): No such file or directory"),
    (["-S", "/tmp/s", "-O", "exit", "node02"], "Control socket connect(/tmp/s): No such file or directory"),
    (["-o", "ControlPath=/tmp/first", "-o", "ControlPath=/tmp/second", "-Ostop", "node02"],
     "Control socket connect(/tmp/first): No such file or directory"),
    (["-o", "ControlPath=/tmp/c", "-S", "/tmp/s", "node02", "-O", "forward"],
     "Control socket connect(/tmp/s): No such file or directory"),
    (["-O", "nonsense", "node02"], "Invalid multiplex command."),
])
def test_control_commands_are_answered_as_ssh_without_a_master(job, argv, said):
    """Julia's tunnel setup asks ``ssh -O check``; 255 (no master) makes a tool go on without one."""
    with pytest.raises(qrshssh.Answered) as e:
        plan(argv, job)
    assert (e.value.code, str(e.value)) == (255, said)


@pytest.mark.parametrize("target,granted", [
    ("node01", "node01.example.org"),                 # the short name: qrsh gets the name Grid Engine granted
    ("NODE02.example.org", "node02"),                 # letter case, the full name of a short one
    ("node02.", "node02"),
    ("n1", "node01.example.org"),                     # an alias: resolved, and its address back
    ("compute-2.example.org", "node02"),              # another name of the address
    ("192.0.2.2", "node02"),                          # an address: the names it resolves back to
    ("2001:db8::1", "node01.example.org"),            # IPv6: the job's hosts' addresses
    ("[2001:db8::1]", "node01.example.org"),
    ("::ffff:192.0.2.1", "node01.example.org"),       # IPv4-mapped
    ("localhost", "node01.example.org"),              # this host, as with ssh
    ("127.0.0.1", "node01.example.org"),
    ("::1", "node01.example.org"),
    ("0.0.0.0", "node01.example.org"),                # bound here: this host's own
])
def test_a_host_may_be_named_by_any_name_or_address_of_a_granted_host(job, target, granted):
    assert plan([target, "true"], job) == ["-inherit", granted, "true"]
    assert plan(["alice@" + target, "true"], job) == ["-inherit", granted, "true"]    # Ray: user@IP


@pytest.mark.parametrize("target", ["node03", "elsewhere", "192.0.2.99", "198.51.100.7", "2001:db8::99", "[::2]",
                                    "10"])
def test_names_and_addresses_of_other_hosts_are_refused(job, target):
    with pytest.raises(errors.WrapperError) as e:
        plan([target, "true"], job)
    assert e.value.code == errors.BAD_HOST and str(e.value).startswith("%s is not a host of this job" % target)


def test_a_name_in_pe_hostfile_needs_no_lookup_and_the_search_is_bounded(job, name_service, tmp_path):
    plan(["node02", "true"], job)
    plan(["node01", "true"], job)
    assert name_service == []
    many = tmp_path / "many"
    many.write_text("".join("h%d.example.org 1 q@h%d UNDEFINED\n" % (i, i) for i in range(1000)))
    with pytest.raises(errors.WrapperError):
        plan(["elsewhere", "true"], dict(job, PE_HOSTFILE=str(many)))
    assert len(name_service) == 1 + qrshssh.MAX_RESOLVED


def test_outside_a_parallel_job(job):
    with pytest.raises(errors.WrapperError) as e:
        plan(["node02", "x"], {"PATH": job["PATH"]})
    assert e.value.code == errors.NO_JOB


def test_the_entry_point_runs_qrsh_or_says_one_line(job):
    script = os.path.join(WRAPPERS_SRC, "qrsh_ssh")
    env = dict(job, PYTHONPATH=WRAPPERS_SRC)
    ok = subprocess.run([sys.executable, script, "-n", "node02", "echo", "hi"], env=env, capture_output=True,
                        text=True, timeout=30)
    assert (ok.returncode, ok.stdout.split("\n")[:4]) == (0, ["-inherit", "-nostdin", "node02", "echo hi"])
    bad = subprocess.run([sys.executable, script, "-L", "1:h:2", "node02", "x"], env=env, capture_output=True,
                         text=True, timeout=30)
    assert bad.returncode == errors.USAGE and bad.stdout == ""
    assert bad.stderr == "qrsh_ssh: error: port forwarding (-L) cannot go through qrsh -inherit\n"
    other = subprocess.run([sys.executable, script, "-s", "node02", "netconf"], env=env, capture_output=True,
                           text=True, timeout=30)
    assert (other.returncode, other.stdout) == (errors.USAGE, "")
    assert other.stderr == "qrsh_ssh: error: subsystem 'netconf': only sftp runs through qrsh -inherit\n"
    check = subprocess.run([sys.executable, script, "-O", "check", "-S", "/tmp/none", "node02"], env=env,
                           capture_output=True, timeout=30)
    assert (check.returncode, check.stdout) == (255, b"")       # ssh's fatal(): its line, \r\n, 255
    assert check.stderr == b"Control socket connect(/tmp/none): No such file or directory\r\n"


def test_help_gives_every_tools_setting_for_this_installation(tmp_path):
    """--help: each ssh-only tool's setting and what works (qrshssh.TOOLS, what README.rst, the man page
    and the end-to-end tests use) with the installed path, the policies and the exit codes; nothing else
    runs."""
    script = os.path.join(WRAPPERS_SRC, "qrsh_ssh")
    out = subprocess.run([sys.executable, script, "--help"], env={"PYTHONPATH": WRAPPERS_SRC},
                         capture_output=True, text=True, timeout=30)
    assert (out.returncode, out.stderr) == (0, "")
    here = os.path.abspath(script)
    assert "\n".join("  " + line for line in qrshssh.tools_table(here)) in out.stdout
    for tool, _, line, works in qrshssh.TOOLS.values():
        assert tool in out.stdout and (line is None) == works.startswith("cannot:")
    assert "--mca plm_rsh_agent %s " % here in out.stdout
    assert "PATH=%s:$PATH pdsh" % os.path.join(os.path.dirname(here), "job-ssh") in out.stdout
    for what, policy in qrshssh.policies():
        assert "  %s: %s\n" % (what, policy) in out.stdout
    assert "$SGEWRAP_SFTP_SERVER, default /usr/lib/openssh/sftp-server" in out.stdout
    for code, why in qrshssh.EXIT_CODES:
        assert "%-3d %s" % (code, why) in out.stdout


def test_readme_shows_the_tools_table_as_help_does():
    """README.rst's table of tools is qrshssh.tools_table for W/qrsh_ssh, word for word; and every tool
    it says runs in CI is named (its TOOLS key, quoted) by the end-to-end tests that run it."""
    with open(os.path.join(os.path.dirname(WRAPPERS_SRC), "README.rst")) as f:
        readme = f.read()
    assert "\n".join(("    " + line).rstrip() for line in qrshssh.tools_table("W/qrsh_ssh")) in readme
    tests = os.path.join(os.path.dirname(WRAPPERS_SRC), "tests")
    text = "".join(open(os.path.join(tests, name)).read()
                   for name in ("lib/mpijobs.py", "e2e/test_mpi.py", "e2e/test_qrsh_ssh_tools.py"))
    for key, (_, _, _, works) in qrshssh.TOOLS.items():
        assert ('"%s"' % key in text) == ("(CI" in works), key


# --- the SFTP subsystem end to end on this host: real scp and sftp, qrsh -inherit played here --------

#: Stands in for ``qrsh -inherit``: what a login shell's startup files print on the way (as Debian's
#: bash does for sshd's ``bash -c`` when ~/.bashrc echoes), then the task's words run here: as they
#: are with ``-noshell`` (qrsh_starter execs them), else joined through a shell.
QRSH_HERE = """#!/bin/sh
%s
[ "$1" = -inherit ] && shift
[ "$1" = -nostdin ] && { shift; exec </dev/null; }
if [ "$1" = -noshell ]; then shift 2; exec "$@"; fi
shift
exec /bin/sh -c "$1"
"""
SHELL_SAYS = """echo "hello from ~/.bashrc"
printf 'and more, a NUL \\000 and no newline'"""


@pytest.fixture
def here(job, tmp_path):
    """A job environment whose qrsh runs the task on this host (QRSH_HERE), and an executable
    qrsh_ssh (``ssh``) that scp -S and sftp -S can run."""
    bindir = tmp_path / "here"
    bindir.mkdir()
    (bindir / "qrsh").write_text(QRSH_HERE % SHELL_SAYS)
    (bindir / "qrsh").chmod(0o755)
    ssh = bindir / "ssh"
    ssh.write_text('#!/bin/sh\nexec "%s" "%s" "$@"\n' % (sys.executable, os.path.join(WRAPPERS_SRC, "qrsh_ssh")))
    ssh.chmod(0o755)
    return dict(job, PATH="%s:/usr/bin:/bin" % bindir, PYTHONPATH=WRAPPERS_SRC), str(ssh)


def _sha256(path):
    import hashlib
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _tree(tmp_path, name):
    """A directory of files of several sizes (one of 3 MiB of every byte value), in a subdirectory too."""
    top = tmp_path / name
    (top / "sub").mkdir(parents=True)
    (top / "big").write_bytes(bytes(range(256)) * (3 * 4096) + b"\0\n\r\xff end")
    (top / "empty").write_bytes(b"")
    (top / "sub" / "text").write_text("hello\n" * 1000)
    return top


def _same_tree(a, b):
    files = sorted(os.path.relpath(os.path.join(d, f), a) for d, _, fs in os.walk(a) for f in fs)
    assert files == sorted(os.path.relpath(os.path.join(d, f), b) for d, _, fs in os.walk(b) for f in fs)
    for f in files:
        assert _sha256(os.path.join(a, f)) == _sha256(os.path.join(b, f)), f


@pytest.mark.parametrize("mode", [[], ["-O"]])
def test_scp_copies_byte_for_byte_both_ways(here, tmp_path, mode):
    """scp's SFTP mode (OpenSSH 9's default) whatever the login shell prints (the relay drops it);
    legacy scp (-O), like rsync, speaks through the user's shell as over ssh: a clean one here."""
    env, ssh = here
    if mode:
        (tmp_path / "here" / "qrsh").write_text(QRSH_HERE % "")
    source = _tree(tmp_path, "source")
    there = tmp_path / "there"
    there.mkdir()
    up = subprocess.run(["scp", *mode, "-S", ssh, "-r", "-q", str(source), "node02:%s/" % there], env=env,
                        capture_output=True, text=True, timeout=60)
    assert up.returncode == 0, up.stderr
    _same_tree(source, there / "source")
    back = tmp_path / "back"
    down = subprocess.run(["scp", *mode, "-S", ssh, "-q", "node02:%s/source/big" % there, str(back)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert down.returncode == 0, down.stderr
    assert _sha256(back) == _sha256(source / "big")


def test_rsync_copies_byte_for_byte_both_ways(here, tmp_path):
    env, ssh = here
    (tmp_path / "here" / "qrsh").write_text(QRSH_HERE % "")
    source = _tree(tmp_path, "source")
    there, back = tmp_path / "there", tmp_path / "back"
    for argv in (["rsync", "-e", ssh, "-a", str(source), "node02:%s/" % there],
                 ["rsync", "-e", ssh, "-a", "node02:%s/source" % there, "%s/" % back]):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    _same_tree(source, there / "source")
    _same_tree(source, back / "source")


def test_sftp_batch_copies_byte_for_byte_both_ways_whatever_the_login_shell_prints(here, tmp_path):
    env, ssh = here
    source = _tree(tmp_path, "source")
    there, back = tmp_path / "there", tmp_path / "back"
    there.mkdir()
    back.mkdir()
    batch = tmp_path / "batch"
    batch.write_text("put -r %s %s\nget -r %s/source %s\nls -l %s/source/big\n" % (source, there, there, back, there))
    done = subprocess.run(["sftp", "-S", ssh, "-b", str(batch), "node02"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    _same_tree(source, there / "source")
    _same_tree(source, back / "source")
    assert "hello from" not in done.stdout + done.stderr          # the shell's words went nowhere


def _relay(env, tmp_path, server, **kwargs):
    """qrsh_ssh -s node02 sftp with SERVER (a shell script) as the SFTP server."""
    path = tmp_path / "server"
    path.write_text("#!/bin/sh\n" + server)
    path.chmod(0o755)
    return subprocess.Popen([sys.executable, os.path.join(WRAPPERS_SRC, "qrsh_ssh"), "-s", "node02", "sftp"],
                            env=dict(env, SGEWRAP_SFTP_SERVER=str(path)), **kwargs)


def test_the_relay_passes_the_servers_bytes_and_exit_status_and_nothing_before(here, tmp_path):
    env, _ = here
    proc = _relay(env, tmp_path, "printf 'qrsh_ssh-sftp-fake\\n\\0\\1\\377'; cat; exit 3\n", stdin=subprocess.PIPE,
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(b"x" * 1000000, timeout=60)
    assert (proc.returncode, err) == (3, b"")
    assert out == b"qrsh_ssh-sftp-fake\n\0\1\377" + b"x" * 1000000


def test_without_the_marker_what_came_goes_to_stderr_and_the_status_is_qrshs(here, tmp_path):
    env, _ = here
    (tmp_path / "here" / "qrsh").write_text("#!/bin/sh\necho 'error: no such task'\nexit 1\n")
    proc = _relay(env, tmp_path, "exit 0\n", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, out, err) == (1, b"", b"error: no such task\n")


def test_the_relay_passes_signals_on_and_dies_of_the_same(here, tmp_path):
    import signal
    import time
    env, _ = here
    ready = tmp_path / "ready"
    proc = _relay(env, tmp_path, "touch %s; exec sleep 60\n" % ready, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGTERM


def test_the_relay_stops_when_the_tool_stops_reading(here, tmp_path):
    env, _ = here
    proc = _relay(env, tmp_path, "exec yes\n", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.read(100000) == b"y\n" * 50000
    proc.stdout.close()
    proc.wait(timeout=30)
    assert proc.returncode != 0 and b"Traceback" not in proc.stderr.read()


# --- --linger: launchers that detach -------------------------------------------------------------------

@pytest.mark.parametrize("argv,environ", [(["--linger", "node02", "echo", "a b"], {}),
                                          (["-n", "--linger", "-x", "node02", "echo", "a b"], {}),
                                          (["node02", "echo", "a b"], {"SGEWRAP_LINGER": "1"}),
                                          (["node02", "echo", "a b"], {"SGEWRAP_LINGER": "yes"})])
def test_linger_runs_the_command_under_the_stub_with_no_shell_of_its_own(job, argv, environ):
    """--linger (or SGEWRAP_LINGER=1): qrsh -inherit -noshell HOST /bin/sh -c LINGER_SCRIPT sh MARKER
    'COMMAND' (the words joined as ssh joins them; the user's shell runs them inside the stub)."""
    todo = qrshssh.plan(argv, dict(job, **environ), "alice")
    assert todo.linger and todo.nostdin == ("-n" in argv)
    assert todo.marker.startswith("qrsh_ssh-linger-") and len(todo.marker) == len("qrsh_ssh-linger-") + 24
    assert todo.command[1:] == ["-inherit"] + (["-nostdin"] if "-n" in argv else []) + [
        "-noshell", "node02", "/bin/sh", "-c", qrshssh.LINGER_SCRIPT, "sh", todo.marker, "echo a b"]


@pytest.mark.parametrize("value", ["", "0", "no"])
def test_without_linger_nothing_changes(job, value):
    todo = qrshssh.plan(["node02", "true"], dict(job, SGEWRAP_LINGER=value), "alice")
    assert not todo.linger and todo.command[1:] == ["-inherit", "node02", "true"]


def test_the_linger_stub_holds_no_backslash_and_is_posix_sh():
    """Son of Grid Engine's qrsh_starter turns backslash-n into a newline: none in the stub; dash -n."""
    assert "\\" not in qrshssh.LINGER_SCRIPT
    assert subprocess.run(["dash", "-n", "-c", qrshssh.LINGER_SCRIPT]).returncode == 0


#: Stands in for ``qrsh -inherit -noshell``: the task's words run here with the task's additional group
#: id (GID, the fake $SGE_JOB_SPOOL_DIR/addgrpid) as their only supplementary group (setpriv, as root)
QRSH_TASK = """#!/bin/sh
[ "$1" = -inherit ] && shift
[ "$1" = -nostdin ] && { shift; exec </dev/null; }
[ "$1" = -noshell ] && shift
shift
exec setpriv --groups "$(cat "$SGE_JOB_SPOOL_DIR/addgrpid")" "$@"
"""


@pytest.fixture
def task(job, tmp_path):
    """A job environment whose qrsh runs the task here in a group of its own (QRSH_TASK; needs root)."""
    if os.getuid() != 0:
        pytest.skip("needs root (setpriv --groups): run as root")
    (tmp_path / "bin" / "qrsh").write_text(QRSH_TASK)
    spool = tmp_path / "spool"
    spool.mkdir()
    gid = 64000 + os.getpid() % 1000          # a group no other test process carries
    (spool / "addgrpid").write_text("%d\n" % gid)
    env = dict(job, SGE_JOB_SPOOL_DIR=str(spool), PYTHONPATH=WRAPPERS_SRC, SHELL="/bin/sh")
    return env, gid


def _in_group(gid):
    return [p for p in os.listdir("/proc") if p.isdigit() and _groups(p) and gid in _groups(p)]


def _groups(pid):
    try:
        with open("/proc/%s/status" % pid) as f:
            state = next(line for line in f if line.startswith("State:"))
            if " Z " in state or "zombie" in state:
                return set()
            f.seek(0)
            return {int(g) for line in f if line.startswith("Groups:") for g in line.split()[1:]}
    except (OSError, StopIteration):
        return set()


def _wait_until(predicate, timeout):
    import time
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.1)
    return predicate()


def test_linger_returns_the_status_at_once_and_holds_the_task_while_a_detached_process_runs(task):
    """ipyparallel's way: ``nohup ENGINE > LOG 2>&1 </dev/null & echo pid=$!``.  qrsh_ssh returns 0 and
    the pid at once (a tool reading its output to the end is not held), the task (its stub) stays while
    the detached process runs and ends when it does."""
    import time
    env, gid = task
    start = time.monotonic()
    done = subprocess.run([sys.executable, os.path.join(WRAPPERS_SRC, "qrsh_ssh"), "--linger", "node02",
                           "nohup sleep 3 >/dev/null 2>&1 </dev/null & echo pid=$!"], env=env, capture_output=True,
                          text=True, timeout=30)
    took = time.monotonic() - start
    assert (done.returncode, done.stderr) == (0, "") and done.stdout.startswith("pid="), done
    assert took < 2.5, took
    assert len(_in_group(gid)) >= 2, "the stub and the detached sleep run on"
    assert _wait_until(lambda: not _in_group(gid), 10), "the stub ends after the sleep"


def test_linger_passes_output_input_and_status_and_ends_at_once_if_nothing_is_left(task):
    """What the login shell printed before the stub is dropped, the command's output, error output and
    exit status pass, standard input reaches it; nothing left: the task ends with the command."""
    env, gid = task
    done = subprocess.run([sys.executable, os.path.join(WRAPPERS_SRC, "qrsh_ssh"), "--linger", "node02",
                           "cat; printf 'no newline'; echo oops >&2; exit 7"], env=env, input=b"x" * 300000,
                          capture_output=True, timeout=30)
    assert (done.returncode, done.stdout, done.stderr) == (7, b"x" * 300000 + b"no newline", b"oops\n")
    assert _wait_until(lambda: not _in_group(gid), 5)


# --- many at once: the job's slots of each host --------------------------------------------------------

def test_a_hosts_task_slots_are_its_slots_in_pe_hostfile_less_the_job_scripts_on_the_master(job, tmp_path):
    assert qrshssh.task_slots("node01.example.org", job) == 3          # the master host (first line)
    assert qrshssh.task_slots("node02", job) == 4
    hostfile = tmp_path / "two-queues"
    hostfile.write_text("m 1 a.q@m UNDEFINED\nn 2 a.q@n UNDEFINED\nn 3 b.q@n UNDEFINED\n")
    environ = dict(job, PE_HOSTFILE=str(hostfile))
    assert (qrshssh.task_slots("m", environ), qrshssh.task_slots("n", environ)) == (1, 5)


def test_a_slot_lock_is_waited_for_until_one_is_free(job, tmp_path):
    """node02's 4 slots: four holders, the fifth waits until one lets go; the locks live in $TMPDIR."""
    import threading
    environ = dict(job, TMPDIR=str(tmp_path))
    held = [qrshssh.take_slot("node02", environ) for _ in range(4)]
    assert None not in held and len(os.listdir(tmp_path / qrshssh.SLOT_DIR)) == 4
    got = []
    waiter = threading.Thread(target=lambda: got.append(qrshssh.take_slot("node02", environ)))
    waiter.start()
    waiter.join(0.5)
    assert waiter.is_alive() and not got
    os.close(held.pop())
    waiter.join(5)
    assert got and got[0] is not None
    for fd in held + got:
        os.close(fd)
    assert qrshssh.take_slot("node02", dict(job)) is None           # no $TMPDIR: nothing is counted


#: Stands in for ``qrsh -inherit HOST COMMAND`` on an execd that runs LIMIT tasks of the job at once and
#: refuses another with Grid Engine's words (exit 1); it logs each start and refusal in $SEEN
QRSH_LIMITED = """#!/bin/sh
shift
i=0
while [ $i -lt "$LIMIT" ]; do
    if mkdir "$SEEN/slot.$i" 2>/dev/null; then
        echo started >> "$SEEN/log"
        /bin/sh -c "$2"
        s=$?
        rmdir "$SEEN/slot.$i"
        exit $s
    fi
    i=$((i + 1))
done
echo refused >> "$SEEN/log"
echo "error: executing task of job 42 failed: execution daemon on host \\"$1\\" didn't accept task" >&2
exit 1
"""


@pytest.fixture
def limited(job, tmp_path):
    """A job environment whose qrsh takes 2 tasks at once (QRSH_LIMITED); node02 has 2 slots."""
    (tmp_path / "bin" / "qrsh").write_text(QRSH_LIMITED)
    (tmp_path / "pe_hostfile").write_text("node01.example.org 1 q@node01 UNDEFINED\nnode02 2 q@node02 UNDEFINED\n")
    seen = tmp_path / "seen"
    seen.mkdir()
    (tmp_path / "tmpdir").mkdir()
    return dict(job, LIMIT="2", SEEN=str(seen), TMPDIR=str(tmp_path / "tmpdir"), PYTHONPATH=WRAPPERS_SRC), seen


def _many(environ, count, command):
    script = os.path.join(WRAPPERS_SRC, "qrsh_ssh")
    procs = [subprocess.Popen([sys.executable, script, "node02", command.replace("%d", str(i))], env=environ,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(count)]
    return [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in procs]


def test_sixteen_at_once_to_a_host_of_two_slots_all_run_and_none_is_refused(limited):
    environ, seen = limited
    done = _many(environ, 16, "sleep 0.2; echo out %d; echo err %d >&2; exit 7")
    assert [d[0] for d in done] == [7] * 16
    assert [d[1] for d in done] == [b"out %d\n" % i for i in range(16)]
    assert [d[2] for d in done] == [b"err %d\n" % i for i in range(16)]
    assert (seen / "log").read_text().split() == ["started"] * 16


def test_without_slot_locks_a_refused_task_is_tried_again(limited):
    """No $TMPDIR (nothing counted): the execd's refusals are not the tool's; each task runs in the end."""
    environ, seen = limited
    done = _many(dict(environ, TMPDIR=""), 6, "sleep 0.3; echo out %d")
    assert [d[:2] for d in done] == [(0, b"out %d\n" % i) for i in range(6)]
    assert all(d[2] == b"" for d in done), done
    log = (seen / "log").read_text().split()
    assert log.count("started") == 6 and "refused" in log


def test_a_task_refused_for_good_is_one_line_and_255(limited, monkeypatch, capfd):
    environ, seen = limited
    monkeypatch.setattr(qrshssh, "RETRY_SECONDS", 1.0)
    monkeypatch.setenv("LIMIT", "2")
    monkeypatch.setenv("SEEN", str(seen))
    (seen / "slot.0").mkdir()
    (seen / "slot.1").mkdir()           # both taken outside qrsh_ssh (another host's, MPI's own)
    todo = qrshssh.plan(["node02", "true"], environ, "alice")
    with pytest.raises(errors.WrapperError) as e:
        qrshssh.run_task(todo.command, todo.host, environ)
    assert e.value.code == 255 and str(e.value) == ("node02 took no task of job 42 for 1 s: all the slots the job "
                                                    "holds there are in use (2 for tasks, $PE_HOSTFILE)")
    assert capfd.readouterr().err == ""
    assert (seen / "log").read_text().split().count("refused") >= 2


def test_another_failure_of_qrsh_is_passed_on_as_it_is(limited):
    environ, seen = limited
    (seen.parent / "bin" / "qrsh").write_text("#!/bin/sh\necho 'error: executing task of job 42 failed: "
                                              "no free queue'>&2\nexit 1\n")
    done = _many(environ, 1, "true")
    assert done == [(1, b"", b"error: executing task of job 42 failed: no free queue\n")]
