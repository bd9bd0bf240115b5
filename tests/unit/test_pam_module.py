"""pam_sgewrap's parsers, compiled with AddressSanitizer and UBSan into a driver
(tests/unit/c/pam_driver.c), tried on examples, against the Python side's reading of the same
files, and fuzzed with Hypothesis; the module itself, built with the project's hardening flags.

The module reads what a user may influence only indirectly (a process's comm in /proc/PID/stat,
a job's environment file written from qsub -v), but it reads it inside sshd as root: a parser
that reads one byte too far is a root bug.  Needs gcc and libpam0g-dev (make deps installs them).
"""
import os
import subprocess

import pytest
from hypothesis import given, settings, strategies as st

from sgewrap.admin import pammodule
from sgewrap.rootside import procs

DRIVER_SOURCE = os.path.join(os.path.dirname(__file__), "c", "pam_driver.c")
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g", "-O1"]


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    why = pammodule.can_build()
    assert why is None, why
    tmp = tmp_path_factory.mktemp("pamdriver")
    (tmp / pammodule.HEADER).write_text(pammodule.header())
    exe = str(tmp / "driver")
    proc = subprocess.run(["cc", "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter", "-Wno-unused-function"]
                          + SANITIZE + ["-I", str(tmp), "-I", os.path.dirname(pammodule.SOURCE), "-o", exe,
                                        DRIVER_SOURCE, "-lpam"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return Driver(exe)


class Driver:
    def __init__(self, exe):
        self.exe = exe

    def run(self, records):
        """The driver's output line for each (kind, bytes) record, all in one process."""
        data = b"".join(b"%s %d\n" % (kind.encode(), len(raw)) + raw for kind, raw in records)
        proc = subprocess.run([self.exe], input=data, capture_output=True,
                              env={"ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0:exitcode=99",
                                   "UBSAN_OPTIONS": "halt_on_error=1:exitcode=98"})
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
        out = proc.stdout.decode(errors="surrogateescape")
        return out.split("\n")[:-1] if not any(k == "env" for k, _ in records) else out

    def one(self, kind, raw):
        return self.run([(kind, raw)])[0]


def test_the_module_builds_with_the_hardening_flags_and_exports_only_pam_entry_points(tmp_path):
    out = str(tmp_path / pammodule.NAME)
    assert pammodule.build(out) and not pammodule.build(out)        # the same source builds the same file
    symbols = subprocess.run(["nm", "-D", "--defined-only", out], capture_output=True, text=True).stdout
    exported = {line.split()[-1] for line in symbols.splitlines() if " T " in line}
    assert {"pam_sm_authenticate", "pam_sm_setcred", "pam_sm_acct_mgmt", "pam_sm_open_session",
            "pam_sm_close_session"} <= exported
    headers = subprocess.run(["readelf", "-W", "-d", "-l", out], capture_output=True, text=True).stdout
    assert "BIND_NOW" in headers and "GNU_RELRO" in headers
    assert "RWE" not in headers                                         # no executable stack


def test_the_options_header_comes_from_node_access_s_table():
    from sgewrap.rootside import daemonlog, nodeaccess
    text = pammodule.header()
    for flag in pammodule.MODULE_OPTIONS:
        assert flag in nodeaccess.TABLE.names(pammodule.MODULE_OPTIONS[flag] == "setup" and "adopt" or "session") \
            or flag == "--setup-dir"
        assert '"%s' % flag in text
    assert "LOG_%s" % daemonlog.DEFAULT_FACILITY.upper() in text
    assert '"/var/run"' in text
    from sgewrap.rootside import gidrange
    assert '#define SGEWRAP_GID_RANGE_FILE "%s"' % gidrange.CACHE in text
    assert '#define SGEWRAP_GID_RANGE_MARK "%s/%s"' % (gidrange.MARK_DIR, gidrange.MARK) in text


STAT = b"%d (%s) S %d %d %d 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 %d 1000 10 18446744073709551615\n"


@pytest.mark.parametrize("comm", [b"sshd", b"a b", b"x) S 1 1 1 (y", b")))", b"", b"sge_shepherd-4711"])
def test_stat_is_read_after_the_last_parenthesis(driver, comm):
    raw = STAT % (4711, comm, 42, 40, 4711, 987654321)
    assert driver.one("stat", raw) == "ok S 42 4711 987654321"
    assert procs.parse_stat(raw) == ("S", 42, 4711, 987654321)


@settings(max_examples=300, deadline=None)
@given(comm=st.binary(max_size=20).filter(lambda b: b"\0" not in b and b"\n" not in b),
       ppid=st.integers(0, 2 ** 22), sid=st.integers(0, 2 ** 22), start=st.integers(0, 2 ** 63))
def test_stat_agrees_with_the_python_side(driver, comm, ppid, sid, start):
    raw = STAT % (1, comm, ppid, 1, sid, start)
    assert driver.one("stat", raw) == "ok S %d %d %d" % (ppid, sid, start)
    assert procs.parse_stat(raw) == ("S", ppid, sid, start)


@pytest.mark.parametrize("raw,want", [
    (b"job_owner=sgetest\njob_id=7\n", "ok sgetest"),
    (b"job_id=7\njob_owner=a\njob_owner=b\n", "bad"),             # two values: refused, as the Python side does
    (b"pe_task_id=1.n2\njob_owner=a\npe_task_id=1.n2\n", "ok a"),   # execd writes pe_task_id twice (measured)
    (b"job_owner=a\njob_owner=a\n", "ok a"),
    (b"xjob_owner=evil\njob_owner=real", "ok real"),
    (b"job_owner", "bad"), (b"", "bad"), (b"job_owner=" + b"x" * 65, "bad"),
    (b"job_owner=a\0b\n", "bad"),
    # execd writes user-given paths first: a newline in qsub -o must not add an owner (refused, not chosen)
    (b"stdout_path=/tmp/o\njob_owner=victim\njob_owner=attacker\n", "bad"),
    (b"job_owner=a\rjob_owner=b\n", "ok a\rjob_owner=b"),          # only \n ends a line, as in Python
])
def test_config_values(driver, raw, want):
    assert driver.one("config", raw) == want


def test_the_python_side_refuses_a_doubled_owner_too(tmp_path):
    from sgewrap.rootside import jobspool
    spool = tmp_path / "1.1"
    spool.mkdir()
    (spool / "config").write_text("stdout_path=/tmp/o\njob_owner=victim\njob_owner=attacker\njob_id=1\n")
    with pytest.raises(jobspool.NoJob, match="gives job_owner two values"):
        jobspool.job_config(str(spool), jobspool.Trust())
    (spool / "config").write_text("pe_task_id=1.n2\njob_owner=a\npe_task_id=1.n2\n")   # as execd writes it
    assert jobspool.job_config(str(spool), jobspool.Trust())["pe_task_id"] == "1.n2"
    (spool / "config").write_text("job_owner=a\x85b\njob_id=1\n")
    assert jobspool.job_config(str(spool), jobspool.Trust())["job_owner"] == "a\x85b"


@pytest.mark.parametrize("raw,want", [(b"20017\n", "ok 20017"), (b" 1 ", "ok 1"), (b"0", "bad"), (b"-5", "bad"),
                                      (b"2147483648", "bad"), (b"2147483647", "ok 2147483647"), (b"12a", "bad"),
                                      (b"", "bad"), (b"99999999999999999999", "bad")])
def test_group_ids(driver, raw, want):
    assert driver.one("gid", raw) == want


@pytest.mark.parametrize("raw,want", [
    (b"/spool/1.1\nsgewrap 150001 99\n", "ok 150001 99 /spool/1.1"),
    (b"/spool/1.1\nsgewrap 150001 99\nreap 20000\n", "ok 150001 99 /spool/1.1"),
    (b"/spool/1.1\n", "bad"),                                     # Grid Engine's Perl rshd-wrapper writes these
    (b"/spool/1.1\nsgewrap 150001\n", "bad"), (b"/spool/1.1\nsgewrap 0 5\n", "bad"),
    (b"/spool/1.1\nsgewrap 1 2 3\n", "bad"), (b"\nsgewrap 1 2\n", "bad"), (b"/s\nsgewrap 1 2", "bad"),
    (b"/s\nsgewrap 99999999999 2\n", "bad"), (b"/s\0x\nsgewrap 1 2\n", "bad"),
])
def test_setup_files(driver, raw, want):
    assert driver.one("setup", raw) == want


def test_the_environment_skips_display_krb5ccname_and_lines_without_a_name(driver):
    raw = (b"A=1\nDISPLAY=submit:0\n=x\nnoequals\nB_2=two=2\nKRB5CCNAME=FILE:/tmp/krb5cc_1000\nbad-name=3\nC=\n"
           b"KRB5CCNAMEX=kept\n\0X=1\nLAST=end")
    out = driver.run([("env", raw)])
    lines, count = out.split("\x1e")
    assert lines.split("\x1f")[:-1] == ["A=1", "B_2=two=2", "C=", "KRB5CCNAMEX=kept", "LAST=end"] and count == "5\n"


@pytest.mark.parametrize("name,ok", [("sgetest", True), ("a.b-c_d@e", True), ("-x", False), ("", False),
                                     ("a b", False), ("x" * 64, True), ("x" * 65, False), ("é", False)])
def test_user_names_agree_with_the_python_side(driver, name, ok):
    from sgewrap.rootside.jobspool import valid_user
    assert (driver.one("user", name.encode()) == "ok") is ok is valid_user(name)


@pytest.mark.parametrize("raw,want", [
    (b"/s\nsgewrap 9 9\nshepherd 150001 77\n", "ok 150001 77"),
    (b"/s\nsgewrap 9 9\nreap 5\nshepherd 2 0\n", "ok 2 0"),
    (b"/s\nsgewrap 9 9\n", "bad"), (b"/s\nsgewrap 9 9\nshepherd 1 5\n", "bad"),     # init is no shepherd
    (b"/s\nshepherd 12 5", "bad"), (b"shepherd 12\n", "bad"), (b"shepherd 12 5 6\n", "bad"),
    (b"shepherd 99999999999 5\n", "bad"), (b"shepherd  12 5\n", "bad"),
])
def test_the_shepherd_line_of_an_adopted_login_s_setup_file(driver, raw, want):
    assert driver.one("shepherd", raw) == want


def test_the_python_side_writes_the_line_the_module_reads(tmp_path, driver):
    from sgewrap.rootside import setupfile
    os.chmod(tmp_path, 0o700)
    path = setupfile.create(os.getpid(), "/spool/1.1", str(tmp_path), shepherd=(4711, 99))
    assert driver.one("shepherd", open(path, "rb").read()) == "ok 4711 99"


GID_RANGE_CACHE = b"# sgewrap\nglobal 20000-20100\nnode2 65600-65799\nnode3.example.org 65800-65999,70000\n"


@pytest.mark.parametrize("host, gid, cache", [
    ("vm", 20000, GID_RANGE_CACHE), ("vm", 20101, GID_RANGE_CACHE), ("node2", 65700, GID_RANGE_CACHE),
    ("node2", 20050, GID_RANGE_CACHE), ("node3", 70000, GID_RANGE_CACHE), ("node2.example.org", 65799, GID_RANGE_CACHE),
    ("vm", 5, b""), ("vm", 5, b"node2 1-10\n"), ("vm", 5, b"global 1-x\n"), ("vm", 5, b"# global 1-10\n"),
    ("vm", 5, b"global 10-1\n"), ("vm", 5, b"global 1-10 x\n"), ("vm", 5, b"global 1-10,\n"),
    ("vm", 5, b"\tglobal\t1-10\r\n"), ("vm", 5, b"global 1-10\0\n"), ("vm", 2147483647, b"global 2147483647\n"),
    ("vm", 5, b"global 2147483648\n"), ("vm", 5, b"vm 1-4\nvm 1-10\nglobal 1-10\n"),
])
def test_the_gid_range_cache_is_read_as_the_python_side_reads_it(driver, host, gid, cache):
    from sgewrap.rootside import gidrange
    want = {True: "in", False: "out", None: "none"}[gidrange.gid_in_range(cache, host, gid)]
    assert driver.one("gidrange", b"%s %d\n" % (host.encode(), gid) + cache) == want


@settings(max_examples=300, deadline=None)
@given(host=st.sampled_from(["vm", "node2", "node2.x", "global", "a.b.c"]), gid=st.integers(1, 2 ** 31 - 1),
       lines=st.lists(st.tuples(st.sampled_from([b"global", b"node2", b"node2.y", b"vm", b"#", b"", b"a"]),
                                st.one_of(st.binary(max_size=30),
                                          st.text("0123456789-, \t", max_size=30).map(str.encode))),
                      max_size=6))
def test_the_gid_range_cache_agrees_with_the_python_side(driver, host, gid, lines):
    from sgewrap.rootside import gidrange
    cache = b"".join(name + b" " + value + b"\n" for name, value in lines)
    want = {True: "in", False: "out", None: "none"}[gidrange.gid_in_range(cache, host, gid)]
    assert driver.one("gidrange", b"%s %d\n" % (host.encode(), gid) + cache) == want


KINDS = ("stat", "config", "gid", "setup", "env", "user", "shepherd")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.tuples(st.sampled_from(KINDS), st.binary(max_size=600)),
                          st.tuples(st.just("gidrange"), st.binary(max_size=600).map(lambda b: b"vm 20000\n" + b))),
                min_size=1, max_size=40))
def test_fuzz_no_input_makes_a_parser_read_or_write_out_of_bounds(driver, records):
    """Arbitrary bytes, each record in a buffer of exactly its length: ASan and UBSan abort the driver
    (a failed test) on any overread, overflow or undefined behaviour."""
    driver.run(records)


@settings(max_examples=100, deadline=None)
@given(st.builds(lambda a, b: a + b"\n" + b, st.binary(max_size=1100),
                 st.one_of(st.binary(max_size=60), st.text("sgewrap 0123456789\n", max_size=60).map(str.encode))))
def test_fuzz_a_setup_file_is_honoured_only_in_sgewrap_s_exact_form(driver, raw):
    out = driver.one("setup", raw)
    if out.startswith("ok "):
        _, pid, start, spool = out.split(" ", 3)
        head = b"%s\nsgewrap %s %s\n" % (spool.encode("utf-8", "surrogateescape"), pid.encode(), start.encode())
        assert raw.startswith(head)
