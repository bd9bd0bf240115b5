"""sgewrap.rshd (rshdwrapper): options, daemon lookup, job context, setup files, orphans, signals.

Functions are tested directly; the behaviour of a whole run (child not exec,
exit status, signal forwarding, file removed on the way out) with the source
script as a subprocess, a scratch --setup-dir and a recording stand-in daemon.
The real sshd + PAM module are in tests/loopback/test_rshd.py.
"""
import fcntl
import json
import os
import pwd
import signal
import socket
import stat
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings, strategies as st

from sgewrap import errors, jobspool, locate, rshd
from support import WRAPPERS_SRC, need_root

SCRIPT = os.path.join(WRAPPERS_SRC, "rshdwrapper")
PID_MAX = int(open("/proc/sys/kernel/pid_max").read())


def dead_pid():
    """A PID no process has: beyond pid_max."""
    return PID_MAX + 17


@pytest.fixture
def setup_dir(tmp_path):
    d = tmp_path / "run"
    d.mkdir(mode=0o755)
    d.chmod(0o755)
    return str(d)


@pytest.fixture
def spool(tmp_path):
    """A fake job spool directory: active_jobs/8.1 with addgrpid and environment."""
    for p in (tmp_path, tmp_path.parent):
        assert not os.stat(p).st_mode & 0o022 or os.stat(p).st_mode & stat.S_ISVTX
    d = tmp_path / "active_jobs" / "8.1"
    d.mkdir(parents=True)
    (d / "addgrpid").write_text("65499\n")
    (d / "environment").write_text("FOO_FROM_JOB=hello\n")
    for p in (d, d.parent):
        p.chmod(0o755)
    for f in ("addgrpid", "environment"):
        (d / f).chmod(0o644)
    return str(d)


def trust():
    return rshd.Trust()


# --- options --------------------------------------------------------------------------------


def test_defaults():
    opts = rshd.parse_args([])
    assert (opts.setup_dir, opts.facility, opts.require_job, opts.sge_root, opts.admin_users, opts.help,
            opts.daemon) == ("/var/run", "authpriv", False, None, [], False, [])


def test_all_options_and_daemon_argv():
    opts = rshd.parse_args(["--setup-dir=/tmp/x", "--facility", "daemon", "--require-job", "--sge-root=/opt/sge",
                            "--admin-user", "sgeadmin", "--admin-user=other", "/usr/sbin/sshd", "-i",
                            "-o", "LogLevel=ERROR"])
    assert opts.setup_dir == "/tmp/x" and opts.facility == "daemon" and opts.require_job
    assert opts.sge_root == "/opt/sge" and opts.admin_users == ["sgeadmin", "other"]
    assert opts.daemon == ["/usr/sbin/sshd", "-i", "-o", "LogLevel=ERROR"]


def test_double_dash_ends_options():
    assert rshd.parse_args(["--", "--weird", "-i"]).daemon == ["--weird", "-i"]


def test_daemon_options_are_not_ours():
    assert rshd.parse_args(["rshd", "--require-job"]).daemon == ["rshd", "--require-job"]
    assert not rshd.parse_args(["rshd", "--require-job"]).require_job


@pytest.mark.parametrize("argv", [
    ["--bogus"], ["--setup-dir"], ["--setup-dir=relative"], ["--sge-root=sge"], ["--facility=kern"],
    ["--facility"], ["--require-job=yes"], ["--help=1"], ["--admin-user="],
])
def test_bad_options(argv):
    with pytest.raises(errors.WrapperError) as e:
        rshd.parse_args(argv)
    assert e.value.code == errors.USAGE


@pytest.mark.parametrize("facility", rshd.FACILITIES)
def test_every_facility_exists_in_syslog(facility):
    import syslog
    assert isinstance(getattr(syslog, "LOG_" + facility.upper()), int)


def test_usage_names_every_option_and_code():
    text = rshd.usage()
    for word in ("--setup-dir", "--facility", "--require-job", "--sge-root", "--admin-user", "--help",
                 "64", "69", "70", "71", "72"):
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


