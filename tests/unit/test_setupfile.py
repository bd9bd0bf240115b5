"""sgewrap.rootside.setupfile: the pam_sge-qrsh-setup files, and what another user can do to them (nothing).

As root (the files are root's and their liveness is "this very process runs as
root"); the attacker is the unprivileged user ``nobody``, run through runuser.
The real sshd and PAM module reading these files: tests/loopback/test_job_sshd.py.
"""
import os
import subprocess
import sys
import threading
import time

import pytest

from lib import need_root, wait_until
from sgewrap.rootside import procs, setupfile

pytestmark = pytest.mark.root
ATTACKER = "nobody"


@pytest.fixture
def setup_dir():
    """A root-owned 0755 directory other users can look into, like /var/run."""
    need_root()
    import shutil
    import tempfile
    d = tempfile.mkdtemp(prefix="sgewrap-setup.", dir="/run")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d)


def names(setup_dir):
    return sorted(n for n in os.listdir(setup_dir) if n.startswith(setupfile.PREFIX))


def as_attacker(code, *args):
    """Python ``code`` run as the unprivileged attacker; its CompletedProcess."""
    return subprocess.run(["/usr/sbin/runuser", "-u", ATTACKER, "--", sys.executable, "-I", "-c", code] + list(args),
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def sleeper():
    """A live root process other than us (its PID names a setup file)."""
    proc = subprocess.Popen(["/bin/sleep", "300"])
    yield proc
    proc.kill()
    proc.wait()


def dead_pid():
    proc = subprocess.Popen(["/bin/true"])
    proc.wait()
    return proc.pid


def test_a_file_names_the_spool_first_and_its_process_second(setup_dir, sleeper):
    path = setupfile.create(sleeper.pid, "/var/spool/x/active_jobs/8.1", setup_dir)
    assert path == os.path.join(setup_dir, "sge-qrsh-setup.%d" % sleeper.pid)
    st = os.lstat(path)
    assert (st.st_uid, st.st_mode & 0o7777) == (0, 0o600)
    first, second = open(path).read().splitlines()
    assert first == "/var/spool/x/active_jobs/8.1"          # what the module reads (fgets, one line)
    assert second == "sgewrap %d %d" % (sleeper.pid, procs.stat_of(sleeper.pid).start)


def test_release_only_the_named_process_own_file_alive_or_gone(setup_dir, sleeper):
    start = procs.stat_of(sleeper.pid).start
    setupfile.create(sleeper.pid, "/spool/8.1", setup_dir)
    assert setupfile.release(os.getpid(), start, setup_dir) is None
    assert setupfile.release(sleeper.pid, start + 1, setup_dir) is None     # a reused PID: not its file
    sleeper.kill()
    sleeper.wait()
    assert setupfile.release(sleeper.pid, start, setup_dir)[0] == "/spool/8.1"      # the spool it named
    assert names(setup_dir) == []


def test_sweep_keeps_live_files_and_removes_every_stale_kind(setup_dir, sleeper, tmp_path):
    setupfile.create(sleeper.pid, "/spool/live", setup_dir)
    dead = dead_pid()
    with open(os.path.join(setup_dir, "sge-qrsh-setup.%d" % dead), "w") as f:
        f.write("/spool/dead\nsgewrap %d 1\n" % dead)
    # the PID of a live process, but another start time: the PID was reused
    with open(os.path.join(setup_dir, "sge-qrsh-setup.%d" % os.getpid()), "w") as f:
        f.write("/spool/reused\nsgewrap %d 1\n" % os.getpid())
    # Grid Engine's Perl rshd-wrapper writes no identity: live while its PID runs as root
    with open(os.path.join(setup_dir, "sge-qrsh-setup.%d" % os.getppid()), "w") as f:
        f.write("/spool/perl\n")
    # a planted link is removed, never followed
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    os.symlink(target, os.path.join(setup_dir, "sge-qrsh-setup.%d" % dead_pid()))
    removed = setupfile.sweep(setup_dir)
    assert len(removed) == 3
    assert names(setup_dir) == sorted(["sge-qrsh-setup.%d" % sleeper.pid, "sge-qrsh-setup.%d" % os.getppid()])
    assert target.read_text() == "keep me\n"


def test_a_users_process_on_a_stale_files_pid_does_not_keep_it_alive(setup_dir):
    """Liveness is a root process of that PID and start time: a user who occupies the PID of a
    killed session (fork until it comes round) keeps nothing alive."""
    proc = subprocess.Popen(["/usr/sbin/runuser", "-u", ATTACKER, "--", "/bin/sleep", "300"])
    try:
        def child():
            return next((int(p) for p in os.listdir("/proc") if p.isdigit() and procs.stat_of(int(p)) is not None
                         and procs.stat_of(int(p)).ppid == proc.pid), None)
        victim = wait_until(child, 10, 0.01) or proc.pid
        for text in ("/spool/x\n", "/spool/x\nsgewrap %d %d\n" % (victim, procs.stat_of(victim).start)):
            with open(os.path.join(setup_dir, "sge-qrsh-setup.%d" % victim), "w") as f:
                f.write(text)
            assert procs.real_uid(victim) != 0
            assert setupfile.sweep(setup_dir) == ["sge-qrsh-setup.%d" % victim]
    finally:
        proc.kill()
        proc.wait()


def test_a_stale_file_of_our_own_pid_is_replaced(setup_dir, sleeper):
    path = os.path.join(setup_dir, "sge-qrsh-setup.%d" % sleeper.pid)
    with open(path, "w") as f:
        f.write("/spool/old-session\nsgewrap %d 1\n" % sleeper.pid)
    setupfile.create(sleeper.pid, "/spool/new", setup_dir)
    assert open(path).read().splitlines()[0] == "/spool/new"
    # a second hook call of the same connection is harmless; another spool for a live file is refused
    setupfile.create(sleeper.pid, "/spool/new", setup_dir)
    with pytest.raises(setupfile.SetupError):
        setupfile.create(sleeper.pid, "/spool/other", setup_dir)


@pytest.mark.parametrize("spool", ["/spool/a\nb", "/" + "a" * 1011])
def test_what_the_module_cannot_read_is_refused(setup_dir, sleeper, spool):
    with pytest.raises(setupfile.SetupError):
        setupfile.create(sleeper.pid, spool, setup_dir)
    assert names(setup_dir) == []


@pytest.mark.parametrize("unsafe", ["group-writable", "user-owned", "symlink-to-user-dir"])
def test_an_unsafe_setup_directory_is_refused(tmp_path, sleeper, unsafe):
    need_root()
    os.chmod(tmp_path, 0o755)
    d = tmp_path / "run"
    d.mkdir()
    if unsafe == "group-writable":
        d.chmod(0o775)
    elif unsafe == "user-owned":
        os.chown(d, 65534, -1)
    else:
        os.chown(d, 65534, -1)
        os.symlink(d, tmp_path / "link")
        d = tmp_path / "link"
    with pytest.raises(setupfile.SetupError):
        setupfile.create(sleeper.pid, "/spool/x", str(d))


def test_the_debian_var_run_link_is_followed_when_root_owns_it(tmp_path, sleeper):
    need_root()
    os.chmod(tmp_path, 0o755)
    real = tmp_path / "run"
    real.mkdir(mode=0o755)
    os.symlink(real, tmp_path / "varrun")
    setupfile.create(sleeper.pid, "/spool/x", str(tmp_path / "varrun"))
    assert names(str(real)) == ["sge-qrsh-setup.%d" % sleeper.pid]


# --- the second user attacks ------------------------------------------------------------------

ATTACK = r"""
import fcntl, os, sys
d = sys.argv[1]
report = []
for name in sorted(os.listdir(d)):
    path = os.path.join(d, name)
    for flags in (os.O_RDONLY, os.O_WRONLY):
        try:
            fd = os.open(path, flags | os.O_NONBLOCK)
        except OSError as err:
            report.append("%s open %s" % (name, err.errno))
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            report.append("%s LOCKED" % name)
        except OSError as err:
            report.append("%s flock %s" % (name, err.errno))
for name in ("sge-qrsh-setup.1", "sge-qrsh-setup.%d" % os.getpid(), ".sgewrap-setup.lock"):
    try:
        os.symlink("/etc/shadow", os.path.join(d, name + "x"))
        report.append("%s PLANTED" % name)
    except OSError as err:
        report.append("%s plant %s" % (name, err.errno))
print("\n".join(report))
"""


def test_another_user_can_neither_open_lock_nor_plant(setup_dir, sleeper):
    setupfile.create(sleeper.pid, "/spool/victim", setup_dir)
    out = as_attacker(ATTACK, setup_dir)
    assert out.returncode == 0, out.stderr
    assert "LOCKED" not in out.stdout and "PLANTED" not in out.stdout and "open" in out.stdout
    # and nothing waits on it: the victim's next session goes through at once
    start = time.monotonic()
    setupfile.create(os.getpid(), "/spool/next", setup_dir)
    assert time.monotonic() - start < 1


def test_many_creators_and_sweepers_at_once_never_lose_a_live_file(setup_dir):
    sleepers = [subprocess.Popen(["/bin/sleep", "60"]) for _ in range(24)]
    errors = []
    try:
        def work(proc):
            try:
                setupfile.create(proc.pid, "/spool/%d" % proc.pid, setup_dir)
                setupfile.sweep(setup_dir)
            except Exception as err:   # noqa: B902 -- reported below
                errors.append(err)
        threads = [threading.Thread(target=work, args=(p,)) for p in sleepers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert names(setup_dir) == sorted("sge-qrsh-setup.%d" % p.pid for p in sleepers)
    finally:
        for p in sleepers:
            p.kill()
            p.wait()
    assert setupfile.sweep(setup_dir) and names(setup_dir) == []


def test_a_lock_held_too_long_fails_instead_of_waiting_forever(setup_dir, sleeper, monkeypatch):
    import fcntl
    monkeypatch.setattr(setupfile, "LOCK_WAIT", 0.2)
    fd = os.open(os.path.join(setup_dir, setupfile.LOCK), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], pass_fds=(fd,))
        os.close(fd)
        fd = None
        with pytest.raises(setupfile.SetupError) as e:
            setupfile.create(sleeper.pid, "/spool/x", setup_dir)
        assert "held for more than" in str(e.value)
        holder.kill()
        holder.wait()
    finally:
        if fd is not None:
            os.close(fd)


def test_a_reap_line_is_read_back_and_the_module_line_stays_first(setup_dir, sleeper):
    path = setupfile.create(sleeper.pid, "/spool/8.1/1.vm", setup_dir, reap=65432)
    first, second, third = open(path).read().splitlines()
    assert (first, third) == ("/spool/8.1/1.vm", "reap 65432")
    start = procs.stat_of(sleeper.pid).start
    assert setupfile.release(sleeper.pid, start, setup_dir)[3] == 65432
    setupfile.create(sleeper.pid, "/spool/9.1", setup_dir)           # an adopted login: no reap line
    assert setupfile.release(sleeper.pid, start, setup_dir)[3] is None
