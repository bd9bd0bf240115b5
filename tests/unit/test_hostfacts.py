"""Every execution host's job sshd, judged on one host: the facts each host's root records
(sgewrap.admin.hostfacts) and what ``sgewrap check`` makes of them for a cluster mixing Debian 12
(OpenSSH 9.2) and Debian 13 (OpenSSH 10) hosts, before and after an in-place upgrade."""
import json
import os

import pytest

from sgewrap import methods
from sgewrap.admin import check, hostfacts, pam, sgeconf

W = "/opt/sge/util/resources/wrappers"
TIGHT = sgeconf.entries("ssh", W, tight=True)


def tree(tmp_path, name, openssh_10=False, job_sshd="launcher", stack=True, module=True):
    """A fake host: its root (sshd, sshd-session on 10), wrappers directory and PAM directory."""
    root = tmp_path / name
    (root / "usr/sbin").mkdir(parents=True)
    (root / "usr/sbin/sshd").write_bytes(b"sshd" + (b"10" if openssh_10 else b"92"))
    if openssh_10:
        (root / "usr/lib/openssh").mkdir(parents=True)
        (root / "usr/lib/openssh/sshd-session").write_bytes(b"session")
    wrappers = root / "wrappers"
    wrappers.mkdir()
    if job_sshd == "launcher":
        (wrappers / methods.JOB_SSHD_NAME).write_bytes(b"\x7fELF")
    elif job_sshd == "link":
        os.symlink(methods.SSHD, str(wrappers / methods.JOB_SSHD_NAME))
    (root / "etc/pam.d").mkdir(parents=True)
    if stack:
        (root / "etc/pam.d/sge-sshd").write_text(pam.job_stack(W))
    security = root / "security"
    security.mkdir()
    (security / "pam_unix.so").write_bytes(b"")
    if module:
        (security / "pam_sgewrap.so").write_bytes(b"")
    facts = hostfacts.collect(str(wrappers), root=str(root), host=name, pam_directory=str(security))
    return dict(facts, wrappers=W)          # as on a real host: the path every host's configuration names


def test_facts_say_what_the_job_sshd_will_be(tmp_path):
    old = tree(tmp_path, "deb12")
    assert (old["pam_service_name"], old["job_sshd"], old["job_stack"], old["module"]) == (
        False, "launcher", "ok", True)
    new = tree(tmp_path, "deb13", openssh_10=True, job_sshd="link", stack=False, module=False)
    assert (new["pam_service_name"], new["job_sshd"], new["module"]) == (True, "link", False)
    assert "lacks" in new["job_stack"][0] or "No such file" in new["job_stack"][0]
    assert set(new) == set(hostfacts.KEYS)


def test_a_record_is_root_s_and_names_its_host(tmp_path):
    facts = tree(tmp_path, "deb13", openssh_10=True)
    where = str(tmp_path / "cell")
    path = hostfacts.record(facts, where)
    assert oct(os.stat(path).st_mode & 0o777) == "0o644" and os.stat(path).st_uid == 0
    assert hostfacts.load(where) == {"deb13": json.loads(open(path).read())}
    # a file no one should trust is not a record: writable by others, or naming another host
    other = os.path.join(where, "deb12")
    with open(other, "w") as f:
        json.dump(dict(facts, host="deb12"), f)
    os.chmod(other, 0o666)
    with open(os.path.join(where, "deb11"), "w") as f:
        json.dump(dict(facts, host="somewhere-else"), f)
    assert list(hostfacts.load(where)) == ["deb13"]
    assert hostfacts.load(str(tmp_path / "none")) == {}


def test_an_in_place_upgrade_makes_the_record_stale(tmp_path):
    before = tree(tmp_path, "n1")
    root = tmp_path / "n1"
    (root / "usr/lib/openssh").mkdir(parents=True)
    (root / "usr/lib/openssh/sshd-session").write_bytes(b"session")
    after = hostfacts.collect(str(root / "wrappers"), root=str(root), host="n1",
                              pam_directory=str(root / "security"))
    assert [k for k, _, _ in hostfacts.changed(before, after)] == ["sshd_id", "pam_service_name"]