@pytest.fixture
def fake_sge_root(tmp_path):
    root = tmp_path / "sge"
    arc = locate.arch_guesses()[0]
    bindir = root / "utilbin" / arc
    bindir.mkdir(parents=True)
    for name in ("rshd", "rlogind"):
        (bindir / name).write_text("#!/bin/true\n")
        (bindir / name).chmod(0o755)
    (root / "default" / "common").mkdir(parents=True)
    wrappers = root / "util" / "resources" / "wrappers"
    wrappers.mkdir(parents=True)
    (wrappers / "rshdwrapper").write_text("")
    return root


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


def test_sge_root_from_the_installed_location(fake_sge_root):
    script = fake_sge_root / "util" / "resources" / "wrappers" / "rshdwrapper"
    assert jobspool.sge_root_from(str(script)) == str(fake_sge_root)


def test_sge_root_through_a_symlinked_util_directory(fake_sge_root, tmp_path):
    """Debian: /var/lib/gridengine/util -> /usr/share/gridengine/util."""
    elsewhere = tmp_path / "share"
    elsewhere.mkdir()
    os.rename(fake_sge_root / "util", elsewhere / "util")
    (fake_sge_root / "util").symlink_to(elsewhere / "util")
    script = fake_sge_root / "util" / "resources" / "wrappers" / "rshdwrapper"
    assert jobspool.sge_root_from(str(script)) == str(fake_sge_root)


def test_no_sge_root_without_markers_or_layout(tmp_path):
    wrappers = tmp_path / "util" / "resources" / "wrappers"
    wrappers.mkdir(parents=True)
    assert jobspool.sge_root_from(str(wrappers / "rshdwrapper"), ()) is None      # no utilbin, no bootstrap
    (tmp_path / "utilbin").mkdir()
    assert jobspool.sge_root_from(str(wrappers / "rshdwrapper"), ()) == str(tmp_path)
    assert jobspool.sge_root_from(str(tmp_path / "rshdwrapper"), ()) is None      # not in util/resources/wrappers
    assert jobspool.sge_root_from("rshdwrapper", ()) is None
    assert jobspool.sge_root_from("", ()) is None


def test_packaged_sge_root_is_the_fallback(tmp_path):
    packaged = tmp_path / "gridengine"
    assert jobspool.sge_root_from(str(tmp_path / "x" / "rshdwrapper"), (str(packaged),)) is None
    write_bootstrap(packaged, "default", "nobody")
    assert jobspool.sge_root_from(str(tmp_path / "x" / "rshdwrapper"), (str(packaged),)) == str(packaged)
    assert jobspool.FALLBACK_SGE_ROOTS == ("/var/lib/gridengine",)


def write_bootstrap(root, cell, admin, mode=0o644):
    common = root / cell / "common"
    common.mkdir(parents=True, exist_ok=True)
    path = common / "bootstrap"
    path.write_text("# Version: 8.1.9\nadmin_user              %s\ndefault_domain none\n" % admin)
    path.chmod(mode)
    return path


def test_admin_user_from_every_cell_bootstrap(tmp_path):
    me = pwd.getpwuid(os.geteuid()).pw_name
    write_bootstrap(tmp_path, "default", me)
    write_bootstrap(tmp_path, "other", "none")
    assert jobspool.admin_uids(str(tmp_path)) == {os.geteuid()}


def test_group_writable_or_foreign_bootstrap_is_ignored(tmp_path):
    me = pwd.getpwuid(os.geteuid()).pw_name
    write_bootstrap(tmp_path, "default", me, mode=0o664)
    logged = []
    assert jobspool.admin_uids(str(tmp_path), log=lambda p, m: logged.append(m)) == set()
    assert "bootstrap" in logged[0]


def test_bootstrap_naming_someone_else_than_its_owner_is_ignored(tmp_path):
    need_root()
    path = write_bootstrap(tmp_path, "default", "nobody")
    os.chown(path, 1, 1)      # daemon: neither root nor nobody
    assert jobspool.admin_uids(str(tmp_path), log=lambda p, m: None) == set()
    os.chown(path, 0, 0)
    assert jobspool.admin_uids(str(tmp_path)) == {pwd.getpwnam("nobody").pw_uid}


def test_admin_user_option(tmp_path):
    assert jobspool.admin_uids(None, ["nobody"]) == {pwd.getpwnam("nobody").pw_uid}
    logged = []
    assert jobspool.admin_uids(None, ["no-such-user-xyz"], log=lambda p, m: logged.append(m)) == set()
    assert logged


