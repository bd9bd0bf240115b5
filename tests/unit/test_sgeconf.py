"""sgewrap.admin.sgeconf: the six entries, qconf -sconf text round trips, classify."""
import glob
import os

import pytest
from hypothesis import given, strategies as st

import lib
from sgewrap.admin import sgeconf

DATA = os.path.join(lib.DATA, "sgeconf")
W = "/opt/sge/util/resources/wrappers"
SAVED = sorted(p for p in glob.glob(os.path.join(DATA, "*", "*")) if not p.endswith("sconfl"))


def read(path):
    with open(path) as f:
        return f.read()


# --- entries -------------------------------------------------------------------------------


def test_builtin_is_builtin_everywhere():
    assert sgeconf.entries("builtin", W) == dict.fromkeys(sgeconf.SLOTS, "builtin")


def test_ssh_entries():
    assert sgeconf.entries("ssh", W) == {
        "qlogin_command": W + "/qlogin_wrapper", "qlogin_daemon": "/usr/sbin/sshd -i",
        "rlogin_command": W + "/ssh_wrapper", "rlogin_daemon": "/usr/sbin/sshd -i",
        "rsh_command": W + "/ssh_wrapper", "rsh_daemon": "/usr/sbin/sshd -i"}


@pytest.mark.parametrize("x11,suffix", [(None, ""), (True, " --x11"), (False, " --no-x11")])
def test_ssh_x11(x11, suffix):
    assert sgeconf.entries("ssh", W, x11=x11)["qlogin_command"] == W + "/qlogin_wrapper" + suffix


def test_ssh_tight_daemons_are_the_job_sshd():
    values = sgeconf.entries("ssh", W, tight=True)
    assert {values[k] for k in ("qlogin_daemon", "rlogin_daemon", "rsh_daemon")} == {W + "/sge-sshd -i"}
    assert all(sgeconf.classify(values[k]) == "ssh" and sgeconf.is_tight(values[k]) and
               sgeconf.needs_job_stack(values[k]) for k in ("qlogin_daemon", "rsh_daemon"))
    assert values["rsh_command"] == W + "/ssh_wrapper"


@pytest.mark.parametrize("tunnel,option", [(True, " --tunnel"), ("bob@gw01", " --tunnel-via=bob@gw01")])
def test_ssh_tunnel_goes_into_every_command(tunnel, option):
    values = sgeconf.entries("ssh", W, x11=False, tunnel=tunnel)
    assert values["qlogin_command"] == W + "/qlogin_wrapper --no-x11" + option
    assert values["rlogin_command"] == values["rsh_command"] == W + "/ssh_wrapper" + option
    assert values["rsh_daemon"] == "/usr/sbin/sshd -i"       # the daemon side does not change
    assert {sgeconf.classify(v) for v in values.values()} == {"ssh"}


def test_tunnel_only_with_ssh_and_a_safe_gateway():
    with pytest.raises(ValueError, match="only possible with ssh"):
        sgeconf.entries("rsh", W, tunnel=True)
    with pytest.raises(ValueError, match="starts with '-'"):
        sgeconf.entries("ssh", W, tunnel="-oProxyCommand=id")


@pytest.mark.parametrize("method,command,daemon,value,daemon_value", [
    ("telnet", "qlogin_command", "qlogin_daemon", W + "/telnet_adapter", "/usr/sbin/telnetd"),
    ("rsh", "rsh_command", "rsh_daemon", W + "/rsh_adapter", "/usr/sbin/in.rshd"),
    ("rlogin", "rlogin_command", "rlogin_daemon", W + "/rlogin_adapter", "/usr/sbin/in.rlogind"),
])
def test_legacy_methods_only_cover_their_slot(method, command, daemon, value, daemon_value):
    values = sgeconf.entries(method, W)
    assert (values[command], values[daemon]) == (value, daemon_value)
    assert {values[k] for k in sgeconf.SLOTS if k not in (command, daemon)} == {"builtin"}


