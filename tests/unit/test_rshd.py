"""sgewrap.rootside.rshd (rshdwrapper): options, daemon lookup, argv[0] of a job sshd, environment, whole runs.

rshdwrapper replaces itself with the daemon (nothing stays resident): a whole
run is the source script as a subprocess exec'ing a recording stand-in daemon.
The job context and the setup files are node_access session's now
(test_session.py, test_setupfile.py); the real sshd + PAM in tests/loopback.
"""
import os
import socket
import subprocess
import sys

import pytest
from hypothesis import given, settings, strategies as st

from lib.rootside import Log
from lib import WRAPPERS_SRC, need_root
from sgewrap.rootside import daemonlog, rshd
from sgewrap import errors, locate, methods
from sgewrap.admin import sgeconf

SCRIPT = os.path.join(WRAPPERS_SRC, "rshdwrapper")


# --- options --------------------------------------------------------------------------------


def parse(argv):
    """({flag: value} the command line gave, the daemon's words)."""
    values, words = rshd.TABLE.parse(argv)
    return values.given, words


def test_defaults_and_daemon_words():
    assert parse([]) == ({}, [])
    opts, words = parse(["--facility", "daemon", "--sge-root=/opt/sge", "/usr/sbin/sshd", "-i", "-o", "LogLevel=ERROR"])
    assert opts == {"--facility": "daemon", "--sge-root": "/opt/sge"}
    assert words == ["/usr/sbin/sshd", "-i", "-o", "LogLevel=ERROR"]
    values, _ = rshd.TABLE.parse([])
    assert (values.facility, values.sge_root, values.help) == ("authpriv", None, False)


def test_options_of_version_0_1_are_accepted():
    opts, words = parse(["--setup-dir=/tmp/x", "--require-job", "--admin-user", "sgeadmin", "--admin-user=o", "rshd"])
    assert opts["--admin-user"] == ["sgeadmin", "o"] and words == ["rshd"]
    assert "--setup-dir" not in rshd.usage()          # accepted, no longer offered


def test_double_dash_ends_options():
    assert parse(["--", "--weird", "-i"])[1] == ["--weird", "-i"]


def test_daemon_options_are_not_ours():
    assert parse(["rshd", "--require-job"]) == ({}, ["rshd", "--require-job"])


@pytest.mark.parametrize("argv", [
    ["--bogus"], ["--setup-dir"], ["--setup-dir=relative"], ["--sge-root=sge"], ["--facility=kern"],
    ["--facility"], ["--require-job=yes"], ["--help=1"], ["--admin-user="],
])
def test_bad_options(argv):
    with pytest.raises(errors.WrapperError) as e:
        parse(argv)
    assert e.value.code == errors.USAGE


@pytest.mark.parametrize("facility", daemonlog.FACILITIES)
def test_every_facility_exists_in_syslog(facility):
    import syslog
    assert isinstance(getattr(syslog, "LOG_" + facility.upper()), int)


def test_usage_names_every_option_and_code():
    text = rshd.usage()
    for word in ("--facility", "--sge-root", "--help", "sge-sshd", "64", "69", "70", "71", "72"):
        assert word in text


# --- the daemon -----------------------------------------------------------------------------


def test_default_daemon_is_sshd_i():
    assert rshd.resolve_daemon([], None) == ["/usr/sbin/sshd", "-i"]


def test_absolute_daemon_with_arguments():
    assert rshd.resolve_daemon(["/usr/bin/env", "-i", "x"], None) == ["/usr/bin/env", "-i", "x"]


@pytest.mark.parametrize("words,code", [
    (["sshd.bogus"], errors.USAGE), (["usr/sbin/sshd"], errors.USAGE), (["-i"], errors.USAGE),
    (["/nonexistent/sshd"], errors.NO_CLIENT), (["/etc/passwd"], errors.NO_CLIENT), (["/usr/sbin"], errors.NO_CLIENT),
    (["/usr/bin/env;id"], errors.NO_CLIENT),
])
def test_bad_daemons(words, code):
    with pytest.raises(errors.WrapperError) as e:
        rshd.resolve_daemon(words, None)
    assert e.value.code == code


def test_short_names_prefer_sge_utilbin(fake_sge_root):
    arc = locate.arch_guesses()[0]
    assert rshd.resolve_daemon(["rshd", "-l"], str(fake_sge_root)) == [
        str(fake_sge_root / "utilbin" / arc / "rshd"), "-l"]
    assert rshd.resolve_daemon(["rlogind"], str(fake_sge_root))[0] == str(fake_sge_root / "utilbin" / arc / "rlogind")


