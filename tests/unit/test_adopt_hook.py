"""node_access adopt (sgewrap.rootside.adopt): which job a login joins, and every way it is refused.

Fake spools (lib.make_spool) and a stood-in process tree, as test_session does: our parent 500 is
sshd's monitor (started at 42); shepherds 301-303 work in the spools of alice's jobs 8.1 (older)
and 9.1 (newer) and bob's 10.1.  The real thing, with real sshd, PAM and jobs: tests/e2e/test_adopt.py.
"""
import collections
import os
import pathlib
import re
import shutil
import tempfile
import time

import pytest

from lib.rootside import Log
from lib import make_spool, wait_until
from sgewrap.rootside import adopt, jobspool, nodeaccess, procs, session, setupfile

real_stat = procs.stat_of          # the fixture stands in for it; the stall test looks at real processes


Pw = collections.namedtuple("Pw", "pw_name pw_uid pw_gid pw_dir")


@pytest.fixture
def homes():
    """Home directories the users themselves can reach (the choice file is read as its user: below
    pytest's 0700 tmp_path nobody else could): alice's and bob's, each theirs and 0700."""
    top = tempfile.mkdtemp(prefix="sgewrap-homes.", dir="/tmp")
    os.chmod(top, 0o711)
    found = {}
    for name, uid in (("alice", 5000), ("bob", 5001)):
        found[name] = pathlib.Path(top) / name
        found[name].mkdir(mode=0o700)
        os.chown(found[name], uid, uid)
    yield found
    shutil.rmtree(top)


@pytest.fixture
def node(monkeypatch, tmp_path, homes):
    base = tmp_path / "execd"
    spools = {301: make_spool(base, 65401, "alice", job_id=8), 302: make_spool(base, 65402, "alice", job_id=9),
              303: make_spool(base, 65403, "bob", job_id=10)}
    starts = {301: 100, 302: 200, 303: 150, 500: 42}
    users = {"alice": Pw("alice", 5000, 5000, str(homes["alice"])),
             "bob": Pw("bob", 5001, 5001, str(homes["bob"])),
             "sysuser": Pw("sysuser", 999, 999, "/")}
    state = {"created": [], "watched": [], "homes": homes, "active_jobs": str(base / "active_jobs"),
             "create": None}

    def create(pid, spool, d, log=None, reap=None, shepherd=None):
        if state["create"]:
            raise state["create"]
        state["created"].append((pid, spool, reap))

    def getpwnam(name):
        if name not in users:
            raise KeyError(name)
        return users[name]

    monkeypatch.setattr(session.os, "getppid", lambda: 500)
    monkeypatch.setattr(procs, "shepherds", lambda: dict(spools))
    monkeypatch.setattr(procs, "stat_of", lambda pid: procs.Stat(pid, "S", 1, starts[pid]) if pid in starts else None)
    monkeypatch.setattr(procs, "real_uid", lambda pid: 0)
    monkeypatch.setattr(setupfile, "create", create)
    monkeypatch.setattr(session, "watch", lambda pid, start, d, log: state["watched"].append((pid, start)))
    monkeypatch.setattr("pwd.getpwnam", getpwnam)
    monkeypatch.setattr(adopt, "waiting_slots", lambda user, trust, active_jobs: [])
    return state


def login(node, user="alice", *options, kind="account", active_jobs=None):
    opts, command = nodeaccess.parse_args(["--active-jobs=" + (active_jobs or node["active_jobs"]), *options,
                                           "adopt"])
    assert command == "adopt"
    log = Log()
    code = adopt.run({"PAM_TYPE": kind, "PAM_USER": user}, opts, jobspool.Trust(), log)
    return code, log


def choose(node, text, uid=5000, mode=0o644):
    """alice names a job in her ~/.sge_adopt_job (a file of hers: uid 5000)."""
    choice = node["homes"]["alice"] / adopt.CHOICE_FILE
    choice.write_text(text)
    os.chown(choice, uid, -1)
    os.chmod(choice, mode)
    return choice


def spool_of(node, job):
    return os.path.join(node["active_jobs"], "%s.1" % job)


def test_the_newest_job_of_the_user_is_joined_and_watched(node):
    code, log = login(node)
    assert code == 0 and node["created"] == [(500, spool_of(node, 9), None)]     # an adopted login: no reap
    assert node["watched"] == [(500, 42)]
    assert "alice's ssh session joins job 9.1 (gid 65402, sshd 500, the newest)" in log.text()


def test_a_job_named_in_the_choice_file_is_joined(node):
    choose(node, "8\n")
    code, _ = login(node)
    assert code == 0 and node["created"] == [(500, spool_of(node, 8), None)]


def test_another_users_job_named_is_refused_never_swapped(node, capfd):
    choose(node, "10\n")
    code, log = login(node)
    assert code == 1 and node["created"] == [] and node["watched"] == []
    assert "no task of a job 10 of yours runs on this host" in capfd.readouterr().out


