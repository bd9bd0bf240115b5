"""README.rst's tables say what the code's tables say (the man pages are generated; README's tables
are written for reading, so a test holds them to the code)."""
import os
import re

import pytest

from sgewrap import conventions, errors, methods
from sgewrap.client import OWN_OPTIONS
from sgewrap.rootside import nodeaccess
from lib import REPO

README = open(os.path.join(REPO, "README.rst"), encoding="utf-8").read()


def section(title):
    start = README.index("\n%s\n%s\n" % (title, "=" * len(title)))
    following = re.search(r"\n[^\n]+\n=+\n", README[start + len(title) * 2 + 3:])
    return README[start:start + len(title) * 2 + 3 + following.start()] if following else README[start:]


def rows(text):
    """The rows of the one simple table in ``text`` (its header row included): the lines between its
    first and last rule line, a continuation line (first column empty) joined to its row."""
    lines = text.splitlines()
    rules = [i for i, line in enumerate(lines) if is_rule(line)]
    out = []
    for line in lines[rules[0] + 1:rules[-1]]:
        if not line.strip() or is_rule(line):
            continue
        if line.startswith(" ") and out:
            out[-1] += " " + line.strip()
        else:
            out.append(line.strip())
    return out


def is_rule(line):
    return re.fullmatch(r"=+( +=+)+", line) is not None


def test_the_client_wrapper_table_has_each_entry_point_its_slots_and_what_sge_appends():
    table = rows(section("Client wrappers").split("For example::")[0])
    for name, (_, slots, _) in methods.ENTRY_POINTS.items():
        row = next((r for r in table if r.startswith("``%s``" % name)), None)
        assert row is not None, name
        for slot in slots:
            assert "``%s``" % conventions.SLOT[slot].command in row, (name, slot)
            assert "``%s``" % conventions.SLOT[slot].appends in row, (name, slot)


def switches():
    seen = {}
    for switch in methods.COMMON_SWITCHES + tuple(s for n in methods.NAMES for s in methods.get(n).switches):
        seen[switch.flag] = switch
    return list(seen.values())


@pytest.mark.parametrize("flag", [flag for flag, _ in OWN_OPTIONS] + [s.flag for s in switches()])
def test_the_client_options_table_lists_every_option(flag):
    text = section("Client wrappers")
    by_flag = {s.flag: s for s in switches()}
    switch = by_flag.get(flag)
    shown = "``%s=%s``" % (flag, switch.metavar) if switch and switch.metavar else "``%s``" % flag
    assert shown in text


@pytest.mark.parametrize("code, meaning", errors.EXIT_CODES)
def test_the_exit_code_table_has_every_code(code, meaning):
    assert any(r.split()[0] == str(code) for r in rows(section("Exit codes")))


@pytest.mark.parametrize("option", [o for o in nodeaccess.TABLE.options if o.commands == ("adopt",)],
                         ids=lambda o: o.flag)
def test_the_adopt_table_has_every_adopt_option_with_its_default(option):
    text = " ".join(section("Adopt: ssh into a node where your job runs, and the login joins the job").split())
    assert "``%s" % option.flag in text
    if option.default not in (None, False):
        row = text[text.index("``%s" % option.flag):][:200]
        assert str(option.default) in row
