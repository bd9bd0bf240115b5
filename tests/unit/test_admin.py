"""The ``sgewrap`` command without Grid Engine: saved configurations and a fake qconf.

``check --from`` reads the scenarios of tests/data/sgeconf (README there);
``config --apply/--restore`` and ``check`` without --from talk to a fake
``qconf`` (first in PATH) that keeps configurations as files and re-renders
them the way qconf does.  tests/cluster/test_admin_cluster.py does the same
against the real qconf.
"""
import json
import os
import stat
import sys

import pytest

import lib
from lib import WRAPPERS_SRC
from sgewrap import methods
from sgewrap.admin import cli
from sgewrap.admin import pam, sgeconf
from sgewrap.admin import check, config
from sgewrap.rootside import gidrange

DATA = os.path.join(lib.DATA, "sgeconf")
W = "/opt/sge/util/resources/wrappers"


def this_hosts_sshd(monkeypatch, root):
    """Where ``sgewrap`` looks at this host's sshd (the default root of the one detecting function)."""
    monkeypatch.setattr(methods.sshd_uses_pam_service_name, "__defaults__", (root,))


@pytest.fixture(autouse=True)
def openssh_92(tmp_path, monkeypatch):
    """This host's sshd is OpenSSH 9.2 (no sshd-session) for every test here, whatever the machine's is;
    the fake tree's root."""
    root = str(tmp_path / "openssh-9.2")
    this_hosts_sshd(monkeypatch, root)
    return root


@pytest.fixture
def openssh_98(tmp_path, monkeypatch):
    """This host's sshd is OpenSSH 9.8 or later: sshd-session exists (in a fake tree); the tree's root."""
    root = tmp_path / "openssh-9.8"
    session = root / methods.SSHD_SESSION.lstrip("/")
    session.parent.mkdir(parents=True)
    session.write_text("")
    this_hosts_sshd(monkeypatch, str(root))
    return str(root)


