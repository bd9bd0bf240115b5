"""node_access: the prolog/epilog that keeps sshd's list of users with a job on this host.

Behaviour through the real entry point (a subprocess with a job-like
environment, as the shepherd runs a prolog); reference counting, repair and
the attacks through the library.  The storm runs 50 jobs of 5 users through
concurrent prologs and epilogs while a reader checks that every list it ever
sees is whole.  The end-to-end proof with real sshd and PAM is in
tests/e2e/test_ssh_access.py.
"""
import os
import random
import shutil
import stat
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from lib import WRAPPERS_SRC, make_spool, need_root, wait_until
from sgewrap.rootside import jobspool, nodeaccess

SCRIPT = os.path.join(WRAPPERS_SRC, "node_access")


@pytest.fixture
def state_dir(tmp_path):
    d = tmp_path / "run"
    d.mkdir(mode=0o755)
    d.chmod(0o755)
    return str(d)


@pytest.fixture
def active(tmp_path):
    """execd's active_jobs directory (its parents are the test's, not group/other writable)."""
    d = tmp_path / "spool" / "node01" / "active_jobs"
    d.mkdir(parents=True)
    for p in (d, d.parent, d.parent.parent):
        p.chmod(0o755)
    return d


def make_job(active, key, owner):
    """The spool directory of job ``key`` (JOB.TASK) of ``owner`` in ``active``, with what node_access
    reads of it: only its config."""
    job_id, _, task = key.partition(".")
    return make_spool(active.parent, None, owner, int(job_id), int(task), environment=None)


def run(command, spool, state_dir, *options, env=None):
    environ = dict(env or {"PATH": "/usr/bin:/bin"})
    if spool is not None:
        environ["SGE_JOB_SPOOL_DIR"] = spool
    return subprocess.run([sys.executable, "-I", SCRIPT, "--dir=" + state_dir, *options, command],
                          env=environ, capture_output=True, text=True, timeout=60)


def users(state_dir):
    try:
        return open(os.path.join(state_dir, nodeaccess.USERS)).read().splitlines()
    except FileNotFoundError:
        return None


# --- through the entry point --------------------------------------------------------------


def test_prolog_allows_the_owner_and_epilog_takes_it_back(active, state_dir):
    spool = make_job(active, "17.1", "alice")
    proc = run("prolog", spool, state_dir)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert users(state_dir) == ["alice"]
    st = os.stat(os.path.join(state_dir, nodeaccess.USERS))
    assert stat.S_IMODE(st.st_mode) == 0o644 and st.st_uid == os.geteuid()
    assert run("epilog", spool, state_dir).returncode == 0
    assert users(state_dir) == []


def test_two_jobs_of_one_user_the_first_epilog_keeps_the_user_in(active, state_dir):
    first, second = make_job(active, "20.1", "bob"), make_job(active, "21.1", "bob")
    other = make_job(active, "22.1", "carol")
    for spool in (first, second, other):
        run("prolog", spool, state_dir)
    assert users(state_dir) == ["bob", "carol"]
    run("epilog", first, state_dir)
    assert users(state_dir) == ["bob", "carol"]
    run("epilog", second, state_dir)
    assert users(state_dir) == ["carol"]


def test_array_tasks_of_one_job_count_apart(active, state_dir):
    tasks = [make_job(active, "30.%d" % t, "dave") for t in (1, 2)]
    for spool in tasks:
        run("prolog", spool, state_dir)
    run("epilog", tasks[0], state_dir)
    assert users(state_dir) == ["dave"]


def test_prolog_twice_is_one_job(active, state_dir):
    spool = make_job(active, "40.1", "erin")
    run("prolog", spool, state_dir)
    run("prolog", spool, state_dir)          # a restarted job runs its prolog again
    run("epilog", spool, state_dir)
    assert users(state_dir) == []


def test_list_shows_users_and_jobs(active, state_dir):
    run("prolog", make_job(active, "41.1", "frank"), state_dir)
    proc = run("list", None, state_dir)
    assert (proc.returncode, proc.stdout) == (0, "allowed: frank\nfrank 41.1 running\n")


@pytest.mark.parametrize("argv,text", [([], "expected one of"), (["bogus"], "'bogus'"),
                                       (["--dir=relative", "list"], "absolute"), (["--nope", "list"], "--nope")])
def test_bad_usage_is_exit_64_and_silent_off_a_terminal(argv, text, state_dir):
    proc = subprocess.run([sys.executable, "-I", SCRIPT] + argv, capture_output=True, text=True)
    assert (proc.returncode, proc.stdout, proc.stderr) == (64, "", "")
    with pytest.raises(nodeaccess.WrapperError, match=text):
        nodeaccess.parse_args(argv)


