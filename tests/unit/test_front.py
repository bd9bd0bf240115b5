"""The qlogin/qrsh front: the rule (sgewrap.front.with_pty_no) and the bash script that carries it out
must give the same arguments for every command line; the real client gets exactly those."""
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings, strategies as st

from sgewrap.admin import front

RECORDER = "#!%s -I\nimport os, sys\nsys.stdout.buffer.write(b'\\0'.join(map(os.fsencode, sys.argv[1:])))\n" \
    % sys.executable


@pytest.fixture(scope="module")
def fronts(tmp_path_factory):
    d = tmp_path_factory.mktemp("front")
    real = d / "qsh"
    real.write_text(RECORDER)
    real.chmod(0o755)
    paths = {}
    for name in front.NAMES:
        path = d / name
        path.write_text(front.script(name, str(real)))
        path.chmod(0o755)
        paths[name] = str(path)
    return paths


def run(path, args):
    out = subprocess.run([path] + args, capture_output=True, timeout=30, env={"PATH": "/usr/bin:/bin",
                                                                              "BASH_ENV": "/nonexistent/x"})
    assert out.returncode == 0, out.stderr
    return [os.fsdecode(a) for a in out.stdout.split(b"\0")] if out.stdout else []


@pytest.mark.parametrize("name,args,expected", [
    ("qlogin", [], ["-pty", "no"]),
    ("qrsh", [], ["-pty", "no"]),
    ("qrsh", ["-q", "all.q", "-l", "h_vmem=1G"], ["-pty", "no", "-q", "all.q", "-l", "h_vmem=1G"]),
    ("qlogin", ["-pty", "yes"], ["-pty", "yes"]),                 # the user's choice stays
    ("qrsh", ["-pty", "no", "hostname"], ["-pty", "no", "hostname"]),
    ("qrsh", ["-inherit", "-nostdin", "node01", "orted"], ["-inherit", "-nostdin", "node01", "orted"]),
    ("qrsh", ["make", "-j", "4"], ["-pty", "no", "make", "-j", "4"]),   # a command's default is no pty anyway
])
def test_the_rule(name, args, expected, fronts):
    assert front.with_pty_no(name, args) == expected
    assert run(fronts[name], args) == expected


WORDS = st.one_of(st.sampled_from(["-pty", "-inherit", "yes", "no", "-q", "a b", "*", "$HOME", "'", '"', "-",
                                   "--", "\\", "$(id)", "`id`", "-ptyno", " -pty"]),
                  st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=8))


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(front.NAMES), st.lists(WORDS, max_size=6))
def test_the_script_does_what_the_rule_says(fronts, name, args):
    assert run(fronts[name], args) == front.with_pty_no(name, args)


def test_no_front_for_other_names_or_unsafe_paths():
    with pytest.raises(ValueError):
        front.script("qsub", "/usr/lib/gridengine/qsh")
    with pytest.raises(ValueError):
        front.script("qlogin", "/x'; rm -rf /;'")


ENV_RECORDER = "#!%s -I\nimport os, sys\nsys.stdout.write('%%s|%%s' %% (os.environ.get('KRB5CCNAME'), " \
    "os.environ.get('SGEWRAP_KRB5CCNAME')))\n" % sys.executable


@pytest.mark.parametrize("delegate", [False, True])
def test_with_delegation_the_front_keeps_krb5ccname_out_of_qrsh_V(tmp_path, delegate):
    """qrsh -V would put the submitting shell's KRB5CCNAME into the job's environment, which Grid Engine's
    qrsh_starter sets over the session's delegated cache: the front of a --gssapi-delegate configuration
    hands it over under another name (the ssh wrapper gives it back to its client); others leave it."""
    real = tmp_path / "qsh"
    real.write_text(ENV_RECORDER)
    real.chmod(0o755)
    path = tmp_path / "qrsh"
    path.write_text(front.script("qrsh", str(real), delegate))
    path.chmod(0o755)
    for args in (["-V", "klist"], ["-inherit", "node01", "true"]):
        out = subprocess.run([str(path)] + args, capture_output=True, text=True, timeout=30,
                             env={"PATH": "/usr/bin:/bin", "KRB5CCNAME": "FILE:/tmp/krb5cc_1000_mine"})
        assert out.stdout == ("None|FILE:/tmp/krb5cc_1000_mine" if delegate else "FILE:/tmp/krb5cc_1000_mine|None")
    out = subprocess.run([str(path)], capture_output=True, text=True, timeout=30, env={"PATH": "/usr/bin:/bin"})
    assert out.stdout == "None|None"                   # no KRB5CCNAME: nothing handed over