def test_garbage_in_the_choice_file_is_refused(node):
    choose(node, "../../etc\n")
    assert login(node)[0] == 1 and node["created"] == []


def refused_for(node, capfd, why):
    code, log = login(node)
    out = capfd.readouterr().out
    assert code == 1 and node["created"] == [] and node["watched"] == [], log.text()
    assert out == "Access denied by Grid Engine's node_access: ~/.sge_adopt_job cannot be read (%s): not guessing " \
                  "which job to join.\n" % why


def test_a_choice_file_that_is_not_the_users_is_refused_never_guessed(node, capfd):
    choose(node, "8\n", uid=4242)
    refused_for(node, capfd, "not the user's (owned by uid 4242)")


def test_the_choice_is_read_as_the_user_and_a_choice_they_cannot_read_is_refused(node, capfd):
    """What a root-squashed NFS home does to root (EACCES), a file of alice's she cannot read does to
    her: read as root, both would have joined the newest job silently."""
    choose(node, "8\n", mode=0o000)
    refused_for(node, capfd, "Permission denied")
    os.chmod(node["homes"]["alice"], 0o000)              # and a home she cannot enter
    refused_for(node, capfd, "Permission denied")


def test_a_link_or_a_fifo_as_the_choice_is_refused(node, capfd):
    choice = choose(node, "8\n")
    os.rename(choice, node["homes"]["alice"] / "elsewhere")
    os.symlink("elsewhere", choice)
    refused_for(node, capfd, "a symbolic link")
    os.unlink(choice)
    os.mkfifo(choice)
    os.chown(choice, 5000, 5000)
    refused_for(node, capfd, "not a regular file")


def test_a_choice_longer_than_a_job_number_is_refused(node, capfd):
    choose(node, "8" * (adopt.CHOICE_BYTES + 1))
    refused_for(node, capfd, "longer than %d bytes" % adopt.CHOICE_BYTES)


def test_an_empty_choice_file_names_no_job(node):
    choose(node, "\n")
    code, _ = login(node)
    assert code == 0 and node["created"] == [(500, spool_of(node, 9), None)]


def test_a_choice_that_stalls_is_refused_in_time_and_its_reader_killed(node, capfd, monkeypatch):
    """A home on a stalled NFS or FUSE mount: the reader (the user's child) never answers.  Stood in for
    by a reader that sleeps; the login is refused at the bound and nothing is left running."""
    from sgewrap.rootside import frame
    monkeypatch.setattr(adopt, "CHOICE_TIMEOUT", 0.3)
    monkeypatch.setattr(frame, "_read_as", lambda *a: (time.sleep(60), os._exit(0)))
    choose(node, "8\n")
    start = time.monotonic()
    refused_for(node, capfd, "not read within 0.3 s")
    assert time.monotonic() - start < 1.5
    assert wait_until(lambda: not _children(), 2, 0.02), _children()


def _children():
    """This process's children that are still running (zombies excluded)."""
    me = os.getpid()
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        st = real_stat(int(pid))
        if st is not None and st.ppid == me:
            found.append(int(pid))
    return found


def test_no_job_here_is_refused_with_a_line_for_the_user(node, capfd):
    code, log = login(node, "carol")
    assert code == 1 and node["created"] == []
    assert "Access denied by Grid Engine's node_access: no job of yours runs on this host." in capfd.readouterr().out


def test_action_no_jobs_allow_admits_untied(node):
    code, log = login(node, "carol", "--action-no-jobs=allow")
    assert code == 0 and node["created"] == [] and "admitted untied" in log.text()


def test_warn_only_refuses_nobody_and_says_what_it_would_have_done(node):
    code, log = login(node, "carol", "--warn-only")
    assert code == 0 and "would refuse carol" in log.text()


@pytest.mark.parametrize("user, options, why", [
    ("sysuser", (), "uid 999 is below 1000"),
    ("bob", ("--ignore-below-uid=6000",), "uid 5001 is below 6000"),
])
def test_system_users_are_admitted_untied(node, user, options, why):
    code, log = login(node, user, *options)
    assert code == 0 and node["created"] == [] and why in log.text()


def test_a_login_whose_job_cannot_be_joined_follows_the_adopt_failure_policy(node, capfd):
    node["create"] = setupfile.SetupError("lock held for more than 5s")
    code, _ = login(node)
    assert code == 1 and "your job 9.1 runs here, but the session cannot join it" in capfd.readouterr().out
    code, log = login(node, "alice", "--action-adopt-failure=allow")
    assert code == 0 and "admitted untied: job 9.1 chosen" in log.text()


def test_a_spool_outside_this_hosts_active_jobs_is_not_a_job_here(node, tmp_path):
    code, _ = login(node, active_jobs=str(tmp_path / "elsewhere"))
    assert code == 1 and node["created"] == []