def sgewrap(capsys, *argv):
    """(exit status, stdout, stderr) of ``sgewrap ARGV...``."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(list(argv))
    out = capsys.readouterr()
    return exit_.value.code, out.out, out.err


def scenario(name):
    return os.path.join(DATA, name)


# --- check --from -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["builtin", "consistent", "heterogeneous", "unknown-daemon", "tight"])
def test_consistent_scenarios_exit_0(capsys, name):
    code, out, err = sgewrap(capsys, "check", "--from", scenario(name))
    assert (code, err) == (0, "")
    assert "MISMATCH" not in out and "\nerror:" not in out
    assert out.rstrip().splitlines()[-1].startswith("consistent")


def test_consistent_table_lists_every_host_pair(capsys):
    code, out, _ = sgewrap(capsys, "check", "--from", scenario("consistent"))
    for pair in ("node01 -> node01", "node01 -> *", "* -> node01", "* -> *"):
        assert sum(line.startswith(pair + " ") for line in out.splitlines()) == 3, pair
    assert "ssh: rshdwrapper" in out and "ssh: qlogin_wrapper --no-x11" in out


def test_daemon_mismatch_names_host_and_slot(capsys):
    code, out, _ = sgewrap(capsys, "check", "--from", scenario("daemon-mismatch"))
    assert code == 1
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: rsh: rsh_command on node02 runs ssh_wrapper (ssh) but rsh_daemon on node02 is in.rshd (rsh)",
        "error: rsh: rsh_command on hosts without a local configuration runs ssh_wrapper (ssh) but rsh_daemon "
        "on node02 is in.rshd (rsh)"]
    rows = [line.split() for line in out.splitlines() if line.startswith("node02 -> node02 ")]
    assert [r[3:] for r in rows if r[3] == "rsh"] == [["rsh", "ssh:", "ssh_wrapper", "rsh:", "in.rshd", "MISMATCH"]]
    assert out.rstrip().endswith("NOT consistent: 2 errors")


def test_command_mismatch_on_a_submit_host(capsys):
    code, out, _ = sgewrap(capsys, "check", "--from", scenario("command-mismatch"))
    assert code == 1
    assert "error: qlogin: qlogin_command on login01 runs telnet (telnet) but qlogin_daemon on " \
           "hosts without a local configuration is sshd -i (ssh)" in out
    assert "warning: qlogin_command: telnet is used: unencrypted" in out


def test_placeholders_are_flagged(capsys):
    code, out, _ = sgewrap(capsys, "check", "--from", scenario("placeholders"))
    assert code == 1
    assert "error: global configuration: rsh_command holds $SGE_ROOT literally" in out
    assert "error: global configuration: rsh_daemon holds $SGE_ROOT literally" in out
    assert "error: global configuration: rsh_daemon '$SGE_ROOT/utilbin/$ARC/rshd' is not an absolute path" in out


def test_relative_daemon(capsys):
    code, out, _ = sgewrap(capsys, "check", "--from", scenario("relative-daemon"))
    assert code == 1
    assert "rsh_daemon 'sshd' is not an absolute path: the shepherd refuses to start it" in out


def test_unknown_programs_are_a_warning(capsys):
    code, out, _ = sgewrap(capsys, "check", "--from", scenario("unknown-daemon"))
    assert code == 0
    assert "warning: hosts without a local configuration: cannot tell which protocol rsh_command" in out


def test_heterogeneous_cluster(capsys):
    code, out, _ = sgewrap(capsys, "check", "--json", "--from", scenario("heterogeneous"))
    result = json.loads(out)
    assert code == 0 and result["consistent"]
    assert result["configurations"] == ["global", "arm01", "arm02", "ppc01"]
    assert len(result["pairs"]) == 3 * 4 * 4      # (3 hosts + the others) squared, 3 slots
    assert {p["status"] for p in result["pairs"]} == {"ok"}
    assert result["entries"]["arm01"]["rsh_daemon"] == "/opt/sge/utilbin/lx-arm64/rshd -l"
    assert {p["severity"] for p in result["problems"]} == {"warning"}
    # unencrypted rlogin and rsh, and the -pty no note for the wrapped qrsh-without-command
    assert sorted((p["slot"], "unencrypted" in p["message"]) for p in result["problems"]) == [
        ("rlogin_command", False), ("rlogin_command", True), ("rsh_command", True)]


def test_heterogeneous_mismatch(capsys):
    code, out, _ = sgewrap(capsys, "check", "--json", "--from", scenario("heterogeneous-mismatch"))
    result = json.loads(out)
    assert code == 1 and not result["consistent"]
    bad = [p for p in result["pairs"] if p["status"] == "MISMATCH"]
    assert {(p["exec_host"], p["slot"]) for p in bad} == {("arm02", "rsh")}
    assert {p["client_host"] for p in bad} == {"arm01", "arm02", "*"}
    assert all(p["host"] == "arm02" and p["slot"] == "rsh" for p in result["problems"] if p["severity"] == "error")


def test_sconfl_is_optional(tmp_path, capsys):
    for name in ("global", "node02"):
        (tmp_path / name).write_text(open(os.path.join(scenario("daemon-mismatch"), name)).read())
    code, out, _ = sgewrap(capsys, "check", "--from", str(tmp_path))
    assert code == 1 and "rsh_daemon on node02 is in.rshd" in out


def test_unreadable_configuration_exits_2(tmp_path, capsys):
    code, out, err = sgewrap(capsys, "check", "--from", str(tmp_path / "nowhere"))
    assert (code, out) == (2, "")
    assert err == "sgewrap: error: %s is not a directory\n" % (tmp_path / "nowhere")
    (tmp_path / "global").write_text("#global:\n")
    (tmp_path / "sconfl").write_text("node09\n")
    code, out, err = sgewrap(capsys, "check", "--from", str(tmp_path))
    assert code == 2 and err.startswith("sgewrap: error: cannot read %s: " % (tmp_path / "node09"))


# --- what can only be checked on this host --------------------------------------------------------


def load(name):
    from sgewrap.admin.common import read_dir
    return read_dir(scenario(name))


def job_stack(tmp_path, text=None):
    path = tmp_path / "sge-sshd"
    path.write_text(pam.job_stack(W) if text is None else text)
    return str(path)


def test_tight_without_the_job_pam_service_on_this_host(tmp_path):
    pam_file = tmp_path / "sshd"
    pam_file.write_text("@include common-auth\n")
    glob, hosts = load("tight")        # rshdwrapper (sgewrap 0.1): sshd under the job's PAM service now
    missing = str(tmp_path / "absent")
    report = check.analyse(glob, hosts, here="node05", pam_file=str(pam_file), executable=lambda p: True,
                           job_pam_file=missing)
    assert [str(p) for p in report.errors] == [
        "error: node05: qlogin_daemon, rlogin_daemon, rsh_daemon run the job sshd, but %s: No such file or "
        "directory (sgewrap config ssh --tight --apply writes it)" % missing]
    good = job_stack(tmp_path)
    assert check.analyse(glob, hosts, here="node05", pam_file=str(pam_file), executable=lambda p: True,
                         job_pam_file=good).consistent
    # the same with sgewrap 0.2's values
    glob = sgeconf.with_entries(glob, sgeconf.entries("ssh", W, tight=True))
    assert check.analyse(glob, {}, here="node05", pam_file=str(pam_file), executable=lambda p: True,
                         job_pam_file=good).consistent
    # a host whose local configuration is not tight needs no job stack
    glob, hosts = load("consistent")
    hosts["node01"] = sgeconf.with_entries(hosts["node01"], sgeconf.entries("ssh", W))
    report = check.analyse(glob, hosts, here="node01", pam_file=str(pam_file), executable=lambda p: True,
                           job_pam_file=missing)
    assert not any("pam" in str(p).lower() for p in report.problems)


@pytest.mark.parametrize("change,why", [
    (lambda t: t.replace("auth     required  pam_sgewrap.so", "#"), "lacks pam_sgewrap.so job in its auth stack"),
    (lambda t: t.replace("account  required  pam_sgewrap.so", "#"), "lacks pam_sgewrap.so job in its account"),
    (lambda t: t.replace("session  required  pam_sgewrap.so", "#"), "lacks pam_sgewrap.so job in its session"),
    (lambda t: t.replace("auth     required  pam_sgewrap.so job", "auth required pam_sge-qrsh-setup.so\n#"),
     "was written by sgewrap 0.2"),
    (lambda t: t.replace("@include common-session-noninteractive", "@include common-session"), "pam_systemd.so"),
    (lambda t: t + "session required pam_limits.so\n", "pam_limits.so: it sets limits.conf's limits"),
])
def test_a_job_stack_that_would_let_sessions_escape_is_an_error(tmp_path, change, why):
    (tmp_path / "common-session").write_text("session optional pam_systemd.so\n")
    (tmp_path / "common-session-noninteractive").write_text("session required pam_unix.so\n")
    path = job_stack(tmp_path, change(pam.job_stack(W)))
    glob = sgeconf.with_entries(load("builtin")[0], sgeconf.entries("ssh", W, tight=True))
    report = check.analyse(glob, {}, here="n1", pam_file=os.devnull, executable=lambda p: True, job_pam_file=path)
    assert any(why in str(p) for p in report.errors), [str(p) for p in report.problems]


#: what sgewrap 0.2 wrote: a program run at close_session, as root, with the PAM environment
JOB_STACK_0_2_CLOSE = "session  optional  pam_exec.so quiet type=close_session %s/node_access session\n" % W


def test_a_job_stack_of_0_2_is_an_error_with_the_migration(tmp_path):
    """Root-hooks issue, step 1: 0.2's close_session line runs node_access as root with the session's
    PAM environment."""
    assert not pam.session_hooks(pam.job_stack(W).splitlines())
    path = job_stack(tmp_path, pam.job_stack(W).replace("@include common-password\n",
                                                        JOB_STACK_0_2_CLOSE + "@include common-password\n"))
    glob = sgeconf.with_entries(load("builtin")[0], sgeconf.entries("ssh", W, tight=True))
    report = check.analyse(glob, {}, here="n1", pam_file=os.devnull, executable=lambda p: True, job_pam_file=path)
    assert sorted(p.message.split(" but ")[1] for p in report.errors) == [
        "%s was written by sgewrap 0.2: it runs node_access as root at session close with the session's PAM "
        "environment (whatever a module puts there from the user's files reaches a root program's loader); "
        "re-run 'sgewrap config ssh --tight --apply' (README: Security advisory)" % path,
        "%s was written by sgewrap 0.2: pam_exec runs node_access (a Python start per session; keyboard-interactive "
        "logins are not tied) and pam_sge-qrsh-setup honours setup files it never checks; re-run 'sgewrap config "
        "ssh --tight --apply' (README: Security advisory)" % path]
    assert pam.write_job_stack(W, path) and check.analyse(
        glob, {}, here="n1", pam_file=os.devnull, executable=lambda p: True, job_pam_file=path).consistent


def adopted(tmp_path):
    """(wrappers with an isolated node_access, a PAM file holding the adopt block)."""
    wrappers = tmp_path / "w"
    wrappers.mkdir()
    (wrappers / "node_access").write_text("#!/usr/bin/python3 -I\n")
    pam_file = tmp_path / "sshd"
    pam_file.write_text("@include common-auth\n")
    pam.add_adopt(str(wrappers), path=str(pam_file))
    return wrappers, pam_file


def test_an_adopt_block_of_0_2_is_an_error_and_apply_replaces_it(capsys, tmp_path, fake_qconf):
    wrappers, pam_file = adopted(tmp_path)
    assert "close_session" not in pam_file.read_text()
    old = pam_file.read_text().replace(pam.ADOPT_END, "session optional pam_exec.so quiet type=close_session "
                                       "%s/node_access adopt\n%s" % (wrappers, pam.ADOPT_END))
    pam_file.write_text(old)
    glob = load("builtin")[0]
    report = check.analyse(glob, {}, here="n1", pam_file=str(pam_file), executable=lambda p: True)
    assert [p.message for p in report.errors] == [
        "n1: %s: the adopt block was written by sgewrap 0.2: it runs node_access as root at session close with "
        "the user's PAM environment (~/.pam_environment: LD_PRELOAD... gives every user it admits root); re-run "
        "'sgewrap node-access --adopt --apply' (README: Security advisory)" % pam_file]
    code, out, err = sgewrap(capsys, "node-access", "--adopt", "--apply", "--wrappers", str(wrappers),
                             "--pam-file", str(pam_file), "--backup-dir", str(tmp_path / "b"))
    assert (code, err) == (0, "") and "close_session" not in pam_file.read_text()
    assert check.analyse(glob, {}, here="n1", pam_file=str(pam_file), executable=lambda p: True).consistent


def test_the_old_module_line_in_sshd_is_flagged_with_the_migration(tmp_path):
    pam_file = tmp_path / "sshd"
    pam_file.write_text("auth required pam_sge-qrsh-setup.so\n@include common-auth\n")
    glob = sgeconf.with_entries(load("builtin")[0], sgeconf.entries("ssh", W, tight=True))
    report = check.analyse(glob, {}, here="n1", pam_file=str(pam_file), executable=lambda p: True,
                           job_pam_file=job_stack(tmp_path))
    assert report.consistent
    assert any("still has 'auth required pam_sge-qrsh-setup.so' (sgewrap 0.1)" in str(p) and "Migrate" in str(p)
               for p in report.warnings)
    # Grid Engine's Perl rshd-wrapper does need it there
    perl = "/usr/share/gridengine/util/resources/wrappers/rshd-wrapper"
    glob = sgeconf.with_entries(glob, {"rsh_daemon": perl, "rlogin_daemon": perl, "qlogin_daemon": perl})
    pam_file.write_text("@include common-auth\n")
    report = check.analyse(glob, {}, here="n1", pam_file=str(pam_file), executable=lambda p: True)
    assert any("run Grid Engine's rshd-wrapper but" in str(p) for p in report.errors)


@pytest.mark.parametrize("shebang,why", [("#!/usr/bin/env python3\n", "looked up in the caller's PATH"),
                                         ("#!/usr/bin/python3\n", "no -I"), ("#!/opt/venv/bin/python -I\n", None),
                                         ("#!/bin/sh\n", None)])
def test_a_root_run_python_script_must_be_isolated(tmp_path, shebang, why):
    """pip's console scripts lack -I: run as the shepherd's daemon they import the job owner's PYTHONPATH."""
    script = tmp_path / "rshdwrapper"
    script.write_text(shebang + "from sgewrap.rootside.rshd import main\nmain()\n")
    glob = sgeconf.with_entries(load("builtin")[0], {"rsh_daemon": str(script) + " rshd", "rsh_command":
                                                     W + "/rsh_adapter"})
    report = check.analyse(glob, {}, here="n1", pam_file=os.devnull, executable=lambda p: True)
    found = [str(p) for p in report.errors if "as root" in str(p)]
    assert (why in found[0]) if why else not found, found


def test_daemon_not_executable_on_this_host(capsys, tmp_path):
    code, out, _ = sgewrap(capsys, "check", "--from", scenario("tight"), "--this-host", "vm",
                           "--pam-file", os.devnull, "--job-pam-file", "/nonexistent/sge-sshd")
    assert code == 1
    assert "error: vm: rsh_daemon %s/rshdwrapper is missing on this host: the shepherd refuses to start it" % W in out
    assert "run the job sshd, but /nonexistent/sge-sshd: No such file" in out
    code, out, _ = sgewrap(capsys, "check", "--from", scenario("tight"))
    assert code == 0 and "note: executables, the PAM lines and sshd were not checked" in out


def test_client_in_a_daemon_slot():
    glob, hosts = load("builtin")
    glob = sgeconf.with_entries(glob, {"rsh_command": "/usr/sbin/sshd -i", "rsh_daemon": "/usr/bin/ssh"})
    messages = [str(p) for p in check.analyse(glob, {}).errors]
    assert "error: global configuration: rsh_daemon runs ssh, a client, not a daemon" in messages
    assert "error: global configuration: rsh_command runs sshd, a daemon, not a client" in messages


