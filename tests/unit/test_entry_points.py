"""The five client entry points as subprocesses, with a recording stand-in client.

A recorded fake is fine for argv translation; the real clients are proved in
tests/loopback (real sshd, in.rshd, in.rlogind, telnetd) and tests/e2e.
"""
import json
import os
import subprocess
import sys

import pytest

from lib import WRAPPERS_SRC
from sgewrap import errors, methods

STARTER = "'/usr/lib/gridengine/utilbin/lx-amd64/qrsh_starter'"
JOBDIR = "'/var/spool/gridengine/execd/vm/active_jobs/7.1'"

RECORDER = """#!%s
import json, os, sys
with open(os.environ["RECORD_TO"], "w") as f:
    json.dump({"argv": sys.argv, "ppid_is_python": False, "pid": os.getpid()}, f)
sys.exit(int(os.environ.get("RECORD_EXIT", "0")))
""" % sys.executable


@pytest.fixture
def recorder(tmp_path):
    path = tmp_path / "client"
    path.write_text(RECORDER)
    path.chmod(0o755)
    return str(path)


def run(name, *argv, env=None, **kw):
    return subprocess.run([sys.executable, "-I", os.path.join(WRAPPERS_SRC, name)] + list(argv),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=env if env is not None else dict(os.environ), **kw)


def recorded(name, recorder, tmp_path, *argv, exit=0):
    out = tmp_path / "argv.json"
    env = dict(os.environ, RECORD_TO=str(out), RECORD_EXIT=str(exit))
    proc = run(name, "--client=" + recorder, *argv, env=env)
    return proc, (json.loads(out.read_text()) if out.exists() else None)


@pytest.mark.parametrize("name,argv,client_words", [
    ("qlogin_wrapper", ["vm", "4711"], ["-X", "-p", "4711", "--", "vm"]),
    ("ssh_wrapper", ["-p", "4711", "vm"], ["-p", "4711", "--", "vm"]),
    ("ssh_wrapper", ["-p", "4711", "vm", "exec", STARTER, JOBDIR], ["-p", "4711", "--", "vm", "exec", STARTER, JOBDIR]),
    ("ssh_wrapper", ["-n", "-p", "4711", "vm", "exec", STARTER, JOBDIR, "noshell"],
     ["-n", "-p", "4711", "--", "vm", "exec", STARTER, JOBDIR, "noshell"]),
    ("telnet_adapter", ["vm", "4711"], ["vm", "4711"]),
    ("rlogin_adapter", ["-p", "4711", "vm"], ["-p", "4711", "vm"]),
    ("rsh_adapter", ["-n", "-p", "4711", "vm", "exec", STARTER, JOBDIR],
     ["-n", "-p", "4711", "vm", "exec", STARTER, JOBDIR]),
])
def test_sge_argv_reaches_client_translated(name, argv, client_words, recorder, tmp_path):
    proc, rec = recorded(name, recorder, tmp_path, *argv)
    assert proc.returncode == 0, proc.stderr
    assert rec["argv"] == [recorder] + client_words
    assert proc.stderr == "" and proc.stdout == ""


def test_the_ticket_cache_the_front_handed_over_is_the_clients_again(tmp_path):
    """The front of a --gssapi-delegate configuration moved KRB5CCNAME to SGEWRAP_KRB5CCNAME (out of qrsh -V's
    job environment): ssh must find the user's ticket where the user keeps it."""
    client = tmp_path / "client"
    client.write_text("#!%s -I\nimport os\nprint(os.environ.get('KRB5CCNAME'), os.environ.get('SGEWRAP_KRB5CCNAME'))\n"
                      % sys.executable)
    client.chmod(0o755)
    env = dict(os.environ, SGEWRAP_KRB5CCNAME="FILE:/tmp/krb5cc_1000_mine")
    env.pop("KRB5CCNAME", None)
    proc = run("ssh_wrapper", "--client=%s" % client, "-p", "1", "vm", "true", env=env)
    assert (proc.returncode, proc.stdout) == (0, "FILE:/tmp/krb5cc_1000_mine None\n"), proc.stderr


def test_wrapper_replaces_itself_with_the_client(recorder, tmp_path):
    """exec, not spawn: the client runs in the wrapper's own process (signals, exit status)."""
    out = tmp_path / "argv.json"
    env = dict(os.environ, RECORD_TO=str(out))
    p = subprocess.Popen([sys.executable, "-I", os.path.join(WRAPPERS_SRC, "ssh_wrapper"),
                          "--client=" + recorder, "-p", "1", "vm", "true"], env=env)
    assert p.wait(30) == 0
    assert json.loads(out.read_text())["pid"] == p.pid


