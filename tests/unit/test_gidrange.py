"""The reaper kills by a job's group id only inside this host's gid_range (sgewrap.rootside.gidrange).

The cache is what ``sgewrap config|node-access --apply`` writes from ``qconf -sconf``; the conftest
gives every test its own empty place for it (``gid_range_cache``).  The same parser in C
(pam_sgewrap.so) is held to this one in test_pam_module.py.
"""
import os
import subprocess

import pytest

from lib.rootside import Log
from lib import wait_until
from sgewrap.rootside import gidrange, procs, session, setupfile


def cache(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


@pytest.mark.parametrize("value, ranges", [
    (b"20000-20100", [(20000, 20100)]), (b"20000-20100,20200", [(20000, 20100), (20200, 20200)]),
    (b"1", [(1, 1)]), (b"2147483647", [(2147483647, 2147483647)]), (b"020-30", [(20, 30)]),
    (b"0-5", None), (b"5-4", None), (b"2147483648", None), (b"20000-", None), (b"-5", None), (b"", None),
    (b"1,,2", None), (b"1-2-3", None), (b"x", None), (b"NONE", None), (b"12345678901", None),
    (b"\xd9\xa1", None),                                    # an Arabic-Indic digit is no digit here
])
def test_a_gid_range_value_is_read_as_qconf_shows_it(value, ranges):
    assert gidrange.parse_ranges(value) == ranges


DATA = b"# sgewrap: ...\nglobal 20000-20100\nnode2 65600-65799\nnode3.example.org 65800-65999,70000\n"


@pytest.mark.parametrize("host, gid, inside", [
    ("vm", 20000, True), ("vm", 20100, True), ("vm", 20101, False), ("vm", 65600, False), ("vm", 100, False),
    ("node2", 65700, True), ("node2", 20050, False),           # a local configuration overrides the global one
    ("node2.example.org", 65799, True), ("node3", 70000, True), ("node3", 65799, False),
])
def test_a_host_s_range_is_its_local_configuration_s_else_the_global_one(host, gid, inside):
    assert gidrange.gid_in_range(DATA, host, gid) is inside


@pytest.mark.parametrize("data", [b"", b"node2 65600-65799\n", b"global 20000-x\n", b"# global 1-5\n",
                                  b"global\n", b"global 1-5 6-7\n", b"vm 99-1\nglobal 1-100\n"])
def test_no_line_for_the_host_or_a_malformed_one_decides_nothing(data):
    assert gidrange.gid_in_range(data, "vm", 50) is None


def test_the_first_line_of_a_configuration_wins():
    assert gidrange.gid_in_range(b"global 1-10\nvm 20-30\nvm 40-50\nglobal 60-70\n", "vm", 25) is True
    assert gidrange.gid_in_range(b"global 1-10\nglobal 60-70\n", "vm", 65) is False


def test_written_root_s_0644_atomically_and_read_back(gid_range_cache):
    path = gidrange.write([("global", "20000-20100"), ("node2", "65600-65799")])
    assert path == gid_range_cache
    st = os.stat(path)
    assert (st.st_uid, st.st_mode & 0o7777) == (0, 0o644)
    assert os.listdir(os.path.dirname(path)) == ["gid_range"]              # no temporary file left
    assert gidrange.read() == (gidrange.HEADER + "global 20000-20100\nnode2 65600-65799\n").encode()
    assert gidrange.verdict(65601, host="node2")[0] == gidrange.IN
    with pytest.raises(ValueError):
        gidrange.write([("global", "NONE")])
    assert gidrange.verdict(65601, host="node2")[0] == gidrange.IN         # a refused write changed nothing


def test_verdicts(gid_range_cache):
    assert gidrange.verdict(20000, host="vm") == (gidrange.NONE, "no %s" % gid_range_cache)
    cache(gid_range_cache, "global 20000-20100\n")
    assert gidrange.verdict(20000, host="vm") == (gidrange.IN, "gid_range 20000-20100 of vm (%s)" % gid_range_cache)
    assert gidrange.verdict(100, host="vm")[0] == gidrange.OUT
    cache(gid_range_cache, "node2 1-5\n")
    assert gidrange.verdict(3, host="vm") == (gidrange.BROKEN, "%s has no line for vm" % gid_range_cache)


@pytest.mark.parametrize("damage", ["group-writable", "not-root-s", "symlink", "directory-writable", "fifo",
                                    "too-large"])
def test_a_cache_root_cannot_rely_on_decides_nothing(gid_range_cache, tmp_path, damage):
    cache(gid_range_cache, "global 1-100000\n")
    if damage == "group-writable":
        os.chmod(gid_range_cache, 0o664)
    elif damage == "not-root-s":
        os.chown(gid_range_cache, 4242, -1)
    elif damage == "symlink":
        os.rename(gid_range_cache, str(tmp_path / "elsewhere"))
        os.symlink(str(tmp_path / "elsewhere"), gid_range_cache)
    elif damage == "directory-writable":
        os.chmod(os.path.dirname(gid_range_cache), 0o777)
    elif damage == "fifo":
        os.unlink(gid_range_cache)
        os.mkfifo(gid_range_cache, 0o644)
    else:
        cache(gid_range_cache, "global 1-100000\n" + "#" * gidrange.MAX_BYTES)
    kind, why = gidrange.verdict(20000, host="vm")
    assert kind == gidrange.BROKEN, why
    log = Log()
    assert gidrange.reapable(20000, log, "session of sshd 500", host="vm") is False
    assert log.lines[0][0] == "err" and "not killing what carries gid 20000" in log.text()


def test_outside_the_range_is_not_reaped_and_said(gid_range_cache):
    cache(gid_range_cache, "global 20000-20100\n")
    log = Log()
    assert gidrange.reapable(20050, log, "session of sshd 500", host="vm") is True and log.lines == []
    assert gidrange.reapable(100, log, "session of sshd 500", host="vm") is False
    assert log.lines == [("warning", "session of sshd 500: not killing what carries gid 100: outside gid_range "
                                     "20000-20100 of vm (%s) (a stale cache? sgewrap check says; sgewrap config ... "
                                     "--apply rewrites it)" % gid_range_cache)]


def test_without_a_cache_the_reaper_works_as_before_and_says_so_once_per_boot(gid_range_cache):
    log = Log()
    assert all(gidrange.reapable(gid, log, "session of sshd %d" % gid) for gid in (100, 20000, 65499))
    assert len(log.lines) == 1 and log.lines[0][0] == "warning" and "said once per boot" in log.text()
    marker = os.path.join(gidrange.MARK_DIR, gidrange.MARK)
    assert os.path.isfile(marker)
    os.unlink(marker)                   # a reboot empties /run
    assert gidrange.reapable(100, log, "x") and len(log.lines) == 2


def test_kill_group_refuses_a_group_id_no_job_has():
    for gid in (0, -1, 2 ** 31):
        with pytest.raises(ValueError):
            procs.kill_group(gid)


def test_a_session_s_close_kills_by_its_group_only_inside_gid_range(gid_range_cache, tmp_path, monkeypatch):
    """session.ended, the reaper of node_access session, on real processes: the task's leftover is
    spared while its gid is outside the cached range, and killed once it is inside."""
    from lib import need_root
    need_root()
    setup = tmp_path / "run"
    setup.mkdir(mode=0o755)
    monkeypatch.setattr(gidrange, "this_host", lambda: "vm")
    gid = 65496
    left = subprocess.Popen(["/usr/bin/setsid", "/bin/sleep", "300"], extra_groups=[gid])
    try:
        wait_until(lambda: gid in procs.groups_of(left.pid), 5, 0.01)
        for text, alive in (("global 20000-20100\n", True), ("global 20000-20100\nvm 65000-65534\n", False)):
            cache(gid_range_cache, text)
            monitor = subprocess.Popen(["/bin/sleep", "300"])
            start = procs.stat_of(monitor.pid).start
            setupfile.create(monitor.pid, "/spool/8.1", str(setup), reap=gid)
            monitor.kill()
            monitor.wait()
            log = Log()
            session.ended(monitor.pid, start, str(setup), log)
            assert os.listdir(setup) == [setupfile.LOCK]                    # the file goes either way
            if alive:
                assert left.poll() is None and "not killing what carries gid 65496: outside" in log.text()
            else:
                assert left.wait(5) == -9 and "killed 1 process(es) left in its task (gid 65496)" in log.text()
    finally:
        left.kill()
        left.wait()