@pytest.mark.parametrize("name,system", [("rshd", "/usr/sbin/in.rshd"), ("rlogind", "/usr/sbin/in.rlogind"),
                                         ("telnetd", "/usr/sbin/telnetd"), ("sshd", "/usr/sbin/sshd")])
def test_short_names_fall_back_to_the_system_daemon(name, system, tmp_path, monkeypatch):
    if not locate.is_program(system):
        with pytest.raises(errors.WrapperError) as e:
            rshd.resolve_daemon([name], None)
        assert e.value.code == errors.NO_CLIENT
        return
    # a planted daemon earlier on PATH or a user's SGE_ROOT changes nothing: neither is consulted
    (tmp_path / ("in." + name)).write_text("#!/bin/true\n")
    monkeypatch.setenv("PATH", str(tmp_path) + ":" + os.environ.get("PATH", ""))
    monkeypatch.setenv("SGE_ROOT", str(tmp_path))
    assert rshd.resolve_daemon([name], None) == [system]


# --- sshd runs under the job's PAM service --------------------------------------------------


@pytest.fixture
def job_pam(tmp_path):
    path = tmp_path / "sge-sshd"
    path.write_text("auth required pam_sge-qrsh-setup.so\n")
    path.chmod(0o644)
    return str(path)


def test_sshd_is_started_as_sge_sshd(job_pam):
    need_root()    # the PAM file must be root's
    assert rshd.job_argv0("/usr/sbin/sshd", job_pam) == "sge-sshd"


def test_other_daemons_keep_their_name(tmp_path):
    assert rshd.job_argv0("/usr/sbin/in.rshd", str(tmp_path / "absent")) == "/usr/sbin/in.rshd"


@pytest.mark.parametrize("problem", ["absent", "writable", "not-a-file"])
def test_sshd_without_a_safe_job_pam_service_is_refused(tmp_path, problem):
    """The session would run under PAM's "other" service: untied from its job.  Fail closed."""
    path = tmp_path / "sge-sshd"
    if problem == "writable":
        path.write_text("x\n")
        path.chmod(0o666)
    elif problem == "not-a-file":
        path.mkdir()
    with pytest.raises(errors.WrapperError) as e:
        rshd.job_argv0("/usr/sbin/sshd", str(path))
    assert e.value.code == errors.NO_JOB and "sgewrap config ssh --tight --apply" in str(e.value)


# --- OpenSSH 9.8 and later: the PAM service is PamServiceName's, not the program's name ---------


@pytest.fixture
def fake_sshd(tmp_path):
    path = tmp_path / "sbin" / "sshd"
    path.parent.mkdir()
    path.write_text("#!/bin/true\n")
    path.chmod(0o755)
    return str(path)


def sshd_tree(tmp_path, release):
    """A fake root whose sshd is OpenSSH ``release``: 9.8 and later have sshd-session."""
    root = tmp_path / ("root-" + release)
    session = root / methods.SSHD_SESSION.lstrip("/")
    session.parent.mkdir(parents=True, exist_ok=True)
    if release != "9.2":
        session.write_text("")
    return str(root)


@pytest.mark.parametrize("release,options", [("9.2", []), ("9.8", ["-o", "PamServiceName=sge-sshd"]),
                                             ("10.0", ["-o", "PamServiceName=sge-sshd"])])
def test_sshd_selects_the_job_pam_service_only_where_it_takes_it_from_pam_service_name(
        tmp_path, job_pam, fake_sshd, release, options):
    """9.8+ ignore the name sge-sshd (sessions would run under "sshd", untied); 9.2 refuses the option."""
    need_root()    # the PAM file must be root's
    calls = []
    code = rshd.run([fake_sshd, "-i", "-o", "LogLevel=ERROR"], Log(), environ={}, script="/nonexistent/rshdwrapper",
                    pam_file=job_pam, execve=lambda *a: calls.append(a), root=sshd_tree(tmp_path, release))
    assert code == 0 and [c[:2] for c in calls] == [
        (fake_sshd, ["sge-sshd"] + options + ["-i", "-o", "LogLevel=ERROR"])]
    assert rshd.daemon_argv(["/usr/sbin/in.rshd", "-l"], str(tmp_path / "absent"),
                            sshd_tree(tmp_path, release)) == ["/usr/sbin/in.rshd", "-l"]   # not sshd: as it is