DAEMONS = [(k, v) for k, v in TIGHT.items() if k.endswith("_daemon")]


def test_problems_the_launcher_serves_both_releases(tmp_path):
    assert hostfacts.problems(tree(tmp_path, "a"), DAEMONS) == []
    assert hostfacts.problems(tree(tmp_path, "b", openssh_10=True), DAEMONS) == []


def test_problems_a_link_on_openssh_10_would_run_untied_sessions(tmp_path):
    found = hostfacts.problems(tree(tmp_path, "deb13", openssh_10=True, job_sshd="link"), DAEMONS)
    assert [k for k, _ in found] == ["qlogin_daemon", "rlogin_daemon", "rsh_daemon"]
    assert found[0][1].startswith("deb13: qlogin_daemon runs the job sshd (a link to sshd there) without -o "
                                  "PamServiceName=sge-sshd, and deb13's sshd takes its PAM service from "
                                  "PamServiceName (OpenSSH 9.8 or later): job sessions would run under its 'sshd' "
                                  "service, untied and open to any user at the port (recorded ")
    # the guard 0.2.1 wrote as the host's local entries makes it right; on 9.2 a link is right
    guarded = [(k, sgeconf.job_service_guard(v)) for k, v in DAEMONS]
    assert hostfacts.problems(tree(tmp_path, "g", openssh_10=True, job_sshd="link"), guarded) == []
    assert hostfacts.problems(tree(tmp_path, "deb12", job_sshd="link"), DAEMONS) == []


def test_problems_plain_sshd_naming_the_job_service(tmp_path):
    plain = [("rsh_daemon", "/usr/sbin/sshd -i -o PamServiceName=sge-sshd")]
    assert hostfacts.problems(tree(tmp_path, "deb13", openssh_10=True), plain) == []
    found = hostfacts.problems(tree(tmp_path, "deb12"), plain)
    assert len(found) == 1 and "which deb12's sshd (older than 9.8) refuses: every job session there fails" \
        in found[0][1]


def test_problems_no_job_stack_or_module_there(tmp_path):
    found = [m for _, m in hostfacts.problems(tree(tmp_path, "n", stack=False, module=False), DAEMONS[:1])]
    assert len(found) == 2, found
    assert found[0].startswith("n: qlogin_daemon runs the job sshd, but its job PAM service is not right: ")
    assert found[1].startswith("n: qlogin_daemon runs the job sshd, but pam_sgewrap.so is not in its PAM directory")


def analyse(glob, hosts, facts, exec_hosts, here=None):
    return check.analyse(glob, hosts, here=here, facts=facts, exec_hosts=exec_hosts)


@pytest.fixture
def mixed(tmp_path):
    return {"vm": tree(tmp_path, "vm"), "node4": tree(tmp_path, "node4", openssh_10=True)}


def test_check_a_mixed_cluster_with_the_launcher_is_consistent(mixed):
    glob = sgeconf.parse("#global:\n" + "".join(sgeconf.format_line(k, v) for k, v in TIGHT.items()))
    report = analyse(glob, {}, mixed, ["vm", "node4"])
    assert report.consistent and not [p for p in report.warnings if p.host], [str(p) for p in report.problems]
    assert any(n.startswith("node4: job sshd launcher, None, job PAM service ok (recorded ") for n in report.notes)


def test_check_names_the_debian_13_host_whose_job_sshd_is_a_link(tmp_path, mixed):
    mixed["node4"] = tree(tmp_path, "node4-link", openssh_10=True, job_sshd="link")
    mixed["node4"]["host"] = "node4"
    glob = sgeconf.parse("#global:\n" + "".join(sgeconf.format_line(k, v) for k, v in TIGHT.items()))
    report = analyse(glob, {}, mixed, ["vm", "node4"])
    assert not report.consistent
    assert {p.host for p in report.errors} == {"node4"}
    assert "node4: rsh_daemon runs the job sshd (a link to sshd there) without -o PamServiceName=sge-sshd" in \
        "\n".join(p.message for p in report.errors)
    # a host that never recorded facts: a warning that says how to record them
    report = analyse(glob, {}, {"vm": mixed["vm"]}, ["vm", "node5"])
    assert report.consistent and [p.host for p in report.warnings if p.host] == ["node5"]
    assert "run sgewrap config ssh --tight --apply (or sgewrap facts --record) on node5" in report.warnings[-1].message
    # no job sshd in force: nothing to say about any host
    assert not [p for p in analyse(sgeconf.parse("#global:\n"), {}, {}, ["vm", "node5"]).problems if p.host]