@pytest.mark.parametrize("method", ["builtin", "telnet", "rsh", "rlogin"])
def test_tight_only_with_ssh(method):
    with pytest.raises(ValueError, match="only possible with ssh"):
        sgeconf.entries(method, W, tight=True)


def test_unknown_method_and_relative_wrappers_dir():
    with pytest.raises(ValueError, match="unknown method"):
        sgeconf.entries("mosh", W)
    with pytest.raises(ValueError, match="absolute"):
        sgeconf.entries("ssh", "wrappers")


def test_every_method_gives_six_entries_that_classify_as_the_method():
    for method in sgeconf.METHODS:
        values = sgeconf.entries(method, W)
        assert tuple(values) == sgeconf.SLOTS
        for _, cmd, dmn in sgeconf.PAIRS:
            assert sgeconf.classify(values[cmd]) == sgeconf.classify(values[dmn])


# --- parse / render / with_entries --------------------------------------------------------------

CONTINUED = """#global:
execd_spool_dir              /var/spool/gridengine/execd
reporting_params             accounting=true reporting=false \\
                             flush_time=00:00:15 joblog=false sharelog=00:00:00
rsh_command                  /x/very/long/path/to/some/util/resources/wrappers/qlogin_wrapper \\
                             --no-x11 --ssh-option=a=b
rsh_daemon                   builtin

"""


def test_parse_names_and_continuations():
    conf = sgeconf.parse(CONTINUED)
    assert conf.name == "global"
    assert conf.keys() == ["execd_spool_dir", "reporting_params", "rsh_command", "rsh_daemon"]
    assert conf.get("reporting_params") == "accounting=true reporting=false flush_time=00:00:15 joblog=false " \
                                           "sharelog=00:00:00"
    assert conf.get("rsh_command") == "/x/very/long/path/to/some/util/resources/wrappers/qlogin_wrapper " \
                                      "--no-x11 --ssh-option=a=b"
    assert sgeconf.parse("#node01:\nmailer /bin/mail\n").name == "node01"
    assert sgeconf.parse("mailer /bin/mail\n", "x").name == "x"


@pytest.mark.parametrize("path", SAVED, ids=lambda p: os.path.relpath(p, DATA))
def test_saved_configurations_round_trip(path):
    text = read(path)
    conf = sgeconf.parse(text)
    assert conf.name == os.path.basename(path)
    assert sgeconf.render(conf) == text
    assert sgeconf.render(sgeconf.with_entries(conf, {})) == text
    assert sgeconf.render(sgeconf.with_entries(conf, {k: conf.get(k) for k in conf.keys()})) == text


@given(st.text())
def test_render_parse_is_identity_for_any_text(text):
    assert sgeconf.render(sgeconf.parse(text)) == text


def test_with_entries_changes_only_those_lines():
    text = read(os.path.join(DATA, "builtin", "global"))
    values = sgeconf.entries("ssh", W, tight=True)
    new = sgeconf.with_entries(sgeconf.parse(text), values)
    old_lines, new_lines = text.splitlines(True), sgeconf.render(new).splitlines(True)
    assert len(old_lines) == len(new_lines)
    changed = [(a, b) for a, b in zip(old_lines, new_lines) if a != b]
    assert [b.split()[0] for _, b in changed] == list(sgeconf.SLOTS)
    assert all(sgeconf.parse(b).get(b.split()[0]) == values[b.split()[0]] for _, b in changed)
    assert sgeconf.parse(sgeconf.render(new)).as_dict() == dict(sgeconf.parse(text).as_dict(), **values)