def test_the_option_comes_first_so_a_daemon_argument_cannot_choose_another_service(tmp_path, job_pam, fake_sshd):
    need_root()
    argv = rshd.daemon_argv([fake_sshd, "-i", "-o", "PamServiceName=sshd"], job_pam, sshd_tree(tmp_path, "10.0"))
    assert argv[:3] == ["sge-sshd", "-o", "PamServiceName=" + methods.JOB_SSHD_NAME]
    assert sgeconf.pam_service(" ".join(["/x"] + argv[1:])) == methods.JOB_SSHD_NAME    # sshd keeps the first


def test_without_the_job_pam_service_refused_on_openssh_98_too(tmp_path, fake_sshd):
    with pytest.raises(errors.WrapperError) as e:
        rshd.daemon_argv([fake_sshd, "-i"], str(tmp_path / "absent"), sshd_tree(tmp_path, "10.0"))
    assert e.value.code == errors.NO_JOB


# --- the daemon's environment ---------------------------------------------------------------

HOSTILE = {"LD_PRELOAD": "/tmp/evil.so", "LD_LIBRARY_PATH": "/tmp", "LD_AUDIT": "/tmp/a.so",
           "PYTHONPATH": "/tmp", "PYTHONHOME": "/tmp", "PYTHONSTARTUP": "/tmp/s.py", "PYTHONINSPECT": "1",
           "GCONV_PATH": "/tmp", "LOCPATH": "/tmp", "NLSPATH": "/tmp/%N", "HOSTALIASES": "/tmp/h",
           "RES_OPTIONS": "debug", "KRB5_CONFIG": "/tmp/krb5.conf", "OPENSSL_CONF": "/tmp/o",
           "HOME": "/home/evil", "BASH_ENV": "/tmp/x", "ENV": "/tmp/x", "IFS": "/", "TMPDIR": "/tmp/evil",
           "GLIBC_TUNABLES": "glibc.malloc.check=3", "MALLOC_CHECK_": "3", "PATH": "/tmp/evil:/usr/bin",
           "LANG": "/tmp/evil-locale", "LC_ALL": "../../tmp/x", "TZ": "/tmp/zone", "TERMINFO": "/tmp"}
JOB = {"SGE_TASK_ID": "undefined", "SGE_JOB_SPOOL_DIR": "/var/spool/x/8.1", "JOB_ID": "8", "JOB_NAME": "QRLOGIN",
       "NSLOTS": "4", "PE_HOSTFILE": "/var/spool/x/8.1/pe_hostfile", "LC_MESSAGES": "C", "TZ": "UTC"}


def test_daemon_environment_drops_what_steers_a_root_process():
    env = rshd.daemon_environment(dict(HOSTILE))
    assert env == {"PATH": rshd.SAFE_PATH}


def test_daemon_environment_keeps_the_job_variables():
    env = rshd.daemon_environment(dict(JOB, LANG="C.UTF-8"))
    assert env == dict(JOB, LANG="C.UTF-8", PATH=rshd.SAFE_PATH)


@settings(max_examples=300)
@given(st.dictionaries(st.text(st.characters(blacklist_characters="\0=", blacklist_categories=("Cs",)), min_size=1),
                       st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)))))
def test_daemon_environment_property(environ):
    env = rshd.daemon_environment(environ)
    assert env["PATH"] == rshd.SAFE_PATH
    for name, value in env.items():
        assert not name.startswith(("LD_", "PYTHON", "GCONV", "MALLOC", "GLIBC"))
        assert name == "PATH" or environ[name] == value
        if not name.startswith("SGE_") and name not in rshd.KEEP_NAMES and name != "PATH":
            assert "/" not in value


# --- whole runs: the source script as a subprocess ------------------------------------------

RECORDER = """#!/bin/sh
{ printf 'argv0=%s\\n' "$0"; printf 'pid=%s\\n' "$$"; env; } > "$SGE_RECORD_TO"
exit "${SGE_RECORD_EXIT:-0}"
"""


def run_script(argv, env, **kw):
    return subprocess.run([sys.executable, "-I", SCRIPT] + argv, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=30, **kw)


