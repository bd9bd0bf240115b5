"""The ssh trust files sgewrap writes from the hosts' records (sgewrap.admin.sshtrust): managed blocks
that go back out byte for byte, known-hosts patterns for any port, and what check reports missing."""
import os

from sgewrap.admin import sshtrust

NODE4 = {"host": "node4", "names": ["node4"], "addresses": ["10.203.0.2", "fd00::4"],
         "host_keys": ["ssh-ed25519 AAAAnode4", "ssh-rsa AAAArsa4"]}
VM = {"host": "vm", "names": ["vm", "vm.example.org"], "addresses": ["10.203.0.1"], "host_keys": ["ssh-ed25519 AAAAvm"]}


def test_patterns_cover_every_name_and_address_on_any_port():
    assert sshtrust.patterns(NODE4) == ["node4", "[node4]:*", "10.203.0.2", "[10.203.0.2]:*", "fd00::4",
                                        "[fd00::4]:*"]
    assert sshtrust.known_hosts_body({"node4": NODE4, "vm": VM}) == [
        "node4,[node4]:*,10.203.0.2,[10.203.0.2]:*,fd00::4,[fd00::4]:* ssh-ed25519 AAAAnode4",
        "node4,[node4]:*,10.203.0.2,[10.203.0.2]:*,fd00::4,[fd00::4]:* ssh-rsa AAAArsa4",
        "vm,[vm]:*,vm.example.org,[vm.example.org]:*,10.203.0.1,[10.203.0.1]:* ssh-ed25519 AAAAvm"]


def test_a_block_goes_in_and_out_leaving_the_site_s_file_byte_for_byte(tmp_path):
    path = str(tmp_path / "ssh_known_hosts")
    site = "# the site's own\nother.example.org ssh-ed25519 AAAAother"        # no final newline
    with open(path, "w") as f:
        f.write(site)
    assert sshtrust.put_block(path, sshtrust.KNOWN_HOSTS_WHAT, ["a b c"])
    assert not sshtrust.put_block(path, sshtrust.KNOWN_HOSTS_WHAT, ["a b c"])         # again: unchanged
    assert sshtrust.put_block(path, sshtrust.KNOWN_HOSTS_WHAT, ["d e f"])             # replaced, not added
    text = open(path).read()
    assert text.count("# sgewrap: begin") == 1 and "d e f" in text and "a b c" not in text
    assert sshtrust.block_lines(path, sshtrust.KNOWN_HOSTS_WHAT) == ["d e f"]
    assert sshtrust.take_block(path, sshtrust.KNOWN_HOSTS_WHAT)
    assert open(path).read() == site + "\n"      # the newline the block needed stays: the rest is the site's
    missing = str(tmp_path / "none")
    sshtrust.put_block(missing, sshtrust.KNOWN_HOSTS_WHAT, ["x"])
    assert sshtrust.take_block(missing, sshtrust.KNOWN_HOSTS_WHAT) and not os.path.exists(missing)


def test_hostbased_files_and_what_is_missing(tmp_path):
    records = {"node4": NODE4, "vm": VM}
    equiv, dropin, known = (str(tmp_path / n) for n in ("shosts.equiv", "dropin.conf", "known"))
    config = tmp_path / "sge-sshd_config"
    config.write_text("UsePAM yes\nInclude /etc/ssh/sshd_config\n")
    keysign = tmp_path / "ssh-keysign"
    keysign.write_text("")
    keysign.chmod(0o755)
    args = dict(job_sshd_config=str(config), equiv=equiv, dropin=dropin, known_hosts=known, keysign=str(keysign))
    found = sshtrust.hostbased_problems(records, ["vm", "node4", "node3"], **args)
    assert [p.split(":")[0].split(" ")[0] for p in found] == [
        str(keysign), dropin, str(config), str(config), equiv, known]
    keysign.chmod(0o4755)
    sshtrust.write_hostbased(records, ["vm", "node4", "node3"], equiv=equiv, dropin=dropin)
    sshtrust.write_known_hosts(records, known)
    config.write_text("UsePAM yes\n%s\nInclude /etc/ssh/sshd_config\n" % "\n".join(sshtrust.JOB_SSHD_HOSTBASED))
    assert sshtrust.hostbased_problems(records, ["vm", "node4", "node3"], **args) == []
    assert sshtrust.block_lines(equiv, sshtrust.SHOSTS_WHAT) == [
        "node3", "node4", "10.203.0.2", "fd00::4", "vm", "vm.example.org", "10.203.0.1"]
    text = open(dropin).read()
    assert text.splitlines()[2] == "EnableSSHKeysign yes"         # outside any Host block: ssh-keysign reads it
    assert "Host node3 node4 10.203.0.2 fd00::4 vm vm.example.org 10.203.0.1\n    HostbasedAuthentication yes" in text
    assert sshtrust.remove_hostbased(equiv, dropin) and not os.path.exists(equiv) and not os.path.exists(dropin)