# --- the job context ------------------------------------------------------------------------


def test_valid_job_context(spool):
    ctx = rshd.job_context({"SGE_JOB_SPOOL_DIR": spool}, trust())
    assert (ctx.spool, ctx.gid) == (spool, 65499)


def test_symlinked_spool_dir_is_given_canonical(spool, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(spool)
    assert rshd.job_context({"SGE_JOB_SPOOL_DIR": str(link)}, trust()).spool == spool


def no_job(environ, why):
    with pytest.raises(rshd.NoJob) as e:
        rshd.job_context(environ, trust())
    assert why in str(e.value)


def test_no_job_without_variable():
    no_job({}, "not set")
    no_job({"SGE_JOB_SPOOL_DIR": ""}, "not set")


def test_no_job_relative(spool):
    no_job({"SGE_JOB_SPOOL_DIR": "active_jobs/8.1"}, "not absolute")


@pytest.mark.parametrize("bad", ["/tmp/x\n/etc", "/tmp/x\r", "/tmp/\x1b[31m", "/tmp/\x7f"])
def test_no_job_control_characters(bad):
    no_job({"SGE_JOB_SPOOL_DIR": bad}, "control characters")


def test_no_job_symlink_to_a_name_with_newline(spool, tmp_path):
    evil = tmp_path / "a\nb"
    os.rename(spool, evil)
    (tmp_path / "link").symlink_to(evil)
    no_job({"SGE_JOB_SPOOL_DIR": str(tmp_path / "link")}, "control characters")


def test_no_job_too_long_for_the_pam_module(tmp_path):
    no_job({"SGE_JOB_SPOOL_DIR": "/" + "a" * 1011}, "longer than")


def test_no_job_missing_or_not_a_directory(spool):
    no_job({"SGE_JOB_SPOOL_DIR": spool + "/nope"}, "No such file")
    no_job({"SGE_JOB_SPOOL_DIR": spool + "/addgrpid"}, "not a directory")


@pytest.mark.parametrize("name", ["addgrpid", "environment"])
def test_no_job_without_each_file(spool, name):
    os.unlink(os.path.join(spool, name))
    no_job({"SGE_JOB_SPOOL_DIR": spool}, name)


@pytest.mark.parametrize("name", ["addgrpid", "environment"])
def test_no_job_when_a_file_is_a_symlink(spool, tmp_path, name):
    target = tmp_path / "elsewhere"
    target.write_text("42\n")
    os.unlink(os.path.join(spool, name))
    os.symlink(target, os.path.join(spool, name))
    no_job({"SGE_JOB_SPOOL_DIR": spool}, "not a regular file")


@pytest.mark.parametrize("content", ["0\n", "abc\n", "-5\n", "99999999999\n", "", "4294967295\n", "12 13\n",
                                     "\u0661\u0662\n"])
def test_no_job_bad_addgrpid(spool, content):
    with open(os.path.join(spool, "addgrpid"), "w", encoding="utf-8") as f:
        f.write(content)
    no_job({"SGE_JOB_SPOOL_DIR": spool}, "not a group id")


@pytest.mark.parametrize("target,mode,why", [
    ("spool", 0o777, "writable by group or others"),
    ("spool", 0o775, "writable by group or others"),
    ("parent", 0o777, "above the job spool directory is writable"),
    ("addgrpid", 0o666, "writable by group or others"),
    ("environment", 0o664, "writable by group or others"),
])
def test_no_job_when_writable_by_others(spool, target, mode, why):
    path = {"spool": spool, "parent": os.path.dirname(spool)}.get(target, os.path.join(spool, target))
    os.chmod(path, mode)
    no_job({"SGE_JOB_SPOOL_DIR": spool}, why)


def test_sticky_world_writable_parent_is_fine(spool):
    os.chmod(os.path.dirname(spool), 0o1777)
    assert rshd.job_context({"SGE_JOB_SPOOL_DIR": spool}, trust()).gid == 65499


def test_no_job_when_owned_by_a_user(spool):
    """An ordinary user's directory (here: nobody's) must not pass, or she picks any gid."""
    need_root()
    os.chown(spool, pwd.getpwnam("nobody").pw_uid, -1)
    no_job({"SGE_JOB_SPOOL_DIR": spool}, "owned by uid %d" % pwd.getpwnam("nobody").pw_uid)


@pytest.mark.parametrize("target", ["parent", "addgrpid", "environment"])
def test_no_job_when_anything_is_owned_by_a_user(spool, target):
    need_root()
    path = os.path.dirname(spool) if target == "parent" else os.path.join(spool, target)
    os.chown(path, pwd.getpwnam("nobody").pw_uid, -1)
    no_job({"SGE_JOB_SPOOL_DIR": spool}, "owned by uid")


def test_admin_owned_spool_tree_is_trusted(spool):
    need_root()
    nobody = pwd.getpwnam("nobody").pw_uid
    for path in (spool, os.path.dirname(spool), os.path.join(spool, "addgrpid")):
        os.chown(path, nobody, -1)
    assert rshd.job_context({"SGE_JOB_SPOOL_DIR": spool}, rshd.Trust(None, ["nobody"])).gid == 65499


def test_admin_from_bootstrap_is_trusted(spool, tmp_path):
    need_root()
    nobody = pwd.getpwnam("nobody").pw_uid
    os.chown(spool, nobody, -1)
    root = tmp_path / "sge"
    write_bootstrap(root, "default", "nobody")
    assert rshd.job_context({"SGE_JOB_SPOOL_DIR": spool}, rshd.Trust(str(root))).gid == 65499
    with pytest.raises(rshd.NoJob) as e:
        rshd.job_context({"SGE_JOB_SPOOL_DIR": spool}, rshd.Trust(None))
    assert "give --sge-root or --admin-user" in str(e.value)


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


# --- exit status ----------------------------------------------------------------------------


@pytest.mark.parametrize("status,code", [(0, 0), (7 << 8, 7), (255 << 8, 255), (signal.SIGTERM, 143),
                                         (signal.SIGKILL, 137), (signal.SIGSEGV | 0x80, 139)])
def test_exit_code(status, code):
    assert rshd.exit_code(status) == code


# --- setup files ----------------------------------------------------------------------------


def locked_elsewhere(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_create_setup_file(setup_dir, spool):
    path = rshd.setup_path(setup_dir, 4711)
    old = os.umask(0o077)
    try:
        fd = rshd.create_setup_file(path, spool)
    finally:
        os.umask(old)
    try:
        st_ = os.lstat(path)
        assert open(path, "rb").read() == spool.encode() + b"\n"
        assert stat.S_IMODE(st_.st_mode) == 0o644 and stat.S_ISREG(st_.st_mode)
        assert st_.st_uid == os.geteuid()
        assert locked_elsewhere(path)
        assert not os.get_inheritable(fd)
    finally:
        rshd.remove_setup_file(path, fd)
    assert not os.path.lexists(path)


def test_create_never_follows_or_overwrites(setup_dir, spool, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    path = rshd.setup_path(setup_dir, 4711)
    os.symlink(victim, path)
    with pytest.raises(FileExistsError):
        rshd.create_setup_file(path, spool)
    assert victim.read_text() == "precious\n" and os.path.islink(path)
    os.unlink(path)
    open(path, "w").write("old\n")
    with pytest.raises(FileExistsError):
        rshd.create_setup_file(path, spool)
    assert open(path).read() == "old\n"


def test_remove_stale_symlink_removes_only_the_link(setup_dir, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    path = rshd.setup_path(setup_dir, 4711)
    os.symlink(victim, path)
    rshd.remove_stale(path)
    assert not os.path.lexists(path) and victim.read_text() == "precious\n"


def test_remove_stale_regular_file_and_missing(setup_dir):
    path = rshd.setup_path(setup_dir, 4711)
    rshd.remove_stale(path)                 # nothing there: fine
    open(path, "w").write("/old\n")
    rshd.remove_stale(path)
    assert not os.path.lexists(path)


def test_remove_stale_refuses_a_directory(setup_dir):
    path = rshd.setup_path(setup_dir, 4711)
    os.mkdir(path)
    with pytest.raises(rshd.SetupError):
        rshd.remove_stale(path)
    assert os.path.isdir(path)


HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def holder():
    """Start processes that create+lock a file and hold it until closed: like a live wrapper."""
    procs = []

    def start(path):
        p = subprocess.Popen([sys.executable, "-c", HOLDER, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
        assert p.stdout.readline() == "locked\n"
        procs.append(p)
        return p
    yield start
    for p in procs:
        p.stdin.close()
        p.wait(10)


def test_remove_stale_refuses_a_file_locked_by_a_live_process(setup_dir, holder):
    path = rshd.setup_path(setup_dir, 4711)
    holder(path)
    t = time.monotonic()
    with pytest.raises(rshd.SetupError):
        rshd.remove_stale(path)
    assert 0.9 < time.monotonic() - t < 5
    assert os.path.exists(path)


def test_check_setup_dir(setup_dir, tmp_path):
    rshd.check_setup_dir(setup_dir)
    os.chmod(setup_dir, 0o777)
    with pytest.raises(rshd.SetupError):
        rshd.check_setup_dir(setup_dir)
    os.chmod(setup_dir, 0o1777)
    with pytest.raises(rshd.SetupError):
        rshd.check_setup_dir(setup_dir)
    with pytest.raises(rshd.SetupError):
        rshd.check_setup_dir(str(tmp_path / "missing"))
    (tmp_path / "file").write_text("")
    with pytest.raises(rshd.SetupError):
        rshd.check_setup_dir(str(tmp_path / "file"))


def test_check_setup_dir_owned_by_someone_else():
    need_root()
    with pytest.raises(rshd.SetupError):
        rshd.check_setup_dir("/var/lib/gridengine" if os.path.isdir("/var/lib/gridengine") else "/nonexistent")


# --- orphans --------------------------------------------------------------------------------


def reaped_pid():
    p = subprocess.Popen(["/bin/true"])
    p.wait()
    return p.pid


def test_clean_orphans_removes_only_dead_unlocked_files(setup_dir, holder, tmp_path):
    def make(name, content="/x\n"):
        path = os.path.join(setup_dir, name)
        with open(path, "w") as f:
            f.write(content)
        return path
    dead = [dead_pid(), dead_pid() + 1, reaped_pid()]
    for pid in dead:
        make("sge-qrsh-setup.%d" % pid)
    alive_unlocked = make("sge-qrsh-setup.%d" % os.getpid())        # alive: kept, lock or not
    live = holder(os.path.join(setup_dir, "sge-qrsh-setup.PLACEHOLDER"))
    live_path = os.path.join(setup_dir, "sge-qrsh-setup.%d" % live.pid)
    os.rename(os.path.join(setup_dir, "sge-qrsh-setup.PLACEHOLDER"), live_path)
    locked_dead = os.path.join(setup_dir, "sge-qrsh-setup.%d" % (dead_pid() + 2))
    holder(locked_dead)                                             # dead name, but someone holds it: kept
    others = [make("sge-qrsh-setup.abc"), make("sge-qrsh-setup.12x"), make("sge-qrsh-setup."),
              make("other.%d" % dead_pid()), make("sge-qrsh-setup.\u0661\u0662")]
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    link = os.path.join(setup_dir, "sge-qrsh-setup.%d" % (dead_pid() + 3))
    os.symlink(victim, link)
    directory = os.path.join(setup_dir, "sge-qrsh-setup.%d" % (dead_pid() + 4))
    os.mkdir(directory)

    removed = rshd.clean_orphans(setup_dir, own_pid=os.getpid())

    assert sorted(removed) == sorted(dead + [dead_pid() + 3])
    for pid in dead:
        assert not os.path.lexists(os.path.join(setup_dir, "sge-qrsh-setup.%d" % pid))
    assert not os.path.lexists(link) and victim.read_text() == "precious\n"
    for kept in [alive_unlocked, live_path, locked_dead, directory] + others:
        assert os.path.lexists(kept), kept


def test_clean_orphans_skips_its_own_pid(setup_dir):
    path = os.path.join(setup_dir, "sge-qrsh-setup.%d" % dead_pid())
    open(path, "w").close()
    assert rshd.clean_orphans(setup_dir, own_pid=dead_pid()) == []
    assert os.path.exists(path)


def test_orphan_replaced_while_being_checked_is_kept(setup_dir, monkeypatch):
    """The name now refers to another inode (a new owner): the cleaner must not unlink it."""
    path = os.path.join(setup_dir, "sge-qrsh-setup.%d" % dead_pid())
    open(path, "w").write("/old\n")
    real_lstat = os.lstat

    def lstat_after_replacement(p, *a, **kw):
        if p == path and not getattr(lstat_after_replacement, "done", False):
            lstat_after_replacement.done = True
            os.unlink(path)
            open(path, "w").write("/new\n")
        return real_lstat(p, *a, **kw)
    monkeypatch.setattr(os, "lstat", lstat_after_replacement)
    assert rshd.clean_orphans(setup_dir) == []
    assert open(path).read() == "/new\n"


STRESS = r"""
import os, sys, time
sys.path.insert(0, sys.argv[3])
from sgewrap import rshd
setup_dir, rounds = sys.argv[1], int(sys.argv[2])
pid = os.getpid()
bad = 0
for i in range(rounds):
    rshd.clean_orphans(setup_dir, pid)
    path = rshd.setup_path(setup_dir, pid)
    rshd.remove_stale(path)
    fd = rshd.create_setup_file(path, "/spool/%d/%d" % (pid, i))
    for _ in range(3):
        rshd.clean_orphans(setup_dir, pid)
        if open(path).read() != "/spool/%d/%d\n" % (pid, i):
            bad += 1
    # leave an orphan now and then: a file of a PID nobody has
    if i % 3 == 0:
        open(os.path.join(setup_dir, "sge-qrsh-setup.%d" % (%(pidmax)d + pid * 100 + i)), "w").close()
    rshd.remove_setup_file(path, fd)
print(bad)
"""


def test_many_wrappers_at_once_never_lose_a_live_file(setup_dir):
    """32 processes cleaning and creating at the same time: every live file survives, orphans go."""
    code = STRESS.replace("%(pidmax)d", str(PID_MAX))
    procs = [subprocess.Popen([sys.executable, "-c", code, setup_dir, "30", WRAPPERS_SRC], stdout=subprocess.PIPE,
                              text=True) for _ in range(32)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert [int(o) for o in outs] == [0] * 32
    rshd.clean_orphans(setup_dir)
    assert os.listdir(setup_dir) == []


# --- whole runs: the source script as a subprocess ------------------------------------------

RECORDER = """#!%s
import json, os, signal, sys, time
out = os.environ["SGE_RECORD_TO"]
setup = os.path.join(os.environ["SGE_RECORD_SETUP_DIR"], "sge-qrsh-setup.%%d" %% os.getppid())
try:
    content = open(setup).read()
except OSError:
    content = None
status = open("/proc/self/status").read()
rec = {"pid": os.getpid(), "ppid": os.getppid(), "setup": content, "env": dict(os.environ),
       "ignored": int(status.split("SigIgn:")[1].split()[0], 16), "argv": sys.argv}
mode = os.environ.get("SGE_RECORD_MODE", "exit")
if mode == "signals":
    def got(sig, frame):
        rec["signal"] = sig
        json.dump(rec, open(out, "w"))
        os._exit(40 + sig)
    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
              signal.SIGALRM, signal.SIGPROF):
        signal.signal(s, got)
json.dump(rec, open(out + ".tmp", "w"))
os.rename(out + ".tmp", out)
if mode == "signals":
    while True:
        time.sleep(1)
if mode == "sleep":
    time.sleep(60)
sys.exit(int(os.environ.get("SGE_RECORD_EXIT", "0")))
""" % sys.executable


@pytest.fixture
def recorder(tmp_path):
    path = tmp_path / "daemon"
    path.write_text(RECORDER)
    path.chmod(0o755)
    return str(path)


def wrapper_env(tmp_path, setup_dir, spool=None, **extra):
    env = {"PATH": "/usr/bin:/bin", "SGE_RECORD_TO": str(tmp_path / "rec.json"), "SGE_RECORD_SETUP_DIR": setup_dir,
           "JOB_ID": "8", "SGE_TASK_ID": "undefined"}
    if spool:
        env["SGE_JOB_SPOOL_DIR"] = spool
    env.update(extra)
    return env


def start(setup_dir, argv, env, **kw):
    return subprocess.Popen([sys.executable, "-I", SCRIPT, "--setup-dir=" + setup_dir] + argv, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def record(tmp_path):
    path = tmp_path / "rec.json"
    return json.loads(path.read_text()) if path.exists() else None


def wait_record(tmp_path, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rec = record(tmp_path)
        if rec:
            return rec
        time.sleep(0.01)
    raise AssertionError("the daemon never ran")


@pytest.mark.parametrize("code", [0, 1, 7, 255])
def test_daemon_is_a_child_sees_the_file_and_its_status_is_ours(setup_dir, spool, recorder, tmp_path, code):
    p = start(setup_dir, [recorder], wrapper_env(tmp_path, setup_dir, spool, SGE_RECORD_EXIT=str(code)))
    out, err = p.communicate(timeout=30)
    rec = record(tmp_path)
    assert p.returncode == code
    assert rec["ppid"] == p.pid                         # spawned, not exec'd: the PAM module needs this
    assert rec["setup"] == spool + "\n"
    assert os.listdir(setup_dir) == []                  # removed on the way out
    assert (out, err) == (b"", b"")


def test_daemon_killed_by_a_signal_gives_128_plus_n(setup_dir, spool, tmp_path):
    p = start(setup_dir, ["/usr/bin/python3", "-c", "import os; os.kill(os.getpid(), 9)"],
              wrapper_env(tmp_path, setup_dir, spool))
    assert p.wait(30) == 137
    assert os.listdir(setup_dir) == []


def test_daemon_environment_as_seen_by_the_daemon(setup_dir, spool, tmp_path):
    env = wrapper_env(tmp_path, setup_dir, spool, **dict((k, v) for k, v in HOSTILE.items() if k != "LD_PRELOAD"))
    p = start(setup_dir, ["/usr/bin/env"], env)
    stdout, _ = p.communicate(timeout=30)
    seen = dict(line.split("=", 1) for line in stdout.decode().splitlines())
    assert seen["PATH"] == rshd.SAFE_PATH
    assert seen["SGE_JOB_SPOOL_DIR"] == spool and seen["JOB_ID"] == "8" and seen["SGE_TASK_ID"] == "undefined"
    assert not [k for k in seen if k.startswith(("LD_", "PYTHON")) or k in HOSTILE and k != "PATH"]


def test_no_job_context_runs_the_daemon_without_a_file(setup_dir, recorder, tmp_path):
    p = start(setup_dir, [recorder], wrapper_env(tmp_path, setup_dir, None, SGE_RECORD_EXIT="3"))
    assert p.wait(30) == 3
    rec = record(tmp_path)
    assert rec["ppid"] == p.pid and rec["setup"] is None
    assert os.listdir(setup_dir) == []


def test_require_job_refuses_without_job_context(setup_dir, recorder, tmp_path):
    p = start(setup_dir, ["--require-job", recorder], wrapper_env(tmp_path, setup_dir, "/nonexistent"))
    out, err = p.communicate(timeout=30)
    assert p.returncode == errors.NO_JOB and record(tmp_path) is None and (out, err) == (b"", b"")


def test_require_job_refuses_when_the_setup_dir_is_unsafe(setup_dir, spool, recorder, tmp_path):
    os.chmod(setup_dir, 0o777)
    p = start(setup_dir, ["--require-job", recorder], wrapper_env(tmp_path, setup_dir, spool))
    assert p.wait(30) == errors.NO_JOB and record(tmp_path) is None
    assert os.listdir(setup_dir) == []


def test_unsafe_setup_dir_without_require_job_runs_plain(setup_dir, spool, recorder, tmp_path):
    os.chmod(setup_dir, 0o777)
    p = start(setup_dir, [recorder], wrapper_env(tmp_path, setup_dir, spool))
    assert p.wait(30) == 0
    assert record(tmp_path)["setup"] is None and os.listdir(setup_dir) == []


@pytest.mark.parametrize("argv,code", [
    (["--bogus"], errors.USAGE), (["relative/daemon"], errors.USAGE), (["/nonexistent"], errors.NO_CLIENT),
    (["/etc/passwd"], errors.NO_CLIENT),
])
def test_wrapper_errors_write_nothing(setup_dir, spool, tmp_path, argv, code):
    p = start(setup_dir, argv, wrapper_env(tmp_path, setup_dir, spool))
    out, err = p.communicate(timeout=30)
    assert (p.returncode, out, err) == (code, b"", b"")
    assert os.listdir(setup_dir) == []


def test_exec_failure_is_71_and_leaves_no_file(setup_dir, spool, tmp_path):
    bad = tmp_path / "notreally"
    bad.write_bytes(b"\x7fELF garbage")
    bad.chmod(0o755)
    p = start(setup_dir, [str(bad)], wrapper_env(tmp_path, setup_dir, spool))
    out, err = p.communicate(timeout=30)
    assert (p.returncode, out, err) == (errors.EXEC_FAILED, b"", b"")
    assert os.listdir(setup_dir) == []


def test_errors_on_a_terminal_stderr_only(setup_dir, tmp_path):
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
    assert p.returncode == 0 and b"--require-job" in p.stdout and p.stderr == b""
    a, b = socket.socketpair()
    with a, b:
        p = subprocess.run([sys.executable, "-I", SCRIPT, "--help"], stdin=b, stdout=b, stderr=b, timeout=30)
        b.close()
        a.settimeout(5)
        assert p.returncode == errors.USAGE
        assert a.recv(100) == b""


FORWARDED = ["SIGTERM", "SIGHUP", "SIGINT", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGPROF"]


@pytest.mark.parametrize("name", FORWARDED)
def test_signals_are_forwarded_to_the_daemon(setup_dir, spool, recorder, tmp_path, name):
    sig = getattr(signal, name)
    p = start(setup_dir, [recorder], wrapper_env(tmp_path, setup_dir, spool, SGE_RECORD_MODE="signals"))
    rec = wait_record(tmp_path)
    assert os.path.exists(rshd.setup_path(setup_dir, p.pid))
    os.unlink(tmp_path / "rec.json")
    p.send_signal(sig)
    assert p.wait(30) == 40 + sig
    assert wait_record(tmp_path)["signal"] == sig
    assert rec["ppid"] == p.pid
    assert os.listdir(setup_dir) == []


def test_a_daemon_dying_of_the_forwarded_signal(setup_dir, spool, recorder, tmp_path):
    p = start(setup_dir, [recorder], wrapper_env(tmp_path, setup_dir, spool, SGE_RECORD_MODE="sleep"))
    wait_record(tmp_path)
    p.send_signal(signal.SIGTERM)
    assert p.wait(30) == 128 + signal.SIGTERM
    assert os.listdir(setup_dir) == []


def test_a_signal_ignored_by_the_shepherd_stays_ignored(setup_dir, spool, recorder, tmp_path):
    def ignore_usr1():
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    p = start(setup_dir, [recorder], wrapper_env(tmp_path, setup_dir, spool), preexec_fn=ignore_usr1)
    assert p.wait(30) == 0
    ignored = record(tmp_path)["ignored"]
    assert ignored & (1 << (signal.SIGUSR1 - 1))
    assert not ignored & (1 << (signal.SIGTERM - 1))


def test_daemon_gets_default_sigpipe_although_python_ignores_it(setup_dir, tmp_path):
    p = start(setup_dir, ["/usr/bin/grep", "SigIgn", "/proc/self/status"], wrapper_env(tmp_path, setup_dir))
    out, _ = p.communicate(timeout=30)
    ignored = int(out.split()[1], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1)) and not ignored & (1 << (signal.SIGXFSZ - 1))


def test_sigkilled_wrapper_leaves_an_orphan_the_next_run_removes(setup_dir, spool, recorder, tmp_path):
    p = start(setup_dir, [recorder], wrapper_env(tmp_path, setup_dir, spool, SGE_RECORD_MODE="sleep"))
    rec = wait_record(tmp_path)
    p.kill()
    p.wait(30)
    os.kill(rec["pid"], signal.SIGKILL)
    orphan = rshd.setup_path(setup_dir, p.pid)
    assert os.path.exists(orphan)
    os.unlink(tmp_path / "rec.json")
    q = start(setup_dir, [recorder], wrapper_env(tmp_path, setup_dir, spool))
    assert q.wait(30) == 0
    assert os.listdir(setup_dir) == []


def test_hot_path_imports_little():
    code = ("import sys; sys.argv = ['rshdwrapper', '--help']\n"
            "import sgewrap.rshd\n"
            "print(','.join(sorted(sys.modules)))")
    p = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=30)
    mods = set(p.stdout.strip().split(","))
    for heavy in ("subprocess", "socket", "enum", "threading", "tempfile", "shutil", "plumbum", "shellingham",
                  "argparse", "logging", "json", "re"):
        assert heavy not in mods, heavy
