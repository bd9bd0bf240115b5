"""The calling conventions of remote-startup.md section 1, one fact per test."""
import pytest
from hypothesis import given, strategies as st

from sgewrap import conventions, errors
from sgewrap.conventions import Request, parse, render
from sgewrap.errors import WrapperError

STARTER = "'/usr/lib/gridengine/utilbin/lx-amd64/qrsh_starter'"
JOBDIR = "'/var/spool/gridengine/execd/vm/active_jobs/12.1'"


def test_qlogin_appends_host_then_port():
    assert parse(["qlogin"], ["vm", "4711"]) == Request("qlogin", "vm", 4711)


def test_rlogin_appends_p_port_host():
    assert parse(["rlogin"], ["-p", "4711", "vm"]) == Request("rlogin", "vm", 4711)


def test_rsh_without_nostdin_has_no_n():
    r = parse(["rsh"], ["-p", "4711", "vm", "exec", STARTER, JOBDIR])
    assert r == Request("rsh", "vm", 4711, False, ("exec", STARTER, JOBDIR))


def test_rsh_with_nostdin_has_n_first():
    r = parse(["rsh"], ["-n", "-p", "4711", "vm", "exec", STARTER, JOBDIR])
    assert r.nostdin and r.command == ("exec", STARTER, JOBDIR)


def test_rsh_noshell_is_kept_as_last_word():
    r = parse(["rsh"], ["-p", "1", "vm", "exec", STARTER, JOBDIR, "noshell"])
    assert r.command[-1] == "noshell"


def test_starter_paths_with_spaces_and_quotes_pass_unchanged():
    words = ["exec", "'/opt/my sge/utilbin/lx-amd64/qrsh_starter'", "'/spool/a b/12.1'", "noshell"]
    r = parse(["rsh"], ["-n", "-p", "2", "vm"] + words)
    argv = render("rsh", "ssh", r)
    assert argv[-4:] == words          # not re-quoted, not split


def test_ssh_wrapper_takes_rlogin_shape_when_no_command():
    assert parse(["rsh", "rlogin"], ["-p", "9", "vm"]).slot == "rlogin"
    assert parse(["rsh", "rlogin"], ["-p", "9", "vm", "exec"]).slot == "rsh"


@pytest.mark.parametrize("slot,argv,want", [
    ("qlogin", ["vm", "22"], {"ssh": ["-p", "22", "--", "vm"], "telnet": ["vm", "22"]}),
    ("rlogin", ["-p", "22", "vm"], {"ssh": ["-p", "22", "--", "vm"], "rlogin": ["-p", "22", "vm"]}),
    ("rsh", ["-n", "-p", "22", "vm", "exec", "x"],
     {"ssh": ["-n", "-p", "22", "--", "vm", "exec", "x"], "rsh": ["-n", "-p", "22", "vm", "exec", "x"]}),
])
def test_every_client_of_every_slot(slot, argv, want):
    r = parse([slot], argv)
    assert set(want) == set(conventions.TABLE[slot][1])
    for client, words in want.items():
        assert render(slot, client, r) == words


@pytest.mark.parametrize("slots,argv", [
    (["qlogin"], []),
    (["qlogin"], ["vm"]),
    (["qlogin"], ["vm", "22", "x"]),
    (["qlogin"], ["-p", "22", "vm"]),
    (["rlogin"], ["vm", "22"]),
    (["rlogin"], ["-p", "22"]),
    (["rlogin"], ["-n", "-p", "22", "vm"]),
    (["rsh"], ["-p", "22", "vm"]),               # rsh_command always gets a command
    (["rsh"], ["-x", "22", "vm", "exec"]),
    (["rsh"], ["-n", "-n", "-p", "22", "vm", "exec"]),
    (["rsh", "rlogin"], ["22", "vm"]),
])
def test_wrong_shape_is_a_convention_error(slots, argv):
    with pytest.raises(WrapperError) as e:
        parse(slots, argv)
    assert e.value.code == errors.CONVENTION
    assert conventions.TABLE[slots[0]][0] in str(e.value)


@pytest.mark.parametrize("port", ["0", "65536", "99999", "-1", "+22", "22a", "", " 22", "2 2", "²", "٢٢", "0x16",
                                  "123456"])
def test_bad_port(port):
    with pytest.raises(WrapperError) as e:
        parse(["qlogin"], ["vm", port])
    assert e.value.code == errors.BAD_PORT


@pytest.mark.parametrize("port", ["1", "22", "65535", "022"])
def test_good_port(port):
    assert parse(["qlogin"], ["vm", port]).port == int(port)


@pytest.mark.parametrize("host,why", [
    ("-oProxyCommand=sh", "option"), ("-vm", "option"), ("", "empty"), ("vm x", "whitespace"),
    ("vm\n", "whitespace"), ("vm\x00", "control"), ("vm\x1b", "control"), ("user@vm", "'@'"),
    ("vm;reboot", "';'"), ("a" * 256, "255"), ("vm/x", "'/'"), ("$(id)", "'$'"),
])
def test_bad_host(host, why):
    with pytest.raises(WrapperError) as e:
        parse(["qlogin"], [host, "22"])
    assert e.value.code == errors.BAD_HOST
    assert why in str(e.value)


@pytest.mark.parametrize("host", ["vm", "node-01.cluster.example.org", "10.0.0.7", "::1", "fe80::1%eth0", "n_1"])
def test_good_host(host):
    assert parse(["rlogin"], ["-p", "22", host]).host == host


# -- properties: any valid HOST/PORT/CMD reaches the client argv unchanged and in order

hosts = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:",
                min_size=1, max_size=80).filter(lambda h: not h.startswith("-"))
ports = st.integers(1, 65535)
words = st.text(min_size=0, max_size=40).filter(lambda w: "\x00" not in w)
commands = st.lists(words, min_size=1, max_size=6)


@given(hosts, ports, st.booleans(), commands)
def test_rsh_property(host, port, nostdin, command):
    argv = (["-n"] if nostdin else []) + ["-p", str(port), host] + command
    r = parse(["rsh", "rlogin"], argv)
    assert (r.slot, r.host, r.port, r.nostdin, list(r.command)) == ("rsh", host, port, nostdin, command)
    for client in conventions.TABLE["rsh"][1]:
        out = render("rsh", client, r)
        assert out[-len(command):] == command
        at = len(out) - len(command) - 1        # HOST's place (HOST may equal PORT: index() would lie)
        assert out[at] == host and out[at - 1] in ("--", str(port))
        assert ("-n" in out[:at]) == nostdin


@given(hosts, ports)
def test_qlogin_property(host, port):
    r = parse(["qlogin"], [host, str(port)])
    assert render("qlogin", "telnet", r) == [host, str(port)]
    assert render("qlogin", "ssh", r) == ["-p", str(port), "--", host]


@given(st.text(min_size=1, max_size=30))
def test_host_validation_never_lets_an_option_or_space_through(host):
    try:
        checked = conventions.check_host(host)
    except WrapperError as e:
        assert e.code == errors.BAD_HOST
        return
    assert checked == host and not host.startswith("-")
    assert not any(c.isspace() or ord(c) < 32 for c in host)