def test_port_22_takes_host_based_logins_only_when_asked_and_check_says_where_it_does_not_fit(tmp_path, monkeypatch):
    path = str(tmp_path / "sgewrap-hostbased.conf")
    assert sshtrust.write_port22(path) and not sshtrust.write_port22(path)
    assert open(path).read().splitlines()[2] == "HostbasedAuthentication yes"
    monkeypatch.setattr(sshtrust, "SSHD_DROPIN", path)
    assert "refuses host-based logins" in sshtrust.port22_problem({"hostbasedauthentication": "no"}, True)
    assert sshtrust.port22_problem({"hostbasedauthentication": "yes"}, True) is None
    assert "no slot uses --tunnel" in sshtrust.port22_problem({"hostbasedauthentication": "yes"}, False)
    assert sshtrust.remove_port22(path) and not os.path.exists(path) and not sshtrust.remove_port22(path)
    assert sshtrust.port22_problem({"hostbasedauthentication": "no"}, False) is None
    with open(path, "w") as f:
        f.write("HostbasedAuthentication no\n")          # the site's own file of that name: never replaced
    try:
        sshtrust.write_port22(path)
    except OSError as err:
        assert "was not written by sgewrap" in str(err)
    else:
        raise AssertionError("a site file was replaced")


def test_every_submit_to_execution_pair_is_judged_by_both_records():
    def side(**kw):
        facts = {"client": [], "server": [], "to": ["vm", "node4", "10.203.0.2"], "from": ["vm", "node4"],
                 "known": ["vm", "node4"]}
        facts.update(kw)
        return facts
    records = {"vm": dict(VM, hostbased=side()), "node4": dict(NODE4, hostbased=side()),
               "node3": {"host": "node3", "names": ["node3"], "hostbased": None}}
    assert sshtrust.pair_problems({"vm": dict(VM, hostbased=None)}, ["vm"], ["vm"]) == []   # not in use
    found = sshtrust.pair_problems(records, ["vm"], ["vm", "node2", "node3", "node4"])
    assert found == [
        ("warning", "node2", "node2 (execution host) has no record: its host-based side is not known here; sgewrap "
                             "config ssh --tight --hostbased --apply there"),
        ("warning", "node3", "node3 (execution host) has no host-based setup: key-less users' logins to it are "
                             "refused; sgewrap config ssh --tight --hostbased --apply there")]
    broken = ["/etc/ssh/sge-sshd_config lacks 'HostbasedAuthentication yes'"]
    records["node4"]["hostbased"] = side(**{"from": ["node4"], "known": ["node4"], "server": broken})
    records["vm"]["hostbased"] = side(client=["/usr/lib/openssh/ssh-keysign is not setuid root"], to=["vm"])
    found = sshtrust.pair_problems(records, ["vm"], ["vm", "node4"])
    assert found[0] == ("error", "vm", "host-based vm -> vm is refused: vm: /usr/lib/openssh/ssh-keysign is not "
                        "setuid root")
    assert found[1:] == [("error", "node4", "host-based vm -> node4 is refused: vm: /usr/lib/openssh/ssh-keysign is "
                          "not setuid root; vm's ssh does not try host-based logins to node4 (its drop-in); node4: "
                          "/etc/ssh/sge-sshd_config lacks 'HostbasedAuthentication yes'; node4's shosts.equiv block "
                          "does not admit vm; node4 does not know vm's host keys (it checks the client's signature "
                          "with them)")]


def test_a_hosts_host_based_side_for_its_record(tmp_path):
    equiv, dropin, known = (str(tmp_path / n) for n in ("shosts.equiv", "dropin.conf", "known"))
    config = tmp_path / "sge-sshd_config"
    config.write_text("UsePAM yes\n")
    args = dict(job_sshd_config=str(config), equiv=equiv, dropin=dropin, known_hosts=known,
                keysign=str(tmp_path / "none"))
    assert sshtrust.hostbased_facts(**args) is None
    records = {"node4": NODE4, "vm": VM}
    sshtrust.write_hostbased(records, ["vm", "node4"], equiv=equiv, dropin=dropin)
    sshtrust.write_known_hosts(records, known)
    facts = sshtrust.hostbased_facts(**args)
    assert facts["to"] == facts["from"] == ["node4", "10.203.0.2", "fd00::4", "vm", "vm.example.org", "10.203.0.1"]
    assert facts["known"] == ["node4", "10.203.0.2", "fd00::4", "vm", "vm.example.org", "10.203.0.1"]
    assert facts["client"] == ["%s: No such file or directory (openssh-client)" % (tmp_path / "none")]
    assert len(facts["server"]) == 2


