"""node_access session (sgewrap.rootside.session): the job sshd's PAM hook, every way it refuses.

The process tree is stood in for (procs.* monkeypatched): the parent is a
monitor whose parent is a shepherd working in a fake spool directory.  The
real thing, with the real sshd, PAM and a second user: tests/loopback.
"""
import os
import subprocess
import time

import pytest

from lib.rootside import Log
from lib import make_spool, wait_until
from sgewrap.rootside import jobspool, procs, session, setupfile


@pytest.fixture
def spool(tmp_path):
    return make_spool(tmp_path, 65499, "alice", job_id=8)


@pytest.fixture
def tree(monkeypatch, spool, tmp_path):
    """Our parent 500 (started at 42) is sshd, its parent 400 a shepherd in ``spool``."""
    setup = tmp_path / "run"
    setup.mkdir(mode=0o755)
    state = {"shepherd_spool": spool, "created": []}
    monkeypatch.setattr(session.os, "getppid", lambda: 500)
    monkeypatch.setattr(procs, "stat_of", lambda pid: procs.Stat(pid, "S", 400, 42) if pid == 500 else None)
    monkeypatch.setattr(procs, "real_uid", lambda pid: 0)
    monkeypatch.setattr(procs, "shepherd_spool", lambda pid: state["shepherd_spool"] if pid == 400 else None)
    monkeypatch.setattr(procs, "link", lambda pid, name: "/usr/bin/bash")
    monkeypatch.setattr(setupfile, "create",
                        lambda pid, sp, d, log=None, reap=None, shepherd=None:
                        state["created"].append((pid, sp, d, reap)))
    state["watched"] = []
    monkeypatch.setattr(session, "watch", lambda pid, start, d, log: state["watched"].append((pid, start)))
    state["setup"] = str(setup)
    return state


def hook(tree, user="alice", kind="account", fail_open=False):
    log = Log()
    code = session.run({"PAM_TYPE": kind, "PAM_USER": user}, jobspool.Trust(), tree["setup"], fail_open, log)
    return code, log


def test_the_owner_is_admitted_and_tied(tree, spool):
    code, log = hook(tree)
    assert code == 0 and tree["created"] == [(500, spool, tree["setup"], 65499)]   # reaped at its end
    assert tree["watched"] == [(500, 42)]                                         # by a watcher of sshd 500
    assert "job 8.1: session of alice tied to the job (gid 65499, sshd 500)" in log.text()


def test_another_user_is_refused(tree):
    code, log = hook(tree, user="mallory")
    assert code == 1 and tree["created"] == []
    assert "session of mallory refused: user 'mallory' is not alice, the owner of job 8.1" in log.text()


def test_no_shepherd_above_sshd_is_refused(tree):
    tree["shepherd_spool"] = None
    code, log = hook(tree)
    assert code == 1 and "was not started by a Grid Engine shepherd" in log.text()


@pytest.mark.parametrize("damage", ["addgrpid", "config", "writable"])
def test_an_untrusted_or_broken_spool_is_refused(tree, spool, damage):
    if damage == "writable":
        os.chmod(spool, 0o777)
    else:
        os.unlink(os.path.join(spool, damage))
    code, log = hook(tree)
    assert code == 1 and tree["created"] == [] and "refused" in log.text()


def test_a_setup_file_that_cannot_be_written_refuses(tree, monkeypatch):
    def fail(*a, **k):
        raise setupfile.SetupError("lock held for more than 5s")
    monkeypatch.setattr(setupfile, "create", fail)
    code, log = hook(tree)
    assert code == 1 and "cannot write the setup file: lock held" in log.text()


def test_fail_open_admits_untied_and_says_so(tree):
    tree["shepherd_spool"] = None
    code, log = hook(tree, fail_open=True)
    assert code == 0 and tree["created"] == []
    assert ("warning", ) == log.lines[-1][:1] and "NOT tied to a job (--fail-open)" in log.text()