def test_with_entries_appends_missing_keys_after_the_last_entry():
    conf = sgeconf.parse("#node01:\nmailer /usr/bin/mail\n\n")
    new = sgeconf.with_entries(conf, {"rsh_daemon": "/usr/sbin/sshd -i", "mailer": "/usr/bin/mail"})
    assert sgeconf.render(new) == "#node01:\nmailer /usr/bin/mail\n%-28s /usr/sbin/sshd -i\n\n" % "rsh_daemon"
    assert sgeconf.render(conf) == "#node01:\nmailer /usr/bin/mail\n\n"     # the original is untouched


def test_with_entries_on_empty_and_header_only():
    assert sgeconf.render(sgeconf.with_entries(sgeconf.parse(""), {"a": "1"})) == "%-28s 1\n" % "a"
    assert sgeconf.render(sgeconf.with_entries(sgeconf.parse("#h:\n"), {"a": "1"})) == "#h:\n%-28s 1\n" % "a"
    assert sgeconf.render(sgeconf.with_entries(sgeconf.parse("x 1"), {"a": "1"})) == "x 1\n%-28s 1\n" % "a"


def test_with_entries_replaces_a_continued_value_whole():
    new = sgeconf.with_entries(sgeconf.parse(CONTINUED), {"rsh_command": "builtin"})
    assert "--no-x11" not in sgeconf.render(new)
    assert sgeconf.parse(sgeconf.render(new)).get("reporting_params").endswith("sharelog=00:00:00")


def test_absent_stand_in():
    conf = sgeconf.absent("node07")
    assert conf.name == "node07" and conf.absent and not conf.keys()
    assert sgeconf.parse(sgeconf.render(conf)).absent
    assert not sgeconf.parse(CONTINUED).absent


def test_parse_list():
    assert sgeconf.parse_list("node01\nnode02.example.org\n") == ["node01", "node02.example.org"]
    assert sgeconf.parse_list("") == []


def test_qconf_argv(tmp_path):
    path = sgeconf.config_file(str(tmp_path), "node01", "mailer /bin/mail\n")
    assert os.path.basename(path) == "node01" and read(path) == "mailer /bin/mail\n"
    assert sgeconf.apply_argv(path) == ["qconf", "-Mconf", path]
    assert sgeconf.apply_argv(path, new=True) == ["qconf", "-Aconf", path]
    assert sgeconf.delete_argv("node01") == ["qconf", "-dconf", "node01"]
    assert sgeconf.show_argv() == ["qconf", "-sconf", "global"]
    assert sgeconf.list_argv() == ["qconf", "-sconfl"]
    with pytest.raises(ValueError):
        sgeconf.config_file(str(tmp_path), "../etc", "")


# --- classify -------------------------------------------------------------------------------------


@pytest.mark.parametrize("value,kind", [
    ("builtin", "builtin"),
    ("/usr/bin/ssh", "ssh"), ("/usr/bin/ssh -X", "ssh"), (W + "/ssh_wrapper", "ssh"),
    (W + "/qlogin_wrapper --no-x11", "ssh"), ("/opt/sge/util/resources/wrappers/qlogin_wrapper", "ssh"),
    ("/usr/sbin/sshd -i", "ssh"), (W + "/rshdwrapper", "ssh"), ("/opt/sge/util/resources/wrappers/rshd-wrapper", "ssh"),
    (W + "/rshdwrapper --facility=daemon /usr/sbin/in.rshd", "rsh"), (W + "/rshdwrapper rlogind", "rlogin"),
    ("/usr/bin/telnet", "telnet"), (W + "/telnet_adapter", "telnet"), ("/usr/sbin/telnetd", "telnet"),
    ("/usr/sbin/in.telnetd", "telnet"),
    ("/opt/sge/utilbin/lx-amd64/rsh", "rsh"), ("/usr/bin/rsh-redone-rsh", "rsh"), (W + "/rsh_adapter", "rsh"),
    ("/usr/sbin/in.rshd", "rsh"), ("/opt/sge/utilbin/lx-amd64/rshd -l", "rsh"), ("$SGE_ROOT/utilbin/$ARC/rsh", "rsh"),
    ("/opt/sge/utilbin/lx-amd64/rlogin", "rlogin"), ("/usr/sbin/in.rlogind", "rlogin"),
    (W + "/rlogin_adapter", "rlogin"),
    ("/usr/local/bin/mystart", "unknown"), ("", "unknown"), ("none", "unknown"),
])
def test_classify(value, kind):
    assert sgeconf.classify(value) == kind