# --- a fake qconf: live reading, apply, restore, its failures -------------------------------------

FAKE_QCONF = r'''#!%(python)s -I
"""A stand-in qconf keeping configurations as files in $FAKE_QCONF_STORE, shown like qconf shows them."""
import os, sys
sys.path.insert(0, %(src)r)
from sgewrap.admin import sgeconf
store = os.environ["FAKE_QCONF_STORE"]
args = sys.argv[1:]
with open(os.path.join(store, ".log"), "a") as log:
    log.write(" ".join(args) + "\n")
if os.environ.get("FAKE_QCONF_FAIL"):
    sys.stderr.write("error: commlib error: got select error (Connection refused)\nunable to contact qmaster\n")
    sys.exit(1)
def path(name):
    return os.path.join(store, name)
if args == ["-sconfl"]:
    hosts = sorted(n for n in os.listdir(store) if n != "global" and not n.startswith((".", "queue.")))
    if not hosts:
        sys.stderr.write("no config defined\n")
        sys.exit(1)
    print("\n".join(hosts))
elif args[0] == "-sconf":
    name = args[1] if len(args) > 1 else "global"
    if not os.path.exists(path(name)):
        sys.stderr.write("configuration %%s not defined\n" %% name)
        sys.exit(1)
    if open(path(name)).read().startswith("#UNRESOLVABLE"):
        sys.stderr.write('can\'t resolve hostname "%%s": can\'t resolve host name\n' %% name)
        sys.exit(1)
    sys.stdout.write(open(path(name)).read())
elif args[0] in ("-Mconf", "-Aconf"):
    name = os.path.basename(args[1])
    if (args[0] == "-Aconf") == os.path.exists(path(name)):
        sys.stderr.write("error: %%s %%s\n" %% (name, "exists" if args[0] == "-Aconf" else "does not exist"))
        sys.exit(1)
    # kept as given, comments and blank lines dropped, under qconf's header and final empty line
    text = "".join(l.text for l in sgeconf.parse(open(args[1]).read()).lines if l.key)
    with open(path(name), "w") as f:
        f.write("#%%s:\n%%s\n" %% (name, text))
    print('root@vm modified "%%s" in configuration list' %% name)
elif args == ["-sel"]:
    print("\n".join(sorted(n for n in os.listdir(store) if n != "global" and not n.startswith((".", "queue.")))))
elif args == ["-sql"]:
    queues = sorted(n[6:] for n in os.listdir(store) if n.startswith("queue."))
    if not queues:
        sys.stderr.write("no cqueue list defined\n")
        sys.exit(1)
    print("\n".join(queues))
elif args[0] == "-sq":
    sys.stdout.write(open(path("queue." + args[1])).read())
elif args[:2] == ["-mattr", "queue"]:
    attribute, value, name = args[2:5]
    lines = open(path("queue." + name)).read().splitlines(True)
    lines = ["%%-21s %%s\n" %% (attribute, value) if l.split()[:1] == [attribute] else l for l in lines]
    open(path("queue." + name), "w").write("".join(lines))
    print('root@vm modified "%%s" in cluster queue list' %% name)
elif args[0] == "-Mq":
    text = open(args[1]).read()
    open(path("queue." + text.split()[1]), "w").write(text)
elif args[0] == "-dconf":
    os.unlink(path(args[1]))
    print('root@vm removed "%%s" from configuration list' %% args[1])
else:
    sys.exit(2)
'''


@pytest.fixture
def fake_qconf(tmp_path, monkeypatch):
    """A store holding the 'consistent' scenario's configurations; returns its path."""
    bin_dir, store = tmp_path / "bin", tmp_path / "store"
    bin_dir.mkdir()
    store.mkdir()
    script = bin_dir / "qconf"
    script.write_text(FAKE_QCONF % {"python": sys.executable, "src": WRAPPERS_SRC})
    script.chmod(0o755)
    for name in ("global", "node01"):
        (store / name).write_text(open(os.path.join(scenario("builtin" if name == "global" else "consistent"),
                                                    name)).read())
    monkeypatch.setenv("PATH", "%s:%s" % (bin_dir, os.environ["PATH"]))
    monkeypatch.setenv("FAKE_QCONF_STORE", str(store))
    # a Grid Engine client directory of this host's (where config --apply puts the qlogin/qrsh front)
    from sgewrap import locate
    clients = tmp_path / "sge" / "bin" / locate.arch_guesses()[0]
    clients.mkdir(parents=True)
    (clients / "qsh").write_text("#!/bin/sh\necho \"$0 $*\"\n")
    (clients / "qsh").chmod(0o755)
    for name in ("qlogin", "qrsh"):
        (clients / name).symlink_to("qsh")
    monkeypatch.setenv("SGE_ROOT", str(tmp_path / "sge"))
    # never the real qconf: these tests change configurations
    from sgewrap.admin.common import run
    run(["qconf", "-sconfl"], retcode=None)
    if not (store / ".log").exists():
        pytest.fail("the fake qconf was not the one run: refusing to go on", pytrace=False)
    (store / ".log").unlink()
    return store


def qconf_log(store):
    return (store / ".log").read_text().splitlines()


def test_check_reads_qconf(fake_qconf, capsys):
    code, out, err = sgewrap(capsys, "check", "--this-host", "nowhere-host")
    assert code == 0, out + err
    assert "configurations: global, node01 (local)" in out
    assert qconf_log(fake_qconf) == ["-sconf global", "-sconfl", "-sconf node01", "-sql", "-sel", "-ss"]


def test_qconf_failure_is_one_line(fake_qconf, capsys, monkeypatch):
    monkeypatch.setenv("FAKE_QCONF_FAIL", "1")
    code, out, err = sgewrap(capsys, "check")
    assert (code, out) == (2, "")
    assert err == ("sgewrap: error: 'qconf -sconf global' failed with exit status 1: error: commlib error: got "
                   "select error (Connection refused) / unable to contact qmaster\n")


