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