@pytest.mark.parametrize("slot,kind", [("qlogin_command", "telnet"), ("rlogin_daemon", "rlogin"), ("rsh", "rsh")])
def test_classify_unset_is_sges_fallback(slot, kind):
    assert sgeconf.classify("none", slot) == kind
    assert sgeconf.classify("", slot) == kind


def test_tight_and_daemon_programs():
    assert sgeconf.is_tight(W + "/rshdwrapper") and sgeconf.is_tight("/x/rshd-wrapper")
    assert not sgeconf.is_tight("/usr/sbin/sshd -i") and not sgeconf.is_tight("builtin")
    assert sgeconf.is_daemon_program("/usr/sbin/sshd -i") and not sgeconf.is_daemon_program("/usr/bin/ssh")


# --- the job sshd on OpenSSH 9.8 and later -----------------------------------------------------

JOB_SSHD = W + "/sge-sshd"


@pytest.mark.parametrize("value,service", [
    (JOB_SSHD + " -i", None), (JOB_SSHD + " -i -o PamServiceName=sge-sshd", "sge-sshd"),
    (JOB_SSHD + " -i -oPamServiceName=sge-sshd", "sge-sshd"), (JOB_SSHD + " -io pamservicename=sge-sshd", "sge-sshd"),
    (JOB_SSHD + " -o PamServiceName=sshd -o PamServiceName=sge-sshd", "sshd"),      # sshd keeps the first
    (JOB_SSHD + " -f -oPamServiceName=x -i", None),                                # -f's argument, a file name
    (JOB_SSHD + " -i -o LogLevel=ERROR", None), ("builtin", None), (None, None),
])
def test_pam_service(value, service):
    assert sgeconf.pam_service(value) == service


def test_the_guard_selects_the_job_service_first_and_only_for_the_job_sshd():
    assert sgeconf.job_service_guard(JOB_SSHD + " -i") == JOB_SSHD + " -o PamServiceName=sge-sshd -i"
    assert sgeconf.job_service_guard(JOB_SSHD + " -i -o PamServiceName=sshd") == \
        JOB_SSHD + " -o PamServiceName=sge-sshd -i -o PamServiceName=sshd"
    for done in (JOB_SSHD + " -o PamServiceName=sge-sshd -i", "/usr/sbin/sshd -i", W + "/rshdwrapper", "builtin"):
        assert sgeconf.job_service_guard(done) is None, done
    guards = sgeconf.guard_entries(sgeconf.entries("ssh", W, tight=True))
    assert guards == dict.fromkeys(("qlogin_daemon", "rlogin_daemon", "rsh_daemon"),
                                   JOB_SSHD + " -o PamServiceName=sge-sshd -i")
    assert all(sgeconf.classify(v) == "ssh" and sgeconf.needs_job_stack(v) for v in guards.values())
    assert sgeconf.guard_entries(sgeconf.entries("ssh", W)) == {}


def test_without_entries_keeps_every_other_line():
    text = "#node01:\ngid_range                    20000-20100\nrsh_daemon                   /x -i\n" \
           "reporting_params             a=1 \\\n                             b=2\nqlogin_daemon                /x\n\n"
    config = sgeconf.without_entries(sgeconf.parse(text), ["rsh_daemon", "qlogin_daemon"])
    assert sgeconf.render(config) == "#node01:\ngid_range                    20000-20100\n" \
                                     "reporting_params             a=1 \\\n                             b=2\n\n"
    assert config.name == "node01"