@pytest.mark.parametrize("code", [0, 1, 7, 255])
def test_exit_status_is_the_clients(code, recorder, tmp_path):
    proc, _ = recorded("ssh_wrapper", recorder, tmp_path, "-p", "1", "vm", "exit", exit=code)
    assert proc.returncode == code


@pytest.mark.parametrize("options,words", [
    (["--no-x11"], ["-x"]),
    (["--x11", "--no-x11"], ["-x"]),
    (["--no-x11", "--x11"], ["-X"]),
    (["--tty", "--ssh-option", "GSSAPIDelegateCredentials=no", "--ssh-option=LogLevel=ERROR"],
     ["-X", "-tt", "-o", "GSSAPIDelegateCredentials=no", "-o", "LogLevel=ERROR"]),
    (["--client-arg=-4", "--client-arg", "-q"], ["-X", "-4", "-q"]),
    (["--"], ["-X"]),
])
def test_qlogin_wrapper_options(options, words, recorder, tmp_path):
    proc, rec = recorded("qlogin_wrapper", recorder, tmp_path, *options, "vm", "22")
    assert proc.returncode == 0, proc.stderr
    assert rec["argv"][1:] == words + ["-p", "22", "--", "vm"]


def mux(persist=60):
    """The tunnel ssh's sharing options for this (root) test process: its private socket directory."""
    return " -o ControlMaster=auto -o ControlPath=/tmp/sgewrap-mux-%d/%%%%C -o ControlPersist=%d" % (
        os.getuid(), persist)


@pytest.mark.parametrize("name,options,words", [
    ("ssh_wrapper", ["--tunnel"], ["-o", "ProxyCommand={client}{mux} -W 127.0.0.1:%p %h"]),
    ("ssh_wrapper", ["--tunnel-via=gw.example.org"], ["-o", "ProxyCommand={client}{mux} -W %h:%p gw.example.org"]),
    ("ssh_wrapper", ["--tunnel-via", "bob@10.0.0.1"], ["-o", "ProxyCommand={client}{mux} -W %h:%p bob@10.0.0.1"]),
    ("ssh_wrapper", ["--tunnel", "--tunnel-via=gw"], ["-o", "ProxyCommand={client}{mux} -W %h:%p gw"]),  # last wins
    ("qlogin_wrapper", ["--tunnel", "--no-x11"], ["-o", "ProxyCommand={client}{mux} -W 127.0.0.1:%p %h", "-x"]),
    ("ssh_wrapper", ["--tunnel", "--tunnel-persist=0"], ["-o", "ProxyCommand={client} -W 127.0.0.1:%p %h"]),
    ("ssh_wrapper", ["--tunnel-persist", "5", "--tunnel"], ["-o", "ProxyCommand={client}{mux5} -W 127.0.0.1:%p %h"]),
])
def test_tunnel_runs_the_client_itself_as_proxy(name, options, words, recorder, tmp_path):
    """--tunnel: the client reaches PORT through HOST's sshd (or a gateway) with ssh -W, the
    same client program as the session's, by absolute path; the tunnels share one connection."""
    argv = ["-p", "4711", "vm", "hostname"] if name == "ssh_wrapper" else ["vm", "4711"]
    proc, rec = recorded(name, recorder, tmp_path, *options, *argv)
    assert proc.returncode == 0, proc.stderr
    words = [w.replace("{client}", recorder).replace("{mux5}", mux(5)).replace("{mux}", mux()) for w in words]
    tail = ["-p", "4711", "--", "vm"] + (["hostname"] if name == "ssh_wrapper" else [])
    assert rec["argv"][1:] == words + tail


