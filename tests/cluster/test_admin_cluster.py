"""The installed ``sgewrap`` against the real one-host Grid Engine (as root).

Every change to the Grid Engine configuration or /etc/pam.d/sshd happens
under ``lib.host_lock()`` and is undone even when a test fails.  The
``*_daemon`` entries reach execd only after 15-90 s; no job runs here, so
nothing waits for that (tests/e2e runs jobs through the applied values).
"""
import os
import socket
import subprocess
import tempfile

import pytest

from lib import TEST_USER, host_lock
from sgewrap import conventions
from sgewrap.admin import pam, sgeconf

pytestmark = pytest.mark.cluster

HOST = socket.gethostname()
ENV = {"SGE_ROOT": "/var/lib/gridengine", "SGE_CELL": "default", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
       "LANG": "C.UTF-8"}


def qconf(*args, check=True):
    proc = subprocess.run(["qconf"] + list(args), env=ENV, capture_output=True, text=True)
    if check:
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc


def local_configs():
    proc = qconf("-sconfl", check=False)
    return sgeconf.parse_list(proc.stdout) if proc.returncode == 0 else []


@pytest.fixture
def sgewrap(host_ready, installed):
    def run(*args):
        return subprocess.run([os.path.join(installed, "sgewrap")] + list(args), env=ENV, capture_output=True,
                              text=True, timeout=300, stdin=subprocess.DEVNULL)
    run.wrappers = installed
    return run


@pytest.fixture
def saved_configuration():
    """Hold the host lock; put the global configuration, the local ones and the PAM file back afterwards."""
    with host_lock():
        before = qconf("-sconf", "global").stdout
        locals_before = {h: qconf("-sconf", h).stdout for h in local_configs()}
        with open(pam.PAM_FILE, "rb") as f:
            pam_before = f.read()
        stack_before = read_or_none(pam.JOB_PAM_FILE)
        try:
            yield before
        finally:
            with open(pam.PAM_FILE, "rb") as f:
                if f.read() != pam_before:
                    with open(pam.PAM_FILE, "wb") as out:
                        out.write(pam_before)
            if read_or_none(pam.JOB_PAM_FILE) != stack_before:
                if stack_before is None:
                    os.unlink(pam.JOB_PAM_FILE)
                else:
                    with open(pam.JOB_PAM_FILE, "wb") as out:
                        out.write(stack_before)
            for host in local_configs():
                if host not in locals_before:
                    qconf("-dconf", host)
            with tempfile.TemporaryDirectory() as tmp:
                for name, text in [("global", before)] + list(locals_before.items()):
                    if qconf("-sconf", name, check=False).stdout != text:
                        qconf("-Mconf", sgeconf.config_file(tmp, name, text))
            assert qconf("-sconf", "global").stdout == before