def test_check_a_job_sshd_value_naming_another_pam_service_is_an_error():
    glob = sgeconf.parse("#global:\n" + "".join(sgeconf.format_line(k, v) for k, v in dict(
        TIGHT, rsh_daemon=W + "/sge-sshd -i -o PamServiceName=sshd").items()))
    report = check.analyse(glob, {})
    assert [p.message for p in report.errors] == [
        "global configuration: rsh_daemon runs the job sshd under the PAM service 'sshd', not sge-sshd: its "
        "sessions are neither tied to their job nor limited to its owner"]


def test_plain_sshd_naming_the_job_service_is_tight_and_needs_the_job_stack(tmp_path):
    value = "/usr/sbin/sshd -i -o PamServiceName=sge-sshd"
    assert sgeconf.is_tight(value) and sgeconf.needs_job_stack(value)
    assert not sgeconf.is_tight("/usr/sbin/sshd -i") and not sgeconf.needs_job_stack("/usr/sbin/sshd -i")
    glob = sgeconf.parse("#global:\n" + "".join(sgeconf.format_line(k, v) for k, v in dict(
        TIGHT, rsh_daemon=value).items()))
    missing = str(tmp_path / "no-stack")
    report = check.analyse(glob, {}, here="n1", pam_file=os.devnull, executable=lambda p: True,
                           job_pam_file=missing)
    assert [p.message for p in report.errors] == [
        "n1: qlogin_daemon, rlogin_daemon, rsh_daemon run the job sshd, but %s: No such file or directory (sgewrap "
        "config ssh --tight --apply writes it)" % missing]
    # with the stack in place, the plain sshd needs nothing more on OpenSSH 10 (9.2 refuses the option:
    # what each host's recorded facts tell, above)
    stack = tmp_path / "stack"
    stack.write_text(pam.job_stack(W))
    assert check.analyse(glob, {}, here="n1", pam_file=os.devnull, executable=lambda p: True,
                         job_pam_file=str(stack)).consistent


def test_check_a_record_of_another_wrappers_directory_is_not_judged(mixed):
    """The value in force names wrappers the host's record does not describe: say so, judge nothing."""
    other = sgeconf.entries("ssh", "/usr/lib/sgewrap", tight=True)
    glob = sgeconf.parse("#global:\n" + "".join(sgeconf.format_line(k, v) for k, v in other.items()))
    report = analyse(glob, {}, mixed, ["vm", "node4"])
    assert report.consistent
    assert [p.message for p in report.warnings if p.host == "node4"] == [
        "node4: qlogin_daemon, rlogin_daemon, rsh_daemon run /usr/lib/sgewrap/sge-sshd, but node4's record describes "
        "the wrappers in %s: record again there (sgewrap facts --record --wrappers /usr/lib/sgewrap)"
        % mixed["node4"]["wrappers"]]


def test_a_record_is_never_written_through_a_link_or_into_a_directory_others_may_write(tmp_path):
    """The common directory is the admin user's: a record directory that is a link (to /etc, say) or that
    others may write is refused, and nothing is written there."""
    facts = tree(tmp_path, "n1")
    target = tmp_path / "elsewhere"
    target.mkdir()
    link = tmp_path / "cell-link"
    link.symlink_to(target)
    with pytest.raises(Exception, match="symbolic link"):
        hostfacts.record(facts, str(link))
    assert list(target.iterdir()) == []
    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o777)
    with pytest.raises(Exception, match="not group/other writable"):
        hostfacts.record(facts, str(loose))
    assert list(loose.iterdir()) == []
    with pytest.raises(ValueError):
        hostfacts.record(dict(facts, host="../etc"), str(tmp_path / "cell"))