@pytest.mark.parametrize("name,argv,code,text", [
    ("ssh_wrapper", ["--tunnel-via=-oProxyCommand=id", "-p", "1", "vm"], errors.USAGE, "starts with '-'"),
    ("ssh_wrapper", ["--tunnel-via=gw;id", "-p", "1", "vm"], errors.USAGE, "the character ';'"),
    ("ssh_wrapper", ["--tunnel-via=a b@gw", "-p", "1", "vm"], errors.USAGE, "invalid user"),
    ("ssh_wrapper", ["--tunnel-via=gw%h", "-p", "1", "vm"], errors.USAGE, "ssh token"),
    ("ssh_wrapper", ["--tunnel=gw", "-p", "1", "vm"], errors.USAGE, "takes no value"),
    ("ssh_wrapper", ["--tunnel", "--tunnel-persist=forever", "-p", "1", "vm"], errors.USAGE, "not a number"),
    ("ssh_wrapper", ["--tunnel", "--tunnel-persist=3601", "-p", "1", "vm"], errors.USAGE, "0-3600"),
    ("telnet_adapter", ["--tunnel", "vm", "23"], errors.USAGE, "unknown option --tunnel"),
    ("ssh_wrapper", ["--bogus", "-p", "1", "vm"], errors.USAGE, "unknown option --bogus"),
    ("ssh_wrapper", ["--ssh-option"], errors.USAGE, "needs a value"),
    ("ssh_wrapper", ["--tty=yes", "-p", "1", "vm"], errors.USAGE, "takes no value"),
    ("telnet_adapter", ["--x11", "vm", "23"], errors.USAGE, "unknown option --x11"),
    ("ssh_wrapper", ["--client=ssh", "-p", "1", "vm"], errors.USAGE, "absolute path"),
    ("qlogin_wrapper", ["vm"], errors.CONVENTION, "'HOST PORT' (qlogin_command)"),
    ("qlogin_wrapper", ["-p", "22", "vm"], errors.CONVENTION, "expected"),
    ("rsh_adapter", ["-p", "22", "vm"], errors.CONVENTION, "rsh_command"),
    ("rlogin_adapter", ["vm", "22"], errors.CONVENTION, "rlogin_command"),
    ("ssh_wrapper", [], errors.CONVENTION, "got 0 arguments"),
    ("ssh_wrapper", ["-p", "0", "vm", "x"], errors.BAD_PORT, "1-65535"),
    ("qlogin_wrapper", ["vm", "http"], errors.BAD_PORT, "'http'"),
    ("ssh_wrapper", ["-p", "22", "-oProxyCommand=touch /tmp/x", "x"], errors.BAD_HOST, "option"),
    ("qlogin_wrapper", ["vm x", "22"], errors.BAD_HOST, "whitespace"),
    ("ssh_wrapper", ["--client=/nonexistent/ssh", "-p", "22", "vm", "x"], errors.NO_CLIENT,
     "/nonexistent/ssh (missing)"),
    ("ssh_wrapper", ["--client=/etc/passwd", "-p", "22", "vm", "x"], errors.NO_CLIENT, "/etc/passwd (not executable)"),
])
def test_bad_input_one_line_exit_code_nothing_run(name, argv, code, text, tmp_path):
    out = tmp_path / "argv.json"
    proc = run(name, *argv, env=dict(os.environ, RECORD_TO=str(out)))
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(name + ": error: ") and text in lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not out.exists()


def test_exit_codes_are_distinct_and_documented():
    codes = [c for c, _ in errors.EXIT_CODES]
    assert len(codes) == len(set(codes))
    readme = open(os.path.join(os.path.dirname(WRAPPERS_SRC), "README.rst")).read()
    for code, meaning in errors.EXIT_CODES:
        assert str(code) in readme


def test_missing_system_client_is_reported(tmp_path):
    """rsh_adapter with no SGE rsh and an empty candidate list fails cleanly."""
    env = dict(os.environ, SGE_ROOT=str(tmp_path))
    proc = run("rsh_adapter", "--client=" + str(tmp_path / "rsh"), "-p", "1", "vm", "x", env=env)
    assert proc.returncode == errors.NO_CLIENT and "rsh" in proc.stderr


@pytest.mark.parametrize("name", sorted(methods.ENTRY_POINTS))
def test_help(name):
    proc = run(name, "--help")
    assert proc.returncode == 0 and proc.stdout.startswith("usage: " + name)
    for code, _ in errors.EXIT_CODES:
        if code != errors.NO_JOB:
            assert " %d " % code in proc.stdout