@pytest.mark.parametrize("kind", ["close_session", "open_session", "auth", ""])
def test_other_pam_types_do_nothing(node, kind):
    assert login(node, kind=kind)[0] == 0
    assert node["created"] == [] and node["watched"] == []


def test_explain_says_the_same_as_the_hook(node):
    opts, _ = nodeaccess.parse_args(["--active-jobs=" + node["active_jobs"], "adopt"])
    lines = adopt.explain("alice", opts, jobspool.Trust())
    assert lines[0] == "alice's tasks running here, newest first: 9.1 (gid 65402), 8.1 (gid 65401)"
    assert lines[-1].startswith("alice: admitted, joins job 9.1")


def test_no_home_or_no_file_names_nothing(homes):
    from sgewrap.rootside import frame
    for home in ("/nonexistent", str(homes["alice"])):
        pw = Pw("alice", 5000, 5000, home)
        assert frame.read_as_user(pw, os.path.join(home, adopt.CHOICE_FILE), 2) == (frame.MISSING, b"")


real_waiting_slots = adopt.waiting_slots


@pytest.fixture
def qmaster(node, tmp_path, monkeypatch):
    """A Grid Engine root whose qstat -j says alice owns every job after DELAY seconds (a file), and an
    empty active_jobs/77.1 and 78.1 (slots of parallel jobs delivered here, no task started); returns a
    function that sets the delay."""
    from sgewrap import locate
    root = tmp_path / "sge"
    (root / "default" / "common").mkdir(parents=True)
    (root / "default" / "common" / "bootstrap").write_text("admin_user none\n")
    bindir = root / "bin" / locate.arch_guesses()[0]
    bindir.mkdir(parents=True)
    delay = tmp_path / "delay"
    delay.write_text("0")
    (bindir / "qstat").write_text("#!/bin/sh\nsleep $(cat %s)\necho \"owner: alice\"\n" % delay)
    (bindir / "qstat").chmod(0o755)
    for job in (77, 78):
        os.makedirs(os.path.join(node["active_jobs"], "%d.1" % job), mode=0o755)
    monkeypatch.setattr(adopt, "waiting_slots", real_waiting_slots)
    monkeypatch.setattr(adopt, "QSTAT_TIMEOUT", 0.5)
    monkeypatch.setattr(adopt, "QSTAT_BUDGET", 0.8)
    node["trust"] = jobspool.Trust(str(root))
    return lambda seconds: delay.write_text(str(seconds))


def login_without_tasks(node, *options):
    """A login of carol, who has no task here: the empty slot directories are asked of qmaster."""
    opts, _ = nodeaccess.parse_args(["--active-jobs=" + node["active_jobs"], *options, "adopt"])
    log = Log()
    start = time.monotonic()
    code = adopt.run({"PAM_TYPE": "account", "PAM_USER": "carol"}, opts, node["trust"], log)
    return code, log, time.monotonic() - start


def test_a_slot_of_the_user_s_parallel_job_here_follows_the_adopt_failure_policy(node, qmaster, monkeypatch, capfd):
    monkeypatch.setattr(adopt, "job_owner", lambda job_id, sge_root, timeout: "carol")
    code, log, _ = login_without_tasks(node)
    assert code == 1 and "your parallel job 77 has slots here but no task started yet" in capfd.readouterr().out


def test_a_qmaster_that_does_not_answer_in_time_cannot_decide_a_login(node, qmaster, capfd):
    """One qstat -j per empty active_jobs entry stalled logins as long as qmaster stalled: now each
    gets QSTAT_TIMEOUT and all of them QSTAT_BUDGET, then --action-adopt-failure decides (logged)."""
    qmaster(30)
    code, log, took = login_without_tasks(node)
    assert code == 1 and took < 2
    assert "cannot tell whether a parallel job of yours has slots here: qstat -j 77 did not answer within 0.5 s" \
        in capfd.readouterr().out and "refused carol" in log.text()
    code, log, took = login_without_tasks(node, "--action-adopt-failure=allow")
    assert code == 0 and took < 2 and "carol admitted untied: cannot tell whether" in log.text()


def test_all_the_qstat_calls_of_one_login_are_bounded_together(node, qmaster, capfd):
    qmaster(0.45)                 # each answers in time (carol owns none), but two take longer than the budget
    code, log, took = login_without_tasks(node)
    out = capfd.readouterr().out
    assert code == 1 and took < 2
    assert re.search(r"qstat -j 78 did not answer within 0\.[0-4] s|qstat -j took more than 0\.8 s for the jobs "
                     r"before 78", out), out


def test_a_qmaster_that_answers_in_time_decides(node, qmaster, capfd):
    code, log, took = login_without_tasks(node)
    assert code == 1 and "no job of yours runs on this host" in capfd.readouterr().out