def read_or_none(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def backup_named_in(output):
    for line in output.splitlines():
        if line.startswith("saved the previous "):
            return line.split(" to ", 1)[1]
    raise AssertionError("no backup named in %r" % output)


def test_apply_check_mismatch_restore_round_trip(sgewrap, saved_configuration, tmp_path):
    # from a cluster still on builtin (what an administrator starts from)
    start = sgeconf.with_entries(sgeconf.parse(saved_configuration), dict.fromkeys(sgeconf.SLOTS, "builtin"))
    with tempfile.TemporaryDirectory() as tmp:
        qconf("-Mconf", sgeconf.config_file(tmp, "global", sgeconf.render(start)))
    before = qconf("-sconf", "global").stdout
    sshd_pam = read_or_none(pam.PAM_FILE)
    if pam.is_job_stack():
        os.unlink(pam.JOB_PAM_FILE)
    applied = sgewrap("config", "ssh", "--tight", "--no-x11", "--apply", "--backup-dir", str(tmp_path))
    assert applied.returncode == 0, applied.stderr
    assert read_or_none(pam.JOB_PAM_FILE).decode() == pam.job_stack(sgewrap.wrappers)
    assert read_or_none(pam.PAM_FILE) == sshd_pam                # the site's stack: not touched
    backup = backup_named_in(applied.stdout)
    with open(backup) as f:
        assert f.read() == before
    now = sgeconf.parse(qconf("-sconf", "global").stdout)
    assert {k: now.get(k) for k in sgeconf.SLOTS} == sgeconf.entries("ssh", sgewrap.wrappers, tight=True, x11=False)
    rest = lambda c: [(k, c.get(k)) for k in c.keys() if k not in sgeconf.SLOTS]  # noqa: E731
    assert rest(now) == rest(sgeconf.parse(before))          # nothing else lost or reordered

    checked = sgewrap("check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.rstrip().splitlines()[-1].startswith("consistent")

    # the selftest of what is configured now, no METHOD named
    tested = sgewrap("selftest", "--user", TEST_USER)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert tested.stdout.count(" pass ") == 3 and "ssh (tight)" in tested.stdout

    # a local configuration whose daemon does not fit the global command
    with tempfile.TemporaryDirectory() as tmp:
        qconf("-Aconf", sgeconf.config_file(tmp, HOST, sgeconf.format_line("rsh_daemon", "/usr/sbin/in.rshd")))
    checked = sgewrap("check")
    assert checked.returncode == 1, checked.stdout
    assert "error: rsh: rsh_command on hosts without a local configuration runs ssh_wrapper (ssh) but " \
           "rsh_daemon on %s is in.rshd (rsh)" % HOST in checked.stdout
    qconf("-dconf", HOST)

    restored = sgewrap("config", "--restore", backup)
    assert restored.returncode == 0, restored.stderr
    assert qconf("-sconf", "global").stdout == before         # byte for byte
    assert read_or_none(pam.JOB_PAM_FILE) is None and read_or_none(pam.PAM_FILE) == sshd_pam


def test_apply_to_a_new_local_configuration_and_restore(sgewrap, saved_configuration, tmp_path):
    if HOST in local_configs():
        pytest.skip("%s already has a local configuration" % HOST)
    applied = sgewrap("config", "rsh", "--apply", "--host", HOST, "--backup-dir", str(tmp_path))
    assert applied.returncode == 0, applied.stderr
    local = sgeconf.parse(qconf("-sconf", HOST).stdout)
    assert local.as_dict() == sgeconf.entries("rsh", sgewrap.wrappers)
    checked = sgewrap("check", "--json")
    assert checked.returncode == 1           # the other hosts' rsh_command does not fit in.rshd on HOST
    restored = sgewrap("config", "--restore", backup_named_in(applied.stdout))
    assert restored.returncode == 0, restored.stderr
    assert HOST not in local_configs()
    assert qconf("-sconf", "global").stdout == saved_configuration


def test_qconf_refusal_is_one_line(sgewrap, saved_configuration, tmp_path):
    bogus = tmp_path / "saved"
    bogus.write_text("#no-such-host.invalid:\nmailer /usr/bin/mail\n")
    result = sgewrap("config", "--restore", str(bogus))
    assert result.returncode == 1
    assert result.stderr.startswith("sgewrap: error: 'qconf -Aconf ") and result.stderr.count("\n") == 1
    assert "no-such-host.invalid" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_live_reads_every_configuration(sgewrap):
    result = sgewrap("check", "--json")
    assert result.returncode in (0, 1), result.stderr
    assert '"this_host": "%s"' % HOST in result.stdout


@pytest.mark.parametrize("args", [["ssh"], ["ssh", "--tight"]], ids=["ssh", "ssh-tight"])
def test_selftest_passes(sgewrap, saved_configuration, args):
    if "--tight" in args:      # the job sshds' PAM service for these wrappers (config --apply writes it)
        if os.path.exists(pam.JOB_PAM_FILE) and not pam.is_job_stack():
            os.unlink(pam.JOB_PAM_FILE)
        pam.install_job_stack(sgewrap.wrappers)
    result = sgewrap("selftest", "--user", TEST_USER, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[2:]]
    assert len(rows) == 3
    for slot, row in zip(conventions.SLOT, rows):
        assert slot in row and "pass" in row, row
    assert "selftest [3/3]" in result.stderr             # progress while it runs
    if "--tight" in args:
        assert result.stdout.count("with the job's group") == 3


def test_selftest_tight_lends_the_job_stack_and_fails_with_a_broken_one(sgewrap, saved_configuration):
    if os.path.exists(pam.JOB_PAM_FILE):
        os.unlink(pam.JOB_PAM_FILE)
    result = sgewrap("selftest", "--user", TEST_USER, "ssh", "--tight")
    assert result.returncode == 0, result.stdout + result.stderr     # before config --apply: lent for the run
    assert "wrote %s for this run" % pam.JOB_PAM_FILE in result.stderr and not os.path.exists(pam.JOB_PAM_FILE)
    broken = "".join(ln for ln in pam.job_stack(sgewrap.wrappers).splitlines(True)
                     if not (ln.startswith("auth") and "pam_sgewrap.so" in ln))
    with open(pam.JOB_PAM_FILE, "w") as f:
        f.write(broken)
    result = sgewrap("selftest", "--user", TEST_USER, "ssh", "--tight")
    assert result.returncode == 1
    assert result.stdout.count("FAIL") == 3
    assert "the remote session lacks the job's group" in result.stdout
    assert "lacks pam_sgewrap.so job in its auth stack" in result.stdout


def test_front_goes_in_and_out_through_dpkg_divert(sgewrap, saved_configuration):
    """sgewrap front on Debian's packaged Grid Engine: the package's qlogin/qrsh links are diverted,
    the front runs qsh under their names, and --remove leaves dpkg and the links as they were."""
    def diversions():
        return subprocess.run(["dpkg-divert", "--list", "*/gridengine/q*"], capture_output=True,
                              text=True).stdout
    links = {n: os.readlink("/usr/lib/gridengine/" + n) for n in ("qlogin", "qrsh")
             if os.path.islink("/usr/lib/gridengine/" + n)}
    removed = sgewrap("front", "--remove")             # a clean start, whatever an earlier run left
    assert removed.returncode == 0, removed.stderr
    installed = sgewrap("front", "--install")
    assert installed.returncode == 0, installed.stderr
    assert "front (adds -pty no)" in installed.stdout and "sgewrap-orig" in diversions()
    help_text = subprocess.run(["/usr/bin/qlogin", "-help"], capture_output=True, text=True, env=ENV)
    assert help_text.stdout.startswith("SGE") or "usage: qlogin" in help_text.stdout, help_text
    removed = sgewrap("front", "--remove")
    assert removed.returncode == 0, removed.stderr
    assert "sgewrap" not in diversions()
    for name, target in links.items():
        assert os.readlink("/usr/lib/gridengine/" + name) == target