def test_fail_open_never_admits_another_user(tree):
    """Finding 5 of the root-hooks issue: --fail-open turned the owner check into "admit untied"."""
    code, log = hook(tree, user="mallory", fail_open=True)
    assert code == 1 and tree["created"] == []
    assert "session of mallory refused: user 'mallory' is not alice" in log.text()


def test_a_watcher_that_cannot_start_refuses_and_leaves_no_file(tree, monkeypatch):
    def fail(*a):
        raise OSError(11, "Resource temporarily unavailable")
    ended = []
    monkeypatch.setattr(session, "watch", fail)
    monkeypatch.setattr(session, "ended", lambda pid, start, d, log: ended.append((pid, start)))
    code, log = hook(tree)
    assert code == 1 and ended == [(500, 42)] and "cannot watch sshd 500" in log.text()


@pytest.mark.parametrize("kind", ["close_session", "open_session", "auth", ""])
def test_other_pam_types_do_nothing(tree, monkeypatch, kind):
    """0.2 stacks ran the hook at close_session: it does nothing now (the watcher ends the session)."""
    monkeypatch.setattr(setupfile, "release", lambda *a: pytest.fail("released at %s" % kind))
    assert hook(tree, kind=kind)[0] == 0
    assert tree["created"] == [] and tree["watched"] == []


def test_the_watcher_ends_the_session_when_its_sshd_exits(tmp_path):
    """session.watch for real: a root process stands in for sshd's monitor, one carrying the task's
    group in a session of its own for what the task left running.  When the monitor exits, the
    watcher (a double fork of this process, without our groups) removes the setup file and kills
    what carries the group; until then nothing happens."""
    from lib import need_root
    need_root()
    setup = tmp_path / "run"
    setup.mkdir(mode=0o755)
    gid = 65497
    monitor = subprocess.Popen(["/bin/sleep", "300"])
    left = subprocess.Popen(["/usr/bin/setsid", "/bin/sleep", "300"], extra_groups=[gid])
    try:
        start = procs.stat_of(monitor.pid).start
        path = setupfile.create(monitor.pid, "/spool/8.1", str(setup), reap=gid)
        session.watch(monitor.pid, start, str(setup), Log())
        time.sleep(0.3)
        assert os.path.exists(path) and left.poll() is None
        monitor.kill()
        monitor.wait()
        wait_until(lambda: not os.path.exists(path) and left.poll() is not None, 10, 0.02)
        assert not os.path.exists(path) and left.poll() == -9
    finally:
        for p in (monitor, left):
            p.kill()
            p.wait()


def test_the_watcher_is_not_started_for_a_gone_monitor(tmp_path):
    from lib import need_root
    need_root()
    gone = subprocess.Popen(["/bin/true"])
    gone.wait()
    with pytest.raises(OSError):
        session.watch(gone.pid, 1, str(tmp_path), Log())


def test_kill_group_kills_every_process_carrying_the_group_and_only_those():
    """The session close's reaper (procs.kill_group), on real processes: one in the group in a
    process group and session of its own (as GNU parallel's worker makes it), one outside."""
    gid = 65499
    inside = subprocess.Popen(["/usr/bin/setsid", "/bin/sleep", "300"], extra_groups=[gid])
    outside = subprocess.Popen(["/bin/sleep", "300"])
    try:
        wait_until(lambda: gid in procs.groups_of(inside.pid), 5, 0.01)
        assert procs.kill_group(gid) == [inside.pid]
        assert inside.wait(5) == -9
        assert outside.poll() is None
    finally:
        for p in (inside, outside):
            p.kill()
            p.wait()


def test_kill_group_leaves_zombies_alone_and_does_not_spin_on_them():
    """A zombie still shows its groups; it was found killed again and again for 20 rounds, 20 ms of
    every session close (measured, the session's own ending sshd)."""
    gid = 65498
    zombie = subprocess.Popen(["/bin/true"], extra_groups=[gid])
    wait_until(lambda: procs.stat_of(zombie.pid) is None, 5, 0.01)       # None: a zombie
    try:
        start = time.monotonic()
        assert procs.kill_group(gid) == []
        assert time.monotonic() - start < 0.5
    finally:
        zombie.wait()