@pytest.fixture
def recorder(tmp_path):
    path = tmp_path / "daemon"
    path.write_text(RECORDER)
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize("code", [0, 1, 7, 255])
def test_the_daemon_replaces_the_wrapper(recorder, tmp_path, code):
    """Same PID (nothing resident), the daemon's exit status, a sanitized environment."""
    record = tmp_path / "rec"
    env = dict(JOB, LD_PRELOAD="", PYTHONPATH="/tmp", SGE_RECORD_TO=str(record), SGE_RECORD_EXIT=str(code))
    p = subprocess.Popen([sys.executable, "-I", SCRIPT, recorder], env=env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate(timeout=30)
    assert (p.returncode, out, err) == (code, b"", b"")
    seen = dict(line.split("=", 1) for line in record.read_text().splitlines() if "=" in line)
    assert seen["pid"] == str(p.pid)
    assert "PYTHONPATH" not in seen and "LD_PRELOAD" not in seen and seen["JOB_ID"] == "8"


@pytest.mark.parametrize("argv,code", [
    (["--bogus"], errors.USAGE), (["relative/daemon"], errors.USAGE), (["/nonexistent"], errors.NO_CLIENT),
    (["/etc/passwd"], errors.NO_CLIENT),
])
def test_wrapper_errors_write_nothing(argv, code):
    p = run_script(argv, {"PATH": "/usr/bin:/bin"})
    assert (p.returncode, p.stdout, p.stderr) == (code, b"", b"")


def test_exec_failure_is_71(tmp_path):
    bad = tmp_path / "notreally"
    bad.write_bytes(b"\x7fELF garbage")
    bad.chmod(0o755)
    p = run_script([str(bad)], {"PATH": "/usr/bin:/bin"})
    assert (p.returncode, p.stdout, p.stderr) == (errors.EXEC_FAILED, b"", b"")


def test_errors_on_a_terminal_stderr_only():
    master, slave = os.openpty()
    try:
        p = subprocess.Popen([sys.executable, "-I", SCRIPT, "--bogus"], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=slave)
        os.close(slave)
        assert p.wait(30) == errors.USAGE
        assert p.stdout.read() == b""
        assert b"rshdwrapper: error: unknown option --bogus" in os.read(master, 4096)
    finally:
        os.close(master)


def test_help_on_a_terminal_or_pipe_but_not_on_a_socket():
    p = subprocess.run([sys.executable, "-I", SCRIPT, "--help"], capture_output=True, timeout=30)
    assert p.returncode == 0 and b"sge-sshd" in p.stdout and p.stderr == b""
    a, b = socket.socketpair()
    with a, b:
        p = subprocess.run([sys.executable, "-I", SCRIPT, "--help"], stdin=b, stdout=b, stderr=b, timeout=30)
        b.close()
        a.settimeout(5)
        assert p.returncode == errors.USAGE
        assert a.recv(100) == b""


def test_not_isolated_a_root_entry_re_executes_itself_isolated(monkeypatch, tmp_path):
    """A root entry started by a non-isolated interpreter execs itself again with -I, logging nothing
    first (a log call could import a module from the caller's PYTHONPATH)."""
    import types
    from sgewrap.rootside import frame as rootside
    script = tmp_path / "rshdwrapper"
    script.write_text("")
    calls, logged = [], []
    fake = types.SimpleNamespace(flags=types.SimpleNamespace(isolated=0), executable="/usr/bin/python3",
                                 argv=[str(script), "--facility=daemon", "sshd"])
    monkeypatch.setattr(rootside, "sys", fake)

    class Execd(Exception):
        pass

    def execv(exe, argv):
        calls.append((exe, argv))
        raise Execd
    monkeypatch.setattr(rootside.os, "execv", execv)
    with pytest.raises(Execd):
        rootside.require_isolated(lambda *a: logged.append(a))
    assert calls == [("/usr/bin/python3", ["/usr/bin/python3", "-I", str(script), "--facility=daemon", "sshd"])]
    assert logged == []
    fake.argv = ["relative/rshdwrapper"]
    with pytest.raises(errors.WrapperError) as e:
        rootside.require_isolated(lambda *a: None)
    assert e.value.code == errors.INTERNAL


def test_hot_path_imports_little():
    code = ("import sys; sys.argv = ['rshdwrapper', '--help']\n"
            "import sgewrap.rootside.rshd\n"
            "print(','.join(sorted(sys.modules)))")
    p = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=30)
    mods = set(p.stdout.strip().split(","))
    for heavy in ("subprocess", "socket", "enum", "threading", "tempfile", "shutil", "plumbum", "shellingham",
                  "argparse", "logging", "json", "re", "signal"):
        assert heavy not in mods, heavy