@pytest.mark.parametrize("shell,expected", [
    ("bash", "/usr/bin/ssh -n -p 22 -- vm exec \"%s\" \"'/spool/a b/1.1'\" noshell"),
    ("tcsh", "/usr/bin/ssh -n -p 22 -- vm exec \"%s\" \"'/spool/a b/1.1'\" noshell"),
    ("fish", "/usr/bin/ssh -n -p 22 -- vm exec \"%s\" \"'/spool/a b/1.1'\" noshell"),
])
def test_dry_run_prints_exact_command_and_runs_nothing(shell, expected, tmp_path):
    env = dict(os.environ, SHELL="/bin/" + shell)
    proc = run("ssh_wrapper", "--dry-run", "-n", "-p", "22", "vm", "exec", STARTER, "'/spool/a b/1.1'", "noshell",
               env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == expected % STARTER + "\n"


@pytest.mark.parametrize("shell", ["bash", "tcsh", "fish"])
def test_dry_run_quotes_for_the_detected_shell(shell):
    """Run from inside tcsh/fish (shellingham walks the process tree, $SHELL says sh):
    the printed line, read back by that same shell, gives the exact argv."""
    from test_quoting import read_back
    word = "x\\'y $Z!"    # fish, csh and POSIX quote this three different ways
    script = "%s -I %s --dry-run --client-arg=\"$W\" -p 22 vm x" % (
        sys.executable, os.path.join(WRAPPERS_SRC, "ssh_wrapper"))
    if shell == "fish":
        script = script.replace('\"$W\"', "$W")
    proc = subprocess.run(["/usr/bin/" + shell, "-c", script], stdout=subprocess.PIPE, text=True,
                          env=dict(os.environ, SHELL="/bin/sh", W=word))
    line = proc.stdout.strip()
    assert line.startswith("/usr/bin/ssh ")
    assert read_back(shell, line[len("/usr/bin/ssh "):]) == "".join(
        "[%s]" % w for w in [word, "-p", "22", "--", "vm", "x"]), (shell, line)


def test_the_tunnel_socket_directory_is_private_or_not_used(tmp_path):
    """The control socket lives where only its user can enter; a directory someone else made (or
    a link, or one others may enter) means no sharing, never a socket in it."""
    from sgewrap.methods import ssh
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    assert ssh.control_dir({"XDG_RUNTIME_DIR": str(runtime)}) == str(runtime / "sgewrap")
    assert oct(os.stat(runtime / "sgewrap").st_mode & 0o777) == "0o700"
    runtime.chmod(0o755)                 # not private: the /tmp fallback instead
    assert ssh.control_dir({"XDG_RUNTIME_DIR": str(runtime)}) == "/tmp/sgewrap-mux-%d" % os.getuid()
    victim = 4242420                     # another uid: its /tmp directory planted by someone else (root here)
    planted = "/tmp/sgewrap-mux-%d" % victim
    os.makedirs(planted, mode=0o700, exist_ok=True)
    try:
        assert ssh.control_dir({}, uid=victim) is None
        assert ssh.mux_options("60", {}) != ""  # ours still works
    finally:
        os.rmdir(planted)
    link = "/tmp/sgewrap-mux-%d" % (victim + 1)
    os.symlink(str(tmp_path), link)
    try:
        assert ssh.control_dir({}, uid=victim + 1) is None
    finally:
        os.unlink(link)
    assert ssh.mux_options("0", {}) == ""


def test_every_program_of_the_registry_is_installed_paged_and_shimmed_as_it_says():
    """methods.PROGRAMS is the one table of programs: setup.cfg's console scripts (pip installs what
    users and administrators run, never a root program: pip cannot write "#!PYTHON -I"), the
    installer's list (make install, sgewrap install, the Debian package), the man pages and the
    two-line shims in wrappers/ follow it."""
    import configparser
    from sgewrap.admin import installer
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(os.path.dirname(WRAPPERS_SRC), "setup.cfg"))
    scripts = dict(line.replace(" ", "").split("=") for line in
                   cfg["options.entry_points"]["console_scripts"].strip().splitlines())
    expected = {name: "sgewrap.client:" + name if name in methods.ENTRY_POINTS else p.module + ":main"
                for name, p in methods.PROGRAMS.items() if p.runs_as != "root"}
    assert scripts == expected
    assert installer.entry_point_names() == sorted(methods.PROGRAMS)
    man = os.path.join(WRAPPERS_SRC, "man")
    for name, p in methods.PROGRAMS.items():
        assert os.path.exists(os.path.join(man, "%s.%d" % (name, p.section))), name
        shim = installer.script_body(name)
        assert "from %s import main" % p.module in shim, name
        assert p.runs_as in ("user", "root", "admin") and p.summary
