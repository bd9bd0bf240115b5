"""The man pages: fresh (regenerated from the tables, identical to wrappers/man), clean for groff
and man, and in agreement with each program's --help."""
import os
import re
import subprocess
import sys

import pytest

from lib import WRAPPERS_SRC
from sgewrap.admin import manpages
from sgewrap import methods
from sgewrap.errors import EXIT_CODES, NO_JOB

MAN = os.path.join(WRAPPERS_SRC, "man")


def _roff_body(text):
    """A page without its comment lines (docutils writes its own version and the date there)."""
    return "\n".join(line for line in text.splitlines() if not line.startswith('.\\"'))


def text_of(page):
    """The page as plain text on one long line per paragraph, no hyphenation; spaces collapsed."""
    out = subprocess.run(["groff", "-man", "-Tutf8", "-P-cbou", "-rLL=2000n", "-rHY=0", page],
                         capture_output=True, text=True, check=True).stdout
    return re.sub(r"\s+", " ", out.replace("\u2010", "-").replace("\u2212", "-"))


def squeeze(text):
    return re.sub(r"\s+", " ", text).strip()


@pytest.fixture(scope="module")
def fresh():
    pytest.importorskip("docutils")
    return {name: manpages.render(rst) for name, rst in manpages.pages().items()}


def test_every_installed_program_has_a_page_and_the_pages_are_fresh(fresh):
    programs = set(methods.ENTRY_POINTS) | set(methods.USER_PROGRAMS) | set(methods.ROOT_ENTRY_POINTS) | {"sgewrap"}
    assert {n.rsplit(".", 1)[0] for n in fresh} == programs | {"sgewrap-wrappers"}
    assert sorted(os.listdir(MAN)) == sorted(fresh), "make man"
    for name, roff in fresh.items():
        with open(os.path.join(MAN, name)) as f:
            assert _roff_body(f.read()) == _roff_body(roff), "%s is stale: make man" % name


@pytest.mark.parametrize("name", sorted(os.listdir(MAN)))
def test_groff_and_man_render_each_page_without_a_warning(name):
    page = os.path.join(MAN, name)
    lint = subprocess.run(["groff", "-man", "-ww", "-z", page], capture_output=True, text=True)
    assert (lint.returncode, lint.stderr) == (0, "")
    shown = subprocess.run(["man", "--warnings", "-l", page], capture_output=True, text=True,
                           env=dict(os.environ, MANPAGER="cat", PAGER="cat", MANWIDTH="100"))
    assert shown.returncode == 0 and shown.stderr == "" and "DESCRIPTION" in shown.stdout
    whatis = subprocess.run(["lexgrog", page], capture_output=True, text=True)
    assert whatis.returncode == 0 and " - " in whatis.stdout      # apropos/whatis find it


def _help(name, *args):
    env = {"PYTHONPATH": WRAPPERS_SRC, "COLUMNS": manpages.COLUMNS, "PATH": "/usr/bin:/bin"}
    argv = [sys.executable, "-c", "from sgewrap.admin.cli import main; main()"] if name == "sgewrap" \
        else [sys.executable, os.path.join(WRAPPERS_SRC, name)]
    proc = subprocess.run(argv + list(args) + ["--help"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("name", sorted(methods.ENTRY_POINTS))
def test_a_client_page_says_what_its_help_says(name):
    page = text_of(os.path.join(MAN, name + ".1"))
    text = _help(name)
    flags = re.findall(r"^  (--[a-z0-9-]+)(?:=(\S+))?\s", text, re.M)
    assert flags
    for flag, metavar in flags:
        assert (flag + ("=" + metavar if metavar else "")) in page, flag
    for line in re.findall(r"^  (--[a-z0-9-]+(?:=\S+)?)\s+(.*)$", text, re.M):
        assert squeeze(line[1]) in page, line
    for code, why in EXIT_CODES:
        assert ("%d %s" % (code, why) in page) == (code != NO_JOB), code
    for usage in re.findall(r"SGE appends: (.*)$", text, re.M):
        assert usage in page


@pytest.mark.parametrize("name,section", [("rshdwrapper", 8), ("node_access", 8), ("qrsh_ssh", 1), ("qssh", 1)])
def test_a_page_holds_its_programs_help(name, section):
    page = text_of(os.path.join(MAN, "%s.%d" % (name, section)))
    text = _help(name)
    if name == "qrsh_ssh":        # its help is made of the same tables as the page
        from sgewrap import qrshssh
        for code, why in qrshssh.EXIT_CODES:
            assert "%d %s" % (code, squeeze(why)) in page
        for tool, *_ in qrshssh.TOOLS.values():
            assert tool in page and tool in text
        for what, _ in qrshssh.POLICIES:
            assert squeeze(what) in page and what in text
        return
    for line in text.splitlines():
        assert squeeze(line) in page, line


@pytest.mark.parametrize("sub", ["", "config", "check", "install", "node-access", "front", "selftest", "explain",
                                 "uninstall", "job-ssh"])
def test_the_sgewrap_page_holds_every_commands_help(sub):
    page = text_of(os.path.join(MAN, "sgewrap.8"))
    text = _help("sgewrap", *([sub] if sub else []))
    for line in text.splitlines():
        assert squeeze(line) in page, line