def test_missing_job_context_changes_nothing_and_exits_0(state_dir):
    """A prolog that cannot tell the job must not put the queue in error state."""
    proc = run("prolog", None, state_dir)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert users(state_dir) is None


def test_help():
    proc = subprocess.run([sys.executable, "-I", SCRIPT, "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: node_access")
    assert "pam_listfile.so" in proc.stdout


# --- what a job is: only a trusted spool directory says ----------------------------------------


@pytest.mark.parametrize("owner", ["a b", "-root", "", "al;ce", "x" * 65])
def test_a_strange_job_owner_is_refused(active, state_dir, owner):
    spool = make_job(active, "50.1", "placeholder")
    with open(os.path.join(spool, "config"), "w") as f:
        f.write("job_owner=%s\njob_id=50\n" % owner)
    assert run("prolog", spool, state_dir).returncode == 0
    assert users(state_dir) is None


def test_a_spool_directory_of_another_job_number_is_refused(active, state_dir):
    spool = make_job(active, "51.1", "gina")
    with open(os.path.join(spool, "config"), "w") as f:
        f.write("job_owner=gina\njob_id=99\n")
    with pytest.raises(jobspool.NoJob, match="not the spool directory of job"):
        nodeaccess.this_job({"SGE_JOB_SPOOL_DIR": spool}, jobspool.Trust())


def test_group_writable_config_is_refused(active, state_dir):
    spool = make_job(active, "52.1", "hank")
    os.chmod(os.path.join(spool, "config"), 0o664)
    run("prolog", spool, state_dir)
    assert users(state_dir) is None


def test_a_spool_directory_the_user_made_is_not_trusted(tmp_path, state_dir):
    """The attack: qsub -v SGE_JOB_SPOOL_DIR=~/fake with config job_owner=root (or a friend)."""
    need_root()
    import pwd
    nobody = pwd.getpwnam("nobody")
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    fake = home / "60.1"
    fake.mkdir()
    (fake / "config").write_text("job_owner=friend\njob_id=60\n")
    for p in (home, fake, fake / "config"):
        os.chown(p, nobody.pw_uid, nobody.pw_gid)
    proc = run("prolog", str(fake), state_dir)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert users(state_dir) is None
    with pytest.raises(jobspool.NoJob, match="owned by uid %d" % nobody.pw_uid):
        nodeaccess.this_job({"SGE_JOB_SPOOL_DIR": str(fake)}, jobspool.Trust())


def test_hostile_environment_changes_nothing(active, state_dir, tmp_path):
    """PYTHONPATH, PYTHONSTARTUP, a planted os.py in cwd: the isolated interpreter ignores them."""
    evil = tmp_path / "evil"
    evil.mkdir()
    marker = tmp_path / "pwned"
    (evil / "os.py").write_text("open(%r, 'w').write('x')\n" % str(marker))
    (evil / "sitecustomize.py").write_text("open(%r, 'w').write('x')\n" % str(marker))
    spool = make_job(active, "61.1", "ivan")
    env = {"PATH": "%s:/usr/bin:/bin" % evil, "PYTHONPATH": str(evil), "PYTHONSTARTUP": str(evil / "os.py"),
           "PYTHONINSPECT": "1", "PYTHONHOME": str(evil)}
    proc = subprocess.run([sys.executable, "-I", SCRIPT, "--dir=" + state_dir, "prolog"], cwd=str(evil),
                          env=dict(env, SGE_JOB_SPOOL_DIR=spool), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and not marker.exists()
    assert users(state_dir) == ["ivan"]


EXECVE = """
import ctypes, json, sys
env = [e.encode() for e in json.loads(sys.argv[1])] + [None]
argv = [a.encode() for a in sys.argv[2:]] + [None]
libc = ctypes.CDLL(None, use_errno=True)
libc.execve(argv[0], (ctypes.c_char_p * len(argv))(*argv), (ctypes.c_char_p * len(env))(*env))
sys.exit(99)
"""


def run_raw(environ, *argv):
    """node_access started with exactly ``environ`` (a list of NAME=value, a name may come twice,
    as pam_exec passes it when the PAM environment holds one of its items)."""
    import json
    return subprocess.run([sys.executable, "-I", "-c", EXECVE, json.dumps(environ), sys.executable, "-I", SCRIPT,
                           *argv], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("environ, code", [
    (["PAM_TYPE=open_session", "PAM_USER=alice"], 0),                           # pam_exec's own: nothing to do
    (["PAM_TYPE=account", "PAM_USER=alice", "PAM_TYPE=open_session"], 1),        # a forged PAM_TYPE first
    (["PAM_USER=bob", "PAM_TYPE=open_session", "PAM_USER=alice"], 1),            # a forged PAM_USER first
])
def test_pam_items_given_twice_are_refused(environ, code, state_dir):
    """Finding 2 of the root-hooks issue: pam_exec appends PAM_TYPE/PAM_USER after the PAM
    environment, where ~/.pam_environment can have put its own; CPython's os.environ keeps the first."""
    for command in ("session", "adopt"):
        assert run_raw(environ, "--dir=" + state_dir, command).returncode == code


def test_pam_exec_environ_takes_pam_exec_items_last_and_the_rest_first():
    from sgewrap.rootside import frame as rootside
    environ, twice = rootside.pam_exec_environ([
        ("PAM_TYPE", "account"), ("LANG", "C"), ("PAM_RHOST", "evil"), ("LANG", "de"),
        ("PAM_RHOST", "10.0.0.1"), ("PAM_USER", "alice"), ("PAM_TYPE", "close_session")])
    assert environ == {"PAM_TYPE": "close_session", "LANG": "C", "PAM_RHOST": "10.0.0.1", "PAM_USER": "alice"}
    assert twice == ["PAM_TYPE"]


def test_exec_environ_keeps_every_entry_in_order(tmp_path):
    from sgewrap.rootside import frame as rootside
    raw = tmp_path / "environ"
    raw.write_bytes(b"A=1\0B=x=y\0A=2\0junk\0=empty\0")
    assert rootside.exec_environ(str(raw)) == [("A", "1"), ("B", "x=y"), ("A", "2")]


# --- the files ------------------------------------------------------------------------------


def test_state_directory_writable_by_others_is_refused(active, tmp_path):
    d = tmp_path / "open"
    d.mkdir()
    d.chmod(0o777)
    proc = run("prolog", make_job(active, "70.1", "judy"), str(d))
    assert proc.returncode == 0
    assert not os.path.exists(d / nodeaccess.USERS)


def test_a_symlink_in_place_of_the_list_is_replaced_not_followed(active, state_dir, tmp_path):
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    os.symlink(target, os.path.join(state_dir, nodeaccess.USERS))
    os.symlink(target, os.path.join(state_dir, nodeaccess.JOBS))
    run("prolog", make_job(active, "71.1", "kim"), state_dir)
    assert target.read_text() == "keep me\n"
    assert not os.path.islink(os.path.join(state_dir, nodeaccess.USERS))
    assert users(state_dir) == ["kim"]


def test_a_missed_epilog_heals_at_the_next_change(active, state_dir):
    gone = make_job(active, "80.1", "liam")
    run("prolog", gone, state_dir)
    shutil.rmtree(gone)                      # the job ended, its epilog never ran
    run("prolog", make_job(active, "81.1", "mia"), state_dir)
    assert users(state_dir) == ["mia"]


def test_malformed_lines_in_the_jobs_file_are_dropped(active, state_dir):
    with open(os.path.join(state_dir, nodeaccess.JOBS), "w") as f:
        f.write("garbage\nrun 1.1 root\nrun 2.1 x;y /tmp\n")
    run("prolog", make_job(active, "82.1", "noah"), state_dir)
    assert users(state_dir) == ["noah"]


# --- repair ---------------------------------------------------------------------------------


@pytest.fixture
def shepherds(tmp_path):
    """start(spool, user=None): a live process whose executable is a root-owned file named sge_shepherd,
    working in ``spool`` (what a real shepherd looks like to the kernel), as root or as ``user``."""
    need_root()
    bindir = tmp_path / "bin"
    bindir.mkdir(mode=0o755)
    fake = bindir / "sge_shepherd"
    shutil.copy("/bin/sleep", fake)
    os.chmod(fake, 0o755)
    procs = []

    def start(spool, user=None):
        argv = [str(fake), "300"]
        if user:
            argv = ["/usr/sbin/runuser", "-u", user, "--"] + argv
        procs.append(subprocess.Popen(argv, cwd=spool))
        import time
        from sgewrap.rootside import procs as kernel
        wait_until(lambda: user or spool in kernel.shepherds().values(), 10, 0.01)
        time.sleep(0.1 if user else 0)
        return procs[-1].pid
    yield start
    for p in procs:
        p.kill()
        p.wait()


def test_repair_rebuilds_from_the_jobs_running_here(active, state_dir, shepherds):
    running = make_job(active, "90.1", "olga")
    shepherds(running)
    faked = make_job(active, "91.1", "pete")
    shepherds(faked, user="nobody")       # a user's process named sge_shepherd in the spool dir: no job
    make_job(active, "92.1", "quinn")     # no shepherd
    ended = make_job(active, "93.1", "rose")
    shepherds(ended)
    run("prolog", ended, state_dir)
    run("epilog", ended, state_dir)       # its epilog ran: it stays out
    with open(os.path.join(state_dir, nodeaccess.USERS), "w") as f:
        f.write("mallory\n")              # a damaged list
    proc = run("repair", None, state_dir, "--active-jobs=%s" % active)
    assert proc.returncode == 0
    assert users(state_dir) == ["olga"]


def test_a_process_named_sge_shepherd_is_not_a_shepherd(tmp_path):
    """comm is the user's to choose; only the real uid and the root-owned executable count."""
    from sgewrap.rootside import procs as kernel
    named = tmp_path / "sge_shepherd"
    shutil.copy("/bin/sleep", named)
    os.chmod(named, 0o755)
    proc = subprocess.Popen([str(named), "30"])
    try:
        if os.geteuid() == 0:
            os.chown(named, 65534, -1)    # root runs it, but the file is nobody's: no shepherd
        assert not kernel.is_shepherd(proc.pid)
    finally:
        proc.kill()
        proc.wait()


# --- the storm ------------------------------------------------------------------------------


def test_storm_of_concurrent_prologs_and_epilogs(active, state_dir):
    """50 jobs of 5 users start and end in random order, 12 at a time; 10 never end.  The list
    ends exactly right, and a reader never sees a partial or foreign list meanwhile."""
    rng = random.Random(7)
    people = ["user%d" % i for i in range(5)]
    jobs = [(make_job(active, "%d.1" % (100 + n), rng.choice(people)), n) for n in range(50)]
    staying = set(rng.sample(range(50), 10))
    events = [("prolog", spool, n) for spool, n in jobs]
    rng.shuffle(events)
    # each job's epilog comes after its own prolog, at a random later place
    ordered = []
    for event in events:
        ordered.append(event)
    for spool, n in jobs:
        if n not in staying:
            start = ordered.index(("prolog", spool, n))
            ordered.insert(rng.randrange(start + 1, len(ordered) + 1), ("epilog", spool, n))
    stop, seen, bad = threading.Event(), [0], []

    def reader():
        path = os.path.join(state_dir, nodeaccess.USERS)
        while not stop.is_set():
            try:
                text = open(path).read()
            except FileNotFoundError:
                continue
            seen[0] += 1
            if text and (not text.endswith("\n") or not set(text.splitlines()) <= set(people)):
                bad.append(text)

    done = {}
    lock = threading.Lock()

    def fire(event):
        command, spool, n = event
        if command == "epilog":             # its prolog must have finished first
            while True:
                with lock:
                    if done.get(n):
                        break
                stop.wait(0.01)
        proc = run(command, spool, state_dir)
        assert proc.returncode == 0, proc.stderr
        with lock:
            done[n] = True

    watcher = threading.Thread(target=reader)
    watcher.start()
    try:
        with ThreadPoolExecutor(12) as pool:
            list(pool.map(fire, ordered))
    finally:
        stop.set()
        watcher.join()
    owners = {n: open(os.path.join(spool, "config")).read().split("\n")[0].split("=")[1] for spool, n in jobs}
    assert users(state_dir) == sorted({owners[n] for n in staying})
    assert not bad, bad[:3]
    assert seen[0] > 0
    left = sorted(line.split()[1] for line in open(os.path.join(state_dir, nodeaccess.JOBS))
                  if line.startswith("run "))
    assert left == sorted("%d.1" % (100 + n) for n in staying)


def test_one_option_table_gives_parsing_defaults_and_help():
    values, command = nodeaccess.parse_args(["adopt"])
    assert command == "adopt"
    assert (values.ignore_below_uid, values.action_no_jobs, values.action_adopt_failure, values.warn_only,
            values.admin_group, values.facility, values.dir) == (1000, "deny", "deny", False, [], "authpriv",
                                                                 nodeaccess.DEFAULT_DIR)
    values, _ = nodeaccess.parse_args(["--ignore-below-uid=500", "--admin-group=wheel", "--admin-group=hpc", "adopt"])
    assert (values.ignore_below_uid, values.admin_group) == (500, ["wheel", "hpc"])
    text = nodeaccess.usage()
    for option in nodeaccess.TABLE.options:
        assert option.usage() in text
    assert "default 1000 [adopt]" in " ".join(text.split())
