"""qrsh_ssh: what ssh-only tools pass, turned into qrsh -inherit; and everything it refuses."""
import os
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


def plan(argv, environ, me="alice"):
    command, _ = qrshssh.plan(argv, environ, me)
    return command[1:]


@pytest.mark.parametrize("argv,expected", [
    (["node02", "hostname"], ["-inherit", "node02", "hostname"]),
    (["-n", "node01", "echo", "a b"], ["-inherit", "-nostdin", "node01", "echo a b"]),        # joined like ssh
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
    (["-M", "node02", "x"], errors.USAGE, "a control master"),
    (["-S", "/tmp/s", "node02", "x"], errors.USAGE, "a control socket"),
    (["-O", "exit", "node02"], errors.USAGE, "a control command"),
    (["-o", "ControlMaster=auto", "node02", "x"], errors.USAGE, "-o ControlMaster"),
    (["-oProxyCommand=nc %h %p", "node02", "x"], errors.USAGE, "-o ProxyCommand"),
    (["-o", "LocalForward 1 h:2", "node02", "x"], errors.USAGE, "-o LocalForward"),
    (["-f", "node02", "x"], errors.USAGE, "background"),
    (["node02", "-L", "1:h:2", "x"], errors.USAGE, "port forwarding (-L)"),      # after the host too
    (["node02", "-l", "bob", "x"], errors.USAGE, "user 'bob'"),
    (["-Q", "cipher"], errors.USAGE, "a query (-Q)"),
    (["-N", "node02"], errors.USAGE, "running no command"),
    (["node02"], errors.USAGE, "no command"),
    ([], errors.USAGE, "no host"),
    (["-p"], errors.USAGE, "needs a value"),
    (["-Z", "node02", "x"], errors.USAGE, "unknown option -Z"),
    (["bob@node02", "x"], errors.USAGE, "user 'bob'"),
    (["-l", "root", "node02", "x"], errors.USAGE, "user 'root'"),
    (["node03", "x"], errors.BAD_HOST, "node03 is not a host of this job"),
])
def test_what_it_refuses(job, argv, code, why):
    with pytest.raises(errors.WrapperError) as e:
        plan(argv, job)
    assert e.value.code == code and why in str(e.value), str(e.value)


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


def test_help_gives_every_tools_setting_for_this_installation(tmp_path):
    """--help: each ssh-only tool's setting (qrshssh.TOOLS, what README.rst and test_mpi.py use)
    with the installed path, and the exit codes; nothing else runs."""
    script = os.path.join(WRAPPERS_SRC, "qrsh_ssh")
    out = subprocess.run([sys.executable, script, "--help"], env={"PYTHONPATH": WRAPPERS_SRC},
                         capture_output=True, text=True, timeout=30)
    assert (out.returncode, out.stderr) == (0, "")
    here = os.path.abspath(script)
    for tool, _, line in qrshssh.TOOLS.values():
        assert tool in out.stdout
    assert "--mca plm_rsh_agent %s " % here in out.stdout
    assert "PATH=%s:$PATH pdsh" % os.path.join(os.path.dirname(here), "job-ssh") in out.stdout
    for code, why in qrshssh.EXIT_CODES:
        assert "%-3d %s" % (code, why) in out.stdout