def test_qconf_missing(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    code, out, err = sgewrap(capsys, "check")
    assert code == 2
    assert err == "sgewrap: error: qconf: command not found in PATH (source $SGE_ROOT/$SGE_CELL/common/settings.sh " \
                  "first)\n"


def test_apply_then_restore_global(fake_qconf, capsys, tmp_path):
    before = (fake_qconf / "global").read_text()
    backups = tmp_path / "backups"
    stack = tmp_path / "pam.d" / "sge-sshd"
    wrappers = tmp_path / "wrappers"
    wrappers.mkdir()
    hook = wrappers / "node_access"
    hook.write_text("#!/usr/bin/python3\n")         # pip's kind of script: not isolated
    code, out, err = sgewrap(capsys, "config", "ssh", "--tight", "--no-x11", "--wrappers", str(wrappers),
                             "--apply", "--backup-dir", str(backups), "--job-pam-file", str(stack))
    assert code == 1 and "would run as root with '#!/usr/bin/python3' (no -I: not isolated)" in err
    hook.write_text("#!/usr/bin/python3 -I\n")
    W = str(wrappers)
    code, out, err = sgewrap(capsys, "config", "ssh", "--tight", "--no-x11", "--wrappers", W, "--apply",
                             "--backup-dir", str(backups), "--job-pam-file", str(stack))
    assert code == 1 and "cannot write %s" % stack in err      # no pam.d here: nothing applied
    assert not backups.exists() and (fake_qconf / "global").read_text() == before
    stack.parent.mkdir()
    code, out, err = sgewrap(capsys, "config", "ssh", "--tight", "--no-x11", "--wrappers", W, "--apply",
                             "--backup-dir", str(backups), "--job-pam-file", str(stack))
    assert (code, err) == (0, "")
    assert stack.read_text() == pam.job_stack(W) and "wrote %s" % stack in out
    clients = next((tmp_path / "sge" / "bin").iterdir())
    assert "front: %s now adds -pty no" % (clients / "qlogin") in out
    assert os.readlink(clients / "qlogin.sgewrap-orig") == "qsh" and "-pty no" in (clients / "qrsh").read_text()
    saved = list(backups.iterdir())
    assert len(saved) == 1 and saved[0].read_text() == before and saved[0].name.startswith("sge_conf.global.")
    assert stat.S_IMODE(saved[0].stat().st_mode) == 0o600
    assert "saved the previous global configuration to %s" % saved[0] in out
    after = sgeconf.parse((fake_qconf / "global").read_text())
    assert {k: after.get(k) for k in sgeconf.SLOTS} == sgeconf.entries("ssh", W, tight=True, x11=False)
    others = lambda conf: [(k, conf.get(k)) for k in conf.keys() if k not in sgeconf.SLOTS]  # noqa: E731
    assert others(after) == others(sgeconf.parse(before))
    assert any(line.startswith("-Mconf ") for line in qconf_log(fake_qconf))
    code, out, err = sgewrap(capsys, "config", "--restore", str(saved[0]), "--job-pam-file", str(stack))
    assert (code, err) == (0, "")
    assert (fake_qconf / "global").read_text() == before
    assert "restored the global configuration from %s" % saved[0] in out
    assert not stack.exists() and "removed %s" % stack in out
    assert os.readlink(clients / "qlogin") == "qsh" and os.readlink(clients / "qrsh") == "qsh"
    assert not (clients / "qlogin.sgewrap-orig").exists()


def test_a_configuration_this_host_cannot_read_is_left_out_of_its_gid_range_cache(
        fake_qconf, capsys, tmp_path, gid_range_cache):
    """node4 (the Debian 13 test host) resolves only itself and the master: qconf -sconf node2 fails there.
    Its own line and the global one are what its reaper needs: the others are left out, and said so."""
    (fake_qconf / "node02").write_text("#UNRESOLVABLE\n")
    code, out, err = sgewrap(capsys, "config", "ssh", "--wrappers", W, "--apply", "--backup-dir", str(tmp_path / "b"))
    assert (code, err) == (0, "")
    assert "wrote %s: global 65400-65500 (a closed session's leftovers are killed by the job's group id only " \
           "inside it); not read here: node02 (qconf -sconf failed for it; this host's own line does not depend " \
           "on it)" % gid_range_cache in out


def test_check_from_a_host_that_cannot_resolve_another_says_so_and_checks_the_rest(fake_qconf, capsys):
    """Before, check on node4 stopped at once with 'qconf -sconf node2' failing there."""
    (fake_qconf / "node02").write_text("#UNRESOLVABLE\n")
    code, out, err = sgewrap(capsys, "check", "--this-host", "nowhere-host")
    assert (code, err) == (0, ""), out + err
    assert "node02: not checked from here: 'qconf -sconf node02' fails on this host (the name does not resolve " \
           "here); run check where it does" in out


def test_apply_writes_the_gid_range_cache_of_every_configuration(fake_qconf, capsys, tmp_path, gid_range_cache):
    """The session reaper's cache (sgewrap.rootside.gidrange): the global gid_range and each local one,
    whichever host --apply runs on; rewritten by every --apply, so it follows qconf."""
    (fake_qconf / "node02").write_text("#node02:\ngid_range 20000-20100\n")
    code, out, err = sgewrap(capsys, "config", "ssh", "--wrappers", W, "--apply", "--backup-dir", str(tmp_path / "b"))
    assert (code, err) == (0, "")
    assert "wrote %s: global 65400-65500; node02 20000-20100" % gid_range_cache in out
    assert gidrange.read() == (gidrange.HEADER + "global 65400-65500\nnode02 20000-20100\n").encode()
    assert (os.stat(gid_range_cache).st_mode & 0o7777) == 0o644
    assert gidrange.verdict(20000, host="node02")[0] == gidrange.IN
    assert gidrange.verdict(20000, host="node01")[0] == gidrange.OUT
    (fake_qconf / "node02").write_text("#node02:\ngid_range 30000-30100\n")
    code, out, _ = sgewrap(capsys, "config", "ssh", "--wrappers", W, "--apply", "--backup-dir", str(tmp_path / "b"))
    assert code == 0 and "nothing changed" in out and "node02 30000-30100" in out
    assert gidrange.verdict(30000, host="node02")[0] == gidrange.IN


def test_a_cache_that_cannot_be_written_is_said_and_apply_goes_on(fake_qconf, capsys, tmp_path, gid_range_cache):
    os.makedirs(os.path.dirname(gid_range_cache), mode=0o777)
    os.chmod(os.path.dirname(gid_range_cache), 0o777)
    code, out, err = sgewrap(capsys, "config", "ssh", "--wrappers", W, "--apply", "--backup-dir", str(tmp_path / "b"))
    assert (code, err) == (0, "") and "warning: cannot write %s" % gid_range_cache in out
    assert not os.path.exists(gid_range_cache)


def test_apply_twice_changes_nothing(fake_qconf, capsys, tmp_path):
    args = ["config", "ssh", "--wrappers", W, "--apply", "--backup-dir", str(tmp_path / "b")]
    assert sgewrap(capsys, *args)[0] == 0
    code, out, _ = sgewrap(capsys, *args)
    assert code == 0 and "nothing changed" in out
    assert len(list((tmp_path / "b").iterdir())) == 1


def test_apply_to_a_new_local_configuration_and_restore_deletes_it(fake_qconf, capsys, tmp_path):
    code, out, err = sgewrap(capsys, "config", "rsh", "--wrappers", W, "--apply", "--host", "node02",
                             "--backup-dir", str(tmp_path / "b"))
    assert (code, err) == (0, "")
    assert any(line.startswith("-Aconf ") for line in qconf_log(fake_qconf))
    local = sgeconf.parse((fake_qconf / "node02").read_text())
    assert local.as_dict() == sgeconf.entries("rsh", W)
    saved = next((tmp_path / "b").iterdir())
    assert sgeconf.parse(saved.read_text()).absent
    code, out, _ = sgewrap(capsys, "check", "--this-host", "x")
    assert code == 1 and "rsh_daemon on node02 is in.rshd" in out
    code, out, err = sgewrap(capsys, "config", "--restore", str(saved), "--job-pam-file", str(tmp_path / "stack"))
    assert (code, err) == (0, "") and not (fake_qconf / "node02").exists()
    assert "-dconf node02" in qconf_log(fake_qconf)


def test_apply_to_an_existing_local_configuration(fake_qconf, capsys, tmp_path):
    before = (fake_qconf / "node01").read_text()
    code, out, err = sgewrap(capsys, "config", "ssh", "--wrappers", W, "--apply", "--host", "node01",
                             "--backup-dir", str(tmp_path / "b"))
    assert code == 0, err
    local = sgeconf.parse((fake_qconf / "node01").read_text())
    assert local.keys()[:2] == ["execd_spool_dir", "mailer"] and local.keys()[2:] == list(sgeconf.SLOTS)
    assert sgewrap(capsys, "config", "--restore", str(next((tmp_path / "b").iterdir())),
                   "--job-pam-file", str(tmp_path / "stack"))[0] == 0
    assert (fake_qconf / "node01").read_text() == before


def test_restore_refuses_a_file_without_a_name(capsys, tmp_path):
    (tmp_path / "f").write_text("mailer /bin/mail\n")
    code, out, err = sgewrap(capsys, "config", "--restore", str(tmp_path / "f"), "--job-pam-file",
                             str(tmp_path / "stack"))
    assert code == 2 and "does not start with '#global:' or '#HOST:'" in err


def test_global_apply_warns_about_overriding_local_configurations(fake_qconf, capsys, tmp_path):
    (fake_qconf / "node01").write_text("#node01:\nrsh_daemon                   builtin\n\n")
    code, out, _ = sgewrap(capsys, "config", "ssh", "--wrappers", W, "--apply", "--backup-dir", str(tmp_path))
    assert code == 0
    assert "warning: the local configuration of node01 overrides rsh_daemon" in out


# --- OpenSSH 9.8 and later: the job sshd selects its PAM service (-o PamServiceName) ----------------

GUARDED_DAEMONS = ("qlogin_daemon", "rlogin_daemon", "rsh_daemon")


def tight_setup(tmp_path, monkeypatch, host):
    """Wrappers with an isolated hook, a directory for the job stack, this host called ``host``: the
    arguments of ``config ssh --tight``."""
    wrappers = tmp_path / "wrappers"
    wrappers.mkdir()
    (wrappers / "node_access").write_text("#!/usr/bin/python3 -I\n")
    (tmp_path / "pam.d").mkdir()
    monkeypatch.setattr(config, "this_host", lambda: host)
    return str(wrappers), ["config", "ssh", "--tight", "--wrappers", str(wrappers), "--backup-dir",
                           str(tmp_path / "b"), "--job-pam-file", str(tmp_path / "pam.d" / "sge-sshd")]


def stored(store, name):
    return sgeconf.parse((store / name).read_text(), name)


def backups(tmp_path, name):
    return sorted(p for p in (tmp_path / "b").iterdir() if p.name.startswith("sge_conf.%s." % name))


def test_tight_apply_on_openssh_98_puts_the_option_into_this_hosts_local_configuration(
        fake_qconf, capsys, tmp_path, monkeypatch, openssh_98):
    (fake_qconf / "node01").write_text("#node01:\nexecd_spool_dir              /var/spool/sge/node01\n"
                                       "gid_range                    20000-20100\nmailer                       "
                                       "/usr/bin/mail\n\n")
    global_before, local_before = (fake_qconf / "global").read_text(), (fake_qconf / "node01").read_text()
    W, args = tight_setup(tmp_path, monkeypatch, "node01.example.org")     # the local configuration's short name
    code, out, err = sgewrap(capsys, *args, "--apply")
    assert (code, err) == (0, "")
    guarded = W + "/sge-sshd -o PamServiceName=sge-sshd -i"
    assert stored(fake_qconf, "node01").as_dict() == dict(
        {"execd_spool_dir": "/var/spool/sge/node01", "gid_range": "20000-20100", "mailer": "/usr/bin/mail"},
        **dict.fromkeys(GUARDED_DAEMONS, guarded))
    glob = stored(fake_qconf, "global")      # the global entries serve OpenSSH 9.2 hosts: without the option
    assert {k: glob.get(k) for k in sgeconf.SLOTS} == sgeconf.entries("ssh", W, tight=True)
    assert "this host's sshd is OpenSSH 9.8 or later (/usr/lib/openssh/sshd-session exists)" in out
    assert "node01 rsh_daemon      " + guarded in out and "warning" not in out
    log = [line.split()[0] + " " + os.path.basename(line.split()[1]) for line in qconf_log(fake_qconf)
           if line.startswith(("-Mconf", "-Aconf"))]
    assert log == ["-Mconf node01", "-Mconf global"]          # this host never runs the new value unguarded
    assert [p.read_text() for p in backups(tmp_path, "node01")] == [local_before]
    # in force here: consistent; again: nothing changes
    from sgewrap.admin.common import read_dir
    report = check.analyse(*read_dir(str(fake_qconf)), here="node01.example.org", pam_file=os.devnull,
                           executable=lambda p: True, job_pam_file=args[-1], sshd_root=openssh_98)
    assert report.consistent, [str(p) for p in report.errors]
    code, out, err = sgewrap(capsys, *args, "--apply")
    assert code == 0 and out.count("nothing changed") == 2 and len(list((tmp_path / "b").iterdir())) == 2
    # restoring the global configuration takes out exactly those entries
    code, out, err = sgewrap(capsys, "config", "--restore", str(backups(tmp_path, "global")[0]), "--job-pam-file",
                             args[-1])
    assert (code, err) == (0, "")
    assert (fake_qconf / "global").read_text() == global_before
    assert (fake_qconf / "node01").read_text() == local_before
    assert "local configuration of node01 (written by --tight --apply for its OpenSSH 9.8+ sshd, guarding the " \
           "global value): took out qlogin_daemon, rlogin_daemon, rsh_daemon\n" in out


def test_tight_apply_on_openssh_98_without_a_local_configuration(
        fake_qconf, capsys, tmp_path, monkeypatch, openssh_98):
    W, args = tight_setup(tmp_path, monkeypatch, "node07")
    code, out, err = sgewrap(capsys, *args, "--apply")
    assert (code, err) == (0, "")
    assert stored(fake_qconf, "node07").as_dict() == dict.fromkeys(GUARDED_DAEMONS,
                                                                   W + "/sge-sshd -o PamServiceName=sge-sshd -i")
    assert any(line.startswith("-Aconf ") for line in qconf_log(fake_qconf))
    code, out, err = sgewrap(capsys, "config", "--restore", str(backups(tmp_path, "global")[0]), "--job-pam-file",
                             args[-1])
    assert (code, err) == (0, "") and not (fake_qconf / "node07").exists()
    assert "-dconf node07" in qconf_log(fake_qconf) and "deleted the local configuration of node07" in out


def test_tight_apply_on_openssh_92_writes_no_local_entries(fake_qconf, capsys, tmp_path, monkeypatch):
    local_before = (fake_qconf / "node01").read_text()
    W, args = tight_setup(tmp_path, monkeypatch, "node01")
    code, out, err = sgewrap(capsys, *args, "--apply")
    assert (code, err) == (0, "")
    assert (fake_qconf / "node01").read_text() == local_before and "PamServiceName" not in out
    assert "PamServiceName" not in (fake_qconf / "global").read_text()
    assert backups(tmp_path, "node01") == []


def test_tight_apply_to_this_hosts_local_configuration_on_openssh_98(
        fake_qconf, capsys, tmp_path, monkeypatch, openssh_98):
    global_before = (fake_qconf / "global").read_text()
    W, args = tight_setup(tmp_path, monkeypatch, "node01")
    code, out, err = sgewrap(capsys, *args, "--apply", "--host", "node01")
    assert (code, err) == (0, "")
    values = sgeconf.entries("ssh", W, tight=True)
    values.update(dict.fromkeys(GUARDED_DAEMONS, W + "/sge-sshd -o PamServiceName=sge-sshd -i"))
    local = stored(fake_qconf, "node01")
    assert {k: local.get(k) for k in sgeconf.SLOTS} == values
    assert (fake_qconf / "global").read_text() == global_before and len(list((tmp_path / "b").iterdir())) == 1
    # another host's sshd is not looked at from here: say so, write no option
    code, out, err = sgewrap(capsys, *args, "--apply", "--host", "node02")
    assert (code, err) == (0, "")
    assert "note: node02's sshd was not looked at: if it is OpenSSH 9.8 or later, run sgewrap config ssh --tight " \
           "--apply on node02 itself" in out
    assert "PamServiceName" not in (fake_qconf / "node02").read_text()


def test_restore_makes_the_local_entries_follow_the_global_value_on_every_host(fake_qconf, capsys, tmp_path):
    """A local entry that is the global job sshd value plus the option goes when the global value is no job
    sshd any more, guards the new one when it still is; other local entries stay as they are."""
    def put(name, values):
        conf = sgeconf.with_entries(sgeconf.parse((fake_qconf / name).read_text(), name), values)
        (fake_qconf / name).write_text(sgeconf.render(conf))
        return (fake_qconf / name).read_text()
    one, two = sgeconf.entries("ssh", "/w1", tight=True), sgeconf.entries("ssh", "/w2", tight=True)
    builtin = (fake_qconf / "global").read_text()
    saved_two = tmp_path / "sge_conf.global.two"
    saved_two.write_text(put("global", two))
    saved_builtin = tmp_path / "sge_conf.global.builtin"
    saved_builtin.write_text(builtin)
    put("global", one)
    (fake_qconf / "node02").write_text("#node02:\ngid_range 20000-20100\n")
    (fake_qconf / "node03").write_text("#node03:\nrsh_daemon /usr/sbin/in.rshd\n")
    put("node01", sgeconf.guard_entries(one))
    put("node02", {"rsh_daemon": sgeconf.job_service_guard(one["rsh_daemon"])})
    node03 = (fake_qconf / "node03").read_text()
    code, out, err = sgewrap(capsys, "config", "--restore", str(saved_two), "--no-front", "--job-pam-file",
                             str(tmp_path / "stack"))
    assert (code, err) == (0, "")
    assert stored(fake_qconf, "node01").as_dict() == dict(
        {"execd_spool_dir": "/var/spool/sge/node01", "mailer": "/usr/bin/mail"}, **sgeconf.guard_entries(two))
    assert stored(fake_qconf, "node02").as_dict() == {"gid_range": "20000-20100",
                                                      "rsh_daemon": "/w2/sge-sshd -o PamServiceName=sge-sshd -i"}
    assert (fake_qconf / "node03").read_text() == node03
    code, out, err = sgewrap(capsys, "config", "--restore", str(saved_builtin), "--no-front", "--job-pam-file",
                             str(tmp_path / "stack"))
    assert (code, err) == (0, "")
    assert stored(fake_qconf, "node01").as_dict() == {"execd_spool_dir": "/var/spool/sge/node01",
                                                      "mailer": "/usr/bin/mail"}
    assert stored(fake_qconf, "node02").as_dict() == {"gid_range": "20000-20100"}
    assert (fake_qconf / "node03").read_text() == node03


def test_check_on_openssh_98_wants_the_job_sshd_to_select_its_pam_service(tmp_path, openssh_92, openssh_98):
    glob = sgeconf.with_entries(load("builtin")[0], sgeconf.entries("ssh", W, tight=True))
    args = dict(pam_file=os.devnull, executable=lambda p: True, job_pam_file=job_stack(tmp_path))
    report = check.analyse(glob, {}, here="n1", sshd_root=openssh_98, **args)
    assert [str(p) for p in report.errors] == [
        "error: n1: qlogin_daemon, rlogin_daemon, rsh_daemon run the job sshd without -o PamServiceName=sge-sshd, "
        "but this host's sshd is OpenSSH 9.8 or later (/usr/lib/openssh/sshd-session): it ignores the name sge-sshd "
        "and runs the sessions under its own PamServiceName (default sshd), untied from their jobs and open to any "
        "user at the port; fix: sgewrap config ssh --tight --apply on n1"]
    # the local entries --apply writes there; another host's local entries do not count here
    guards = "".join(sgeconf.format_line(k, v) for k, v in sgeconf.guard_entries(glob.as_dict()).items())
    assert check.analyse(glob, {"n1": sgeconf.parse("#n1:\n" + guards)}, here="n1", sshd_root=openssh_98,
                         **args).consistent
    report = check.analyse(glob, {"n2": sgeconf.parse("#n2:\n" + guards)}, here="n1", sshd_root=openssh_98, **args)
    assert [p.slot for p in report.errors] == ["qlogin_daemon"]
    # OpenSSH 9.2 here: nothing to say; rshdwrapper (it adds the option itself): nothing to say
    assert check.analyse(glob, {}, here="n1", sshd_root=openssh_92, **args).consistent
    glob = sgeconf.with_entries(glob, dict.fromkeys(GUARDED_DAEMONS, W + "/rshdwrapper"))
    assert check.analyse(glob, {}, here="n1", sshd_root=openssh_98, **args).consistent


def test_config_and_selftest_on_openssh_98_show_what_apply_writes_here(capsys, openssh_98):
    code, out, err = sgewrap(capsys, "config", "ssh", "--tight", "--wrappers", W)
    assert (code, err) == (0, "")
    assert "this host's sshd is OpenSSH 9.8 or later" in out
    assert "rsh_daemon                   %s/sge-sshd -o PamServiceName=sge-sshd -i\n" % W in out
    from sgewrap.admin import selftest
    assert {c.daemon for c in selftest.cases_for("ssh", W, True)} == {W + "/sge-sshd -o PamServiceName=sge-sshd -i"}


# --- config (printing), explain, usage ----------------------------------------------------------------


def test_config_prints_the_six_lines(capsys):
    code, out, err = sgewrap(capsys, "config", "ssh", "--wrappers", W)
    assert (code, err) == (0, "")
    assert out == "".join(sgeconf.format_line(k, v) for k, v in sgeconf.entries("ssh", W).items()) \
        + "\n# note: " + sgeconf.PTY_NOTE + "\n"


def test_config_of_a_method_without_wrapped_logins_has_no_pty_note(capsys):
    code, out, err = sgewrap(capsys, "config", "rsh", "--wrappers", W)
    assert (code, err) == (0, "")
    assert out == "".join(sgeconf.format_line(k, v) for k, v in sgeconf.entries("rsh", W).items())


def test_check_warns_that_wrapped_logins_need_pty_no(capsys):
    code, out, _ = sgewrap(capsys, "check", "--from", scenario("consistent"))
    assert code == 0
    assert "warning: " + sgeconf.PTY_NOTE in out
    code, out, _ = sgewrap(capsys, "check", "--from", scenario("builtin"))
    assert "-pty no" not in out


def test_config_tight_names_the_pam_line_and_file(capsys):
    code, out, _ = sgewrap(capsys, "config", "ssh", "--tight", "--x11", "--wrappers", W)
    assert code == 0
    assert sgeconf.parse("".join(out.splitlines(True)[:6])).as_dict() == sgeconf.entries("ssh", W, tight=True, x11=True)
    assert "/etc/pam.d/sshd stays as it is" in out and pam.job_stack(W) in out


@pytest.mark.parametrize("argv,message", [
    (["config", "telnet", "--tight", "--wrappers", W], "--tight is only possible with ssh"),
    (["config", "mosh"], "unknown METHOD 'mosh'"),
    (["config", "rsh", "--no-x11", "--wrappers", W], "--x11/--no-x11 only apply to ssh"),
    (["config", "ssh", "--host", "node01"], "Given --host, the following are missing ['apply']"),
    (["config", "ssh", "--x11", "--no-x11"], "--x11"),
    (["config", "--bogus"], "Unknown switch --bogus (see sgewrap config --help)"),
    (["frobnicate"], "unknown command 'frobnicate'"),
    (["selftest", "--user", "root", "ssh"], None),
])
def test_usage_errors_are_one_line_exit_2(capsys, argv, message):
    code, out, err = sgewrap(capsys, *argv)
    assert code == 2
    assert err.startswith("sgewrap: error: ") and err.count("\n") == 1, err
    if message:
        assert message in err


def test_explain(capsys):
    code, out, err = sgewrap(capsys, "explain", "--shell", "bash", "--", W + "/ssh_wrapper",
                             "--ssh-option=GSSAPIDelegateCredentials=no", "-n", "-p", "4711", "node01", "exec",
                             "'/opt/sge/utilbin/lx-amd64/qrsh_starter'", "'/var/spool/sge/node01/active_jobs/12.1'",
                             "noshell")
    assert (code, err) == (0, "")
    assert "--ssh-option=GSSAPIDelegateCredentials=no adds -o GSSAPIDelegateCredentials=no (given)" in out
    assert "convention  rsh_command '[-n] -p PORT HOST CMD...': matches: HOST=node01 PORT=4711 " \
           "-n (qrsh -nostdin)" in out
    assert "command     /usr/bin/ssh -o GSSAPIDelegateCredentials=no -n -p 4711 -- node01 exec " \
           "\"'/opt/sge/utilbin/lx-amd64/qrsh_starter'\" \"'/var/spool/sge/node01/active_jobs/12.1'\" noshell" in out


def test_explain_default_option_overridden_and_rlogin_slot(capsys):
    code, out, _ = sgewrap(capsys, "explain", "--shell", "fish", "--", "qlogin_wrapper", "--no-x11", "node01", "22")
    assert code == 0
    assert "--x11                        overridden by --no-x11 (the wrapper's default)" in out
    assert "command     /usr/bin/ssh -x -p 22 -- node01" in out
    code, out, _ = sgewrap(capsys, "explain", "--", "ssh_wrapper", "-p", "22", "node01")
    assert "rsh_command '[-n] -p PORT HOST CMD...': does not fit 3 words" in out
    assert "rlogin_command '-p PORT HOST': matches" in out


@pytest.mark.parametrize("argv,code", [
    (["qlogin_wrapper", "node01", "0"], 66),
    (["ssh_wrapper", "-p", "22", "-oProxyCommand=x", "cmd"], 67),
    (["ssh_wrapper", "node01"], 65),
    (["ssh_wrapper", "--frob", "node01"], 64),
])
def test_explain_exits_like_the_wrapper(capsys, argv, code):
    got, out, err = sgewrap(capsys, "explain", "--", *argv)
    assert got == code and err == ""
    assert "would fail: " in out or "the shape fits but" in out


def test_explain_needs_a_wrapper(capsys):
    code, out, err = sgewrap(capsys, "explain", "--", "rshdwrapper")
    assert code == 2 and "rshdwrapper is not a client wrapper" in err


def test_install_dry_run_reports_each_file(capsys, tmp_path):
    code, out, err = sgewrap(capsys, "install", "--sge-root", str(tmp_path), "--dry-run")
    assert (code, err) == (0, "")
    dest = tmp_path / "util" / "resources" / "wrappers"
    for name in ("sgewrap", "ssh_wrapper", "qlogin_wrapper", "rshdwrapper"):
        assert "would install %s\n" % (dest / name) in out
    assert not dest.exists()
    code, out, err = sgewrap(capsys, "install", "--sge-root", str(tmp_path), "--python", "python3")
    assert code == 1 and err == "sgewrap: error: python must be an absolute path of an executable: 'python3'\n"
    code, out, err = sgewrap(capsys, "uninstall", "--sge-root", str(tmp_path))
    assert code == 0 and "nothing of sgewrap installed" in out


# --- node access: sgewrap node-access and check ---------------------------------------------------

QUEUE = """qname                 all.q
hostlist              @allhosts
seq_no                0
prolog                NONE
epilog                NONE
shell_start_mode      unix_behavior
"""


@pytest.fixture
def queue_store(fake_qconf):
    (fake_qconf / "queue.all.q").write_text(QUEUE)
    return fake_qconf


def test_node_access_prints_the_queue_commands_and_pam_rules(capsys):
    code, out, err = sgewrap(capsys, "node-access", "--queue", "all.q", "--wrappers", W)
    assert (code, err) == (0, "")
    assert "qconf -mattr queue prolog 'root@%s/node_access prolog' all.q\n" % W in out
    assert "qconf -mattr queue epilog 'root@%s/node_access epilog' all.q\n" % W in out
    assert out.endswith("\n".join(pam.node_access_lines()[1:]) + "\n")


def test_node_access_apply_and_restore(queue_store, capsys, tmp_path):
    pamfile = tmp_path / "sshd"
    pamfile.write_text("account required pam_nologin.so\n")
    args = ["node-access", "--queue", "all.q", "--wrappers", W, "--backup-dir", str(tmp_path / "b"),
            "--pam-file", str(pamfile)]
    code, out, err = sgewrap(capsys, *args, "--apply")
    assert (code, err) == (0, "") and "wrote %s: global 65400-65500" % gidrange.CACHE in out
    queue = (queue_store / "queue.all.q").read_text()
    assert "prolog                root@%s/node_access prolog\n" % W in queue
    assert "epilog                root@%s/node_access epilog\n" % W in queue
    assert pam.has_node_access(str(pamfile))
    assert sgewrap(capsys, *args, "--apply")[1].startswith("queue all.q: prolog and epilog already run")
    saved = list((tmp_path / "b").iterdir())
    assert len(saved) == 1 and saved[0].name.startswith("queue.all.q.") and saved[0].read_text() == QUEUE
    code, out, err = sgewrap(capsys, "node-access", "--restore", str(saved[0]), "--pam-file", str(pamfile))
    assert (code, err) == (0, "")
    assert (queue_store / "queue.all.q").read_text() == QUEUE
    assert pamfile.read_text() == "account required pam_nologin.so\n"


def test_node_access_does_not_replace_a_prolog_of_the_site(queue_store, capsys, tmp_path):
    (queue_store / "queue.all.q").write_text(QUEUE.replace("prolog                NONE",
                                                           "prolog                /site/prolog.sh"))
    args = ["node-access", "--queue", "all.q", "--wrappers", W, "--apply", "--backup-dir", str(tmp_path / "b"),
            "--pam-file", str(tmp_path / "pam")]
    code, out, err = sgewrap(capsys, *args)
    assert code == 1 and "already runs prolog '/site/prolog.sh'" in err and "--replace" in err
    assert "/site/prolog.sh" in (queue_store / "queue.all.q").read_text()


def node_access_queue(prolog=True, epilog=True):
    hook = "root@%s/node_access %s"
    return {"all.q": {"prolog": hook % (W, "prolog") if prolog else "NONE",
                      "epilog": hook % (W, "epilog") if epilog else "NONE"}}


def builtin_configs():
    return sgeconf.parse(open(os.path.join(scenario("builtin"), "global")).read(), "global"), {}


@pytest.mark.parametrize("prolog,epilog,text", [
    (True, False, "as its prolog but not as its epilog: users keep ssh access"),
    (False, True, "as its epilog but not as its prolog: users never get ssh access"),
])
def test_check_node_access_half_configured(prolog, epilog, text):
    report = check.analyse(*builtin_configs(), queues=node_access_queue(prolog, epilog))
    assert not report.consistent and any(text in p.message for p in report.errors)


def test_check_node_access_and_this_hosts_pam_rules(tmp_path):
    pamfile = tmp_path / "sshd"
    pamfile.write_text("account required pam_nologin.so\n")
    report = check.analyse(*builtin_configs(), here="node01", pam_file=str(pamfile), queues=node_access_queue())
    assert report.consistent and any("lacks its account rules" in p.message for p in report.warnings)
    pam.add_node_access(str(pamfile))
    assert check.analyse(*builtin_configs(), here="node01", pam_file=str(pamfile),
                         queues=node_access_queue()).problems == []
    report = check.analyse(*builtin_configs(), here="node01", pam_file=str(pamfile), queues={})
    assert any("no queue runs node_access: every user from uid 1000 up is refused" in p.message
               for p in report.errors)


def tunnel_configs():
    glob = sgeconf.parse(open(os.path.join(scenario("builtin"), "global")).read(), "global")
    return sgeconf.with_entries(glob, sgeconf.entries("ssh", W, tunnel=True)), {}


@pytest.mark.parametrize("settings,severity,text", [
    ({"allowtcpforwarding": "no", "maxstartups": "100:30:200"}, "error", "AllowTcpForwarding no"),
    ({"allowtcpforwarding": "yes", "maxstartups": "10:30:100"}, "warning", "MaxStartups 10:30:100"),
    ({"allowtcpforwarding": "local", "maxstartups": "100:30:200"}, None, None),
])
def test_check_the_far_end_of_tunnels_on_this_host(settings, severity, text):
    report = check.analyse(*tunnel_configs(), here="node01", pam_file=os.devnull, executable=lambda p: True,
                           sshd_settings=lambda: settings)
    found = [p for p in report.problems if "--tunnel" in p.message]
    if severity is None:
        assert found == []
    else:
        assert [(p.severity, text in p.message) for p in found] == [(severity, True)]


def test_check_judges_the_other_hosts_tunnel_end_and_job_ssh_forwarding_by_their_records(tmp_path):
    """Every execution host is a --tunnel end and a job-ssh target: their port-22 settings come from their
    records (sgewrap facts), as the job sshd's do; a host that recorded none is named."""
    facts = {"node02": {"host": "node02", "port22": {"allowtcpforwarding": "no", "maxstartups": "10:30:100"}},
             "node03": {"host": "node03", "port22": {"allowtcpforwarding": "yes", "maxstartups": "100:30:200"}},
             "node04": {"host": "node04"}}
    drop_in = tmp_path / "job-ssh.conf"
    drop_in.write_text("Host *.job\n")
    report = check.analyse(*tunnel_configs(), here="node01", pam_file=os.devnull, executable=lambda p: True,
                           sshd_settings=lambda: {"allowtcpforwarding": "yes", "maxstartups": "100:30:200"},
                           exec_hosts=["node01", "node02", "node03", "node04"], facts=facts, job_ssh=str(drop_in))
    found = sorted((p.severity, p.host, p.message) for p in report.problems if p.host in ("node02", "node03", "node04"))
    expected = [("error", "node02"), ("warning", "node02"), ("warning", "node02")]
    assert [(severity, host) for severity, host, _ in found] == expected, found
    assert "use --tunnel but its record's sshd has AllowTcpForwarding no: the tunnels to it are refused" in found[0][2]
    assert "its record's sshd has AllowTcpForwarding no: ssh -L and -D into jobs there" in found[1][2] + found[2][2]
    assert "its record's sshd has MaxStartups 10:30:100" in found[1][2] + found[2][2]
    assert any("the --tunnel end of node04 not checked: no port-22 settings in their records" in n
               for n in report.notes), report.notes


def test_check_says_when_sshd_cannot_be_asked():
    def fails():
        raise RuntimeError("sshd -T: permission denied")
    report = check.analyse(*tunnel_configs(), here="node01", pam_file=os.devnull, executable=lambda p: True,
                           sshd_settings=fails)
    assert any("the --tunnel end was not checked" in n for n in report.notes)


def test_check_explains_adopt_and_flags_a_half_configured_block(tmp_path):
    wrappers, pam_file = adopted(tmp_path)
    glob = load("builtin")[0]
    report = check.analyse(glob, {}, here="n1", pam_file=str(pam_file), executable=lambda p: True)
    assert report.consistent and any("node_access adopt in" in n for n in report.notes)
    assert not any("still has" in str(p) for p in report.problems)     # the module line belongs to adopt here
    pam_file.write_text(pam_file.read_text().replace("auth     required  pam_sgewrap.so setup\n", ""))
    report = check.analyse(glob, {}, here="n1", pam_file=str(pam_file), executable=lambda p: True)
    assert any("without 'required  pam_sgewrap.so setup'" in str(p) for p in report.errors)
    (wrappers / "node_access").write_text("#!/usr/bin/python3\n")
    report = check.analyse(glob, {}, here="n1", pam_file=str(pam_file), executable=lambda p: True)
    assert any("as root" in str(p) and "no -I" in str(p) for p in report.errors)
    assert pam.remove_adopt(str(pam_file)) and pam_file.read_text() == "@include common-auth\n"


def test_node_access_adopt_apply_and_restore_the_pam_file(capsys, tmp_path, fake_qconf, gid_range_cache):
    wrappers = tmp_path / "w"
    wrappers.mkdir()
    (wrappers / "node_access").write_text("#!/usr/bin/python3 -I\n")
    pam_file = tmp_path / "sshd"
    before = "# site\n@include common-auth\n@include common-account\n"
    pam_file.write_text(before)
    code, out, err = sgewrap(capsys, "node-access", "--adopt", "--apply", "--wrappers", str(wrappers),
                             "--pam-file", str(pam_file), "--backup-dir", str(tmp_path / "b"),
                             "--adopt-option=--warn-only")
    assert (code, err) == (0, "")
    assert pam.has_adopt(str(pam_file)) and "node_access --warn-only adopt" in pam_file.read_text()
    assert "wrote %s: global 65400-65500" % gid_range_cache in out and os.path.isfile(gid_range_cache)
    backup = out.split("undo with: sgewrap node-access --restore ")[1].split()[0]
    code, out, err = sgewrap(capsys, "node-access", "--restore", backup, "--pam-file", str(pam_file))
    assert (code, err) == (0, "") and pam_file.read_text() == before
    code, out, err = sgewrap(capsys, "node-access", "--adopt", "--adopt-option=--rm", "--wrappers", str(wrappers))
    assert code == 2 and "not an option of node_access adopt" in err


def test_config_tunnel_persist_reaches_every_command_and_needs_a_tunnel(capsys):
    code, out, err = sgewrap(capsys, "config", "ssh", "--tunnel", "--tunnel-persist", "120", "--wrappers", W)
    assert code == 0, err
    assert sgeconf.parse(out.split("\n\n")[0]).get("rsh_command") == W + "/ssh_wrapper --tunnel --tunnel-persist=120"
    code, out, err = sgewrap(capsys, "config", "ssh", "--tunnel-persist", "120", "--wrappers", W)
    assert code != 0 and "--tunnel-persist goes with --tunnel" in err


@pytest.mark.parametrize("value,count", [("65400-65500", 101), ("20000-20100,20200", 102), ("100", 1),
                                         ("x-1", None), ("", None)])
def test_gid_count(value, count):
    assert check.gid_count(value) == count


def test_check_warns_when_gid_range_is_narrower_than_a_hosts_slots():
    glob = sgeconf.parse("gid_range 65400-65500\n" + "".join("%s builtin\n" % k for k in sgeconf.SLOTS))
    report = check.analyse(glob, {}, queues={"big.q": {"slots": "1,[node01=150]"}, "small.q": {"slots": "8"}})
    found = [p.message for p in report.problems if p.slot == "gid_range"]
    assert len(found) == 1 and "gives 101 group ids, but queue big.q has 150 slots" in found[0]
    report = check.analyse(glob, {}, queues={"small.q": {"slots": "8"}})
    assert not [p for p in report.problems if p.slot == "gid_range"]


def test_check_wants_this_host_s_gid_range_cache_where_the_job_sshd_runs(tmp_path, gid_range_cache):
    """Where sessions are reaped (the job sshd), the cache must be there and say what qconf says: a
    stale one spares the leftovers of sessions whose group id it does not hold."""
    glob, hosts = load("tight")
    args = dict(here="vm", pam_file=os.devnull, executable=lambda p: True, job_pam_file=os.devnull)

    def said():
        return [p.message for p in check.analyse(glob, hosts, **args).warnings if p.slot == "gid_range"]
    assert len(said()) == 1 and "there is no %s" % gid_range_cache in said()[0]
    gidrange.write([("global", "65400-65500")])
    assert said() == []
    gidrange.write([("global", "65400-65500"), ("vm", "20000-20100")])
    assert said() == ["vm: %s says gid_range 20000-20100 for this host, the configuration 65400-65500: a closed "
                      "session whose group id is outside the cached one is not reaped; sgewrap config ssh --tight "
                      "--apply on vm rewrites it from qconf" % gid_range_cache]
    os.unlink(gid_range_cache)
    assert [p for p in check.analyse(*load("builtin"), **args).problems if p.slot == "gid_range"] == []


def test_selftest_picks_its_scratch_gid_outside_gid_range_and_unused(monkeypatch):
    """execd hands out gid_range ids looking only at its own jobs: an id of the selftest's there could go
    to a job meanwhile, and the scratch session's close would kill that job's processes by it."""
    import collections
    from sgewrap.admin import selftest
    Group = collections.namedtuple("Group", "gr_gid")
    monkeypatch.setattr("grp.getgrall", lambda: [Group(65000), Group(65003)])
    monkeypatch.setattr(selftest, "carried_gids", lambda: {65004})
    picks = {selftest.free_gid([(65001, 65002), (65006, 65533)]) for _ in range(200)}
    assert picks == {65005}
    with pytest.raises(check.AdminError, match="no unused group id outside gid_range in 65000-65533"):
        selftest.free_gid([(65000, 65533)])


def test_selftest_knows_this_host_s_gid_range_from_the_cache_else_from_qconf(fake_qconf, monkeypatch):
    from sgewrap.admin import selftest
    monkeypatch.setattr(gidrange, "this_host", lambda: "node02")
    monkeypatch.setattr(selftest, "this_host", lambda: "node02")
    (fake_qconf / "node02").write_text("#node02:\ngid_range 30000-30100,30200\n")
    assert selftest.host_gid_ranges() == ([(30000, 30100), (30200, 30200)], "qconf -sconf")
    gidrange.write([("global", "65400-65500"), ("node02", "20000-20100")])
    assert selftest.host_gid_ranges() == ([(20000, 20100)], gidrange.CACHE)
    os.unlink(gidrange.CACHE)
    monkeypatch.setenv("FAKE_QCONF_FAIL", "1")
    ranges, why = selftest.host_gid_ranges()
    assert ranges == [] and why.startswith("no %s, and 'qconf -sconf global' failed" % gidrange.CACHE)


def test_carried_gids_sees_a_running_process_s_groups():
    import subprocess
    from sgewrap.admin import selftest
    proc = subprocess.Popen(["/bin/sleep", "30"], extra_groups=[65495])
    try:
        assert lib.wait_until(lambda: 65495 in selftest.carried_gids(), 5, 0.01)
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("entry, starts, why", [
    ("/usr/bin/python3 %s/node_access prolog" % W, "python3", "no -I: not isolated"),
    ("/usr/bin/python3 -E %s/node_access prolog" % W, "python3", "no -I: not isolated"),
    ("/usr/bin/python3 -W I %s/node_access prolog" % W, "python3", "no -I: not isolated"),   # -W's argument
    ("/usr/bin/python3 -I %s/node_access prolog" % W, None, None),
    ("/usr/bin/python3.11 -sE %s/node_access prolog" % W, None, None),
    ("%s/node_access prolog" % W, None, None),
    ("/usr/bin/perl -w /site/prolog.pl", "perl", "no -T: PERL5LIB and PERL5OPT are read"),
    ("/usr/bin/perl -I/opt/Tools /site/prolog.pl", "perl", "no -T"),       # T in -I's argument is no -T
    ("/usr/bin/perl -wT /site/prolog.pl", None, None),
    ("/bin/bash /site/prolog.sh", "bash", "no -p: BASH_ENV and exported functions are read"),
    ("/bin/bash -p /site/prolog.sh", None, None),
    ("/bin/sh /site/prolog.sh", None, None),
    ("/bin/sh -c 'cd / && exec /usr/bin/python3 /site/p.py'", "python3", "no -I"),
    ("/bin/sh -c 'cd /;python3 -I /site/p.py'", "python3", "looked up in the caller's PATH"),
    ("/bin/sh -c '/usr/bin/python3 -I /site/p.py | logger'", None, None),
    ("/usr/bin/env python3 /site/p.py", "python3", "looked up in the caller's PATH"),
    ("/usr/bin/env X=1 /usr/bin/perl /site/p.pl", "perl", "no -T"),
    ("/usr/bin/env -i /usr/bin/python3 /site/p.py", None, None),
])
def test_a_root_run_entry_that_starts_an_interpreter_without_isolation_is_an_error(entry, starts, why):
    """A prolog written 'root@/usr/bin/python3 .../node_access prolog' ran the job owner's sitecustomize
    (PYTHONPATH, user site) as root before node_access could re-execute itself isolated: check says so,
    for a queue's prolog/epilog, a configuration's and a daemon, naming the entry and the fix."""
    glob = load("builtin")[0]
    for queues, conf in [({"all.q": {"prolog": "root@" + entry, "epilog": "NONE"}}, glob),
                         ({}, sgeconf.with_entries(glob, {"rsh_daemon": entry}))]:
        errors = [p.message for p in check.analyse(conf, {}, queues=queues).errors if p.slot == "root"]
        if starts is None:
            assert errors == []
            continue
        assert len(errors) == 1 and " starts %s as root (" % starts in errors[0] and why in errors[0], errors
        assert ("queue all.q: prolog %r" % ("root@" + entry) if queues else
                "global configuration: rsh_daemon %r" % entry) in errors[0] and "; fix: " in errors[0]


def test_a_prolog_run_as_the_job_s_owner_is_not_root_s_business():
    glob = load("builtin")[0]
    queues = {"all.q": {"prolog": "/usr/bin/python3 /site/p.py", "epilog": "sgeadmin@/usr/bin/perl /site/e.pl"}}
    assert [p for p in check.analyse(glob, {}, queues=queues).errors if p.slot == "root"] == []
    local = sgeconf.parse("#node01:\nprolog root@/usr/bin/python3 /x\n", "node01")
    errors = [p.message for p in check.analyse(glob, {"node01": local}).errors if p.slot == "root"]
    assert len(errors) == 1 and errors[0].startswith("local configuration of node01: prolog 'root@/usr/bin/python3 /x'")


def test_node_access_through_an_interpreter_counts_as_node_access_and_is_flagged():
    glob = load("builtin")[0]
    queues = {"all.q": {"prolog": "root@/usr/bin/python3 %s/node_access prolog" % W,
                        "epilog": "root@%s/node_access epilog" % W}}
    report = check.analyse(glob, {}, queues=queues)
    assert not any("as its epilog but not as its prolog" in p.message for p in report.errors)
    assert [p.slot for p in report.errors] == ["root"]


def test_node_access_apply_replaces_an_interpreter_prolog_and_flags_other_root_entries(queue_store, capsys, tmp_path):
    (queue_store / "queue.all.q").write_text(QUEUE.replace(
        "prolog                NONE", "prolog                root@/usr/bin/python3 %s/node_access prolog" % W))
    (queue_store / "queue.other.q").write_text(QUEUE.replace("all.q", "other.q").replace(
        "epilog                NONE", "epilog                root@/usr/bin/perl /site/epilog.pl"))
    args = ["node-access", "--queue", "all.q", "--wrappers", W, "--apply", "--backup-dir", str(tmp_path / "b"),
            "--pam-file", str(tmp_path / "pam")]
    (tmp_path / "pam").write_text("account required pam_nologin.so\n")
    code, out, err = sgewrap(capsys, *args)
    assert "prolog                root@%s/node_access prolog\n" % W in (queue_store / "queue.all.q").read_text()
    assert "replacing, as it is unsafe: queue all.q: prolog 'root@/usr/bin/python3 %s/node_access prolog' starts " \
           "python3 as root (no -I: not isolated)" % W in out
    assert code == 1 and err == ""
    assert "error: queue other.q: epilog 'root@/usr/bin/perl /site/epilog.pl' starts perl as root (no -T: PERL5LIB " \
           "and PERL5OPT are read): the job's owner's environment reaches it, so their code could run as root; " \
           "fix: add -T (taint mode)\n" in out
    (queue_store / "queue.other.q").unlink()
    assert sgewrap(capsys, *args)[0] == 0
