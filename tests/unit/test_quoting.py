"""--dry-run quoting, proved by the real shells reading the line back."""
import shutil
import subprocess

import pytest
from hypothesis import given, settings, strategies as st

from lib import need
from sgewrap import quoting

SHELLS = ["sh", "bash", "dash", "zsh", "fish", "tcsh", "csh"]
STARTER = "'/usr/lib/gridengine/utilbin/lx-amd64/qrsh_starter'"


def read_back(shell, line):
    """The argv ``shell`` builds from ``line`` (via printf, one word a line-less record)."""
    path = shutil.which(shell)
    need(path, "shell %s not installed" % shell, "apt-get install zsh fish tcsh csh (make deps)")
    # printf prints each argument between brackets: the words the shell made
    cmd = "printf '[%s]' " + line
    out = subprocess.run([path, "-c", cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
    assert out.returncode == 0, (shell, line, out.stderr)
    return out.stdout.decode()


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("words", [
    ["/usr/bin/ssh", "-p", "22", "--", "vm", "exec", STARTER, "'/spool/a b/1.1'", "noshell"],
    ["a b", "it's", 'say "hi"', "$HOME", "`id`", "!!", "back\\slash", "", "~", "*.c", "a;b", "%self", "tab\tx"],
])
def test_round_trip_through_real_shell(shell, words):
    line = quoting.join(words, shell)
    assert read_back(shell, line) == "".join("[%s]" % w for w in words)


@pytest.mark.parametrize("shell", SHELLS)
@settings(max_examples=40, deadline=None)
@given(words=st.lists(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=12),
                      min_size=1, max_size=4))
def test_round_trip_property(shell, words):
    line = quoting.join(words, shell)
    assert read_back(shell, line) == "".join("[%s]" % w for w in words)


def test_families():
    assert quoting.family("tcsh") == quoting.family("/bin/csh") == quoting.CSH
    assert quoting.family("fish") == quoting.FISH
    assert quoting.family("bash") == quoting.family("zsh") == quoting.family("ksh") == quoting.POSIX
    assert quoting.family(None) == quoting.POSIX


def test_starter_paths_read_naturally():
    assert quoting.quote(STARTER) == '"%s"' % STARTER