def test_gssapi_problems_one_line_each_and_the_keytab_reader(tmp_path):
    import struct

    def entry(realm, *components):
        words = [realm] + list(components)
        principal = struct.pack(">h", len(components)) + b"".join(
            struct.pack(">h", len(w)) + w.encode() for w in words)
        body = principal + struct.pack(">iIBh", 1, 0, 2, 18) + struct.pack(">h", 32) + b"k" * 32
        return struct.pack(">i", len(body)) + body
    keytab = tmp_path / "krb5.keytab"
    keytab.write_bytes(b"\x05\x02" + entry("SGEWRAP.TEST", "host", "vm") + struct.pack(">i", -12) + b"\0" * 12
                       + entry("SGEWRAP.TEST", "host", "node2"))
    assert sshtrust.keytab_principals(str(keytab)) == ["host/vm@SGEWRAP.TEST", "host/node2@SGEWRAP.TEST"]
    config, conf = tmp_path / "sge-sshd_config", tmp_path / "krb5.conf"
    config.write_text("UsePAM yes\nInclude /etc/ssh/sshd_config\n")
    args = dict(job_sshd_config=str(config), krb5_conf=str(conf), keytab=str(keytab))
    found = sshtrust.gssapi_problems(["vm", "node9"], ["/w/ssh_wrapper --gssapi", "/w/qlogin_wrapper --no-x11"],
                                     **args)
    assert len(found) == 5 and all("\n" not in line for line in found), found
    assert [f for f in found if "GSSAPIAuthentication yes" in f] and [f for f in found if "krb5.conf" in f]
    assert [f for f in found if "host/node9" in f] and not [f for f in found if "host/vm" in f]
    assert [f for f in found if f.startswith("/w/qlogin_wrapper --no-x11 without --gssapi")]
    config.write_text("UsePAM yes\n%s\nInclude /etc/ssh/sshd_config\n" % "\n".join(sshtrust.JOB_SSHD_GSSAPI))
    conf.write_text("[libdefaults]\n")
    assert sshtrust.gssapi_configured(str(config))
    assert sshtrust.gssapi_problems(["vm"], ["/w/ssh_wrapper --gssapi-delegate"], **args) == []
    keytab.write_bytes(b"not a keytab")
    assert "not a keytab" in sshtrust.gssapi_problems(["vm"], [], **args)[0]


def test_the_job_sshd_file_with_and_without_gssapi():
    from sgewrap.admin import config, sgeconf
    plain, with_gssapi = config.job_sshd_config_text(), config.job_sshd_config_text(gssapi=True)
    assert "GSSAPIAuthentication yes\nGSSAPICleanupCredentials yes\nInclude " in with_gssapi
    assert "GSSAPI" not in plain
    values = sgeconf.entries("ssh", "/w", tight=True, gssapi="delegate")
    assert values["rsh_command"] == "/w/ssh_wrapper --gssapi-delegate"
    assert values["qlogin_command"] == "/w/qlogin_wrapper --gssapi-delegate"
    assert sgeconf.entries("ssh", "/w", tight=True, gssapi="auth")["rlogin_command"] == "/w/ssh_wrapper --gssapi"


def test_hosts_add_to_or_replace_grid_engine_s_and_are_kept_in_the_block(tmp_path):
    assert sshtrust.chosen_hosts(None, ["vm", "node4"]) == ["vm", "node4"]
    assert sshtrust.chosen_hosts("+login1,vm", ["vm", "node4"]) == ["vm", "node4", "login1"]
    assert sshtrust.chosen_hosts("vm,login1", ["vm", "node4"]) == ["vm", "login1"]
    for bad in ("", "+", "a b", "-oProxyCommand=x", "a,,+b", "x;y"):
        try:
            sshtrust.chosen_hosts(bad or ",", ["vm"])
        except ValueError as err:
            assert "expected host names" in str(err)
        else:
            raise AssertionError("accepted %r" % bad)
    equiv, dropin = str(tmp_path / "shosts.equiv"), str(tmp_path / "dropin.conf")
    records = {"node4": NODE4, "vm": VM}
    sshtrust.write_hostbased(records, sshtrust.chosen_hosts("+login1", ["vm", "node4"]), equiv, dropin, "+login1")
    assert sshtrust.hosts_spec(equiv) == "+login1"
    words = sshtrust.equiv_words(equiv)
    assert words[0] == "login1" and not any(w.startswith("#") for w in words)
    assert "Host login1 node4 10.203.0.2 fd00::4 vm vm.example.org 10.203.0.1\n" in open(dropin).read()
    sshtrust.write_hostbased(records, ["vm", "node4"], equiv, dropin)
    assert sshtrust.hosts_spec(equiv) is None
