"""The client side: parse the wrapper's options and SGE's words, exec the client.

The hot path is ``main(NAME)``: parse argv, translate through the table in
:mod:`sgewrap.conventions`, ``os.execv`` the client.  It imports nothing but
``os``, ``sys`` and this package's small modules.
"""
import os
import sys

from . import conventions, locate, methods
from .errors import EXEC_FAILED, EXIT_CODES, NO_JOB, USAGE, WrapperError, run_cli


class Plan:
    """What a wrapper is going to do: the program and its full argv."""

    __slots__ = ("name", "program", "argv", "request", "dry_run", "help")

    def __init__(self, name):
        self.name = name
        self.program = None
        self.argv = []
        self.request = None
        self.dry_run = False
        self.help = False


def switches_of(method):
    return methods.COMMON_SWITCHES + method.switches


def parse_options(method, argv):
    """Split argv into the wrapper's options and SGE's words.

    Options are ``--flag`` or ``--flag=VALUE``/``--flag VALUE`` and come first;
    SGE's words never start with ``--`` (HOST may not start with ``-``).
    Returns ({flag-or-group: value or [values]}, dry_run, help, rest).
    """
    by_flag = {s.flag: s for s in switches_of(method)}
    given, dry_run, want_help = [], False, False
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            i += 1
            break
        if not word.startswith("--"):
            break
        flag, eq, value = word.partition("=")
        i += 1
        if flag == "--dry-run" and not eq:
            dry_run = True
            continue
        if flag == "--help" and not eq:
            want_help = True
            continue
        switch = by_flag.get(flag)
        if switch is None:
            raise WrapperError(USAGE, "unknown option %s (see --help)" % flag)
        if switch.metavar is None:
            if eq:
                raise WrapperError(USAGE, "option %s takes no value" % flag)
        elif not eq:
            if i >= len(argv):
                raise WrapperError(USAGE, "option %s needs a value %s" % (flag, switch.metavar))
            value = argv[i]
            i += 1
        if switch.check is not None:
            value = switch.check(value)
        given.append((switch, value))
    return given, dry_run, want_help, argv[i:]


def client_options(given, defaults, method):
    """(--client, the client words for the given switches, {flag: value} of the switches that add no
    words but settings for the method's ``finish``): defaults first, the last one of a group wins."""
    by_flag = {s.flag: s for s in switches_of(method)}
    chosen = {}   # group -> [(switch, value)], insertion-ordered
    for switch, value in [(by_flag[f], None) for f in defaults] + given:
        if switch.repeat:
            chosen.setdefault(switch.group, []).append((switch, value))
        else:
            chosen.pop(switch.group, None)
            chosen[switch.group] = [(switch, value)]
    client, words, settings = None, [], {}
    for pairs in chosen.values():
        for switch, value in pairs:
            if switch.flag == "--client":
                client = value
            elif not switch.words and value is not None:
                settings[switch.flag] = value
            else:
                words.extend(switch.render(value))
    return client, words, settings


def plan(name, argv, environ=os.environ):
    """Everything ``name`` would do with ``argv``, validated, without doing it."""
    method_name, slots, defaults = methods.ENTRY_POINTS[name]
    method = methods.get(method_name)
    result = Plan(name)
    given, result.dry_run, result.help, rest = parse_options(method, argv)
    if result.help:
        return result
    client, words, settings = client_options(given, defaults, method)
    result.request = conventions.parse(slots, rest)
    if client is not None:
        if not os.path.isabs(client):
            raise WrapperError(USAGE, "--client needs an absolute path, got %r" % client)
        result.program = locate.find_program((client,), environ)
    else:
        result.program = locate.find_program(method.clients, environ)
    if method.finish is not None:
        words = method.finish(words, result.program, settings, environ)
    result.argv = [result.program] + words + conventions.render(
        result.request.slot, method.name, result.request)
    return result


#: the options every wrapper has besides its method's switches (--help and the man pages list them)
OWN_OPTIONS = (("--dry-run", "print the command for your shell instead of running it"),
               ("--help", "print this help: usage, options, exit codes"))


def usage(name):
    """The --help text of entry point ``name``, made from the tables."""
    method_name, slots, defaults = methods.ENTRY_POINTS[name]
    method = methods.get(method_name)
    lines = ["usage: %s [OPTIONS] %s" % (name, " | ".join(conventions.TABLE[s][0] for s in slots)), ""]
    for slot in slots:
        parameter, caller = conventions.SLOT_PARAMETER[slot]
        lines.append("Paste into %s (called by %s); SGE appends: %s" % (
            parameter, caller, conventions.TABLE[slot][0]))
        lines.append("  runs: %s [client options] %s" % (
            method.name, conventions.TABLE[slot][1][method.name]))
    lines += ["", "Options (before what SGE appends):"]
    lines += ["  %-22s %s" % pair for pair in OWN_OPTIONS]
    for s in switches_of(method):
        flag = s.flag + ("=" + s.metavar if s.metavar else "")
        text = s.help % ", ".join(method.clients) if "%s" in s.help else s.help
        lines.append("  %-22s %s" % (flag, text))
    if defaults:
        lines.append("  default: %s" % " ".join(defaults))
    lines += ["", "Exit codes of the wrapper itself (otherwise the client's own):"]
    lines += ["  %3d  %s" % pair for pair in EXIT_CODES if pair[0] != NO_JOB]
    return "\n".join(lines) + "\n"


def unblock_signals():
    """Start the client with no signal blocked.

    Grid Engine 8.1.9's qlogin/qrsh start their client with most signals
    blocked (seen: SigBlk fffffffe698b9a01), and a blocked mask survives exec:
    ssh then never sees SIGWINCH (a resized terminal is not passed on) nor
    the other signals it handles.  Measured through the real qlogin.
    """
    try:
        import _signal     # the C module: ``signal`` would import enum (~3 ms)
        _signal.pthread_sigmask(_signal.SIG_SETMASK, ())
    except (ImportError, AttributeError, OSError):    # pragma: no cover -- not CPython / not POSIX
        pass


def main(name, argv=None):
    """Entry point of client wrapper ``name``: never returns."""
    argv = sys.argv[1:] if argv is None else argv

    def body():
        result = plan(name, argv)
        if result.help:
            sys.stdout.write(usage(name))
            return 0
        if result.dry_run:
            from .quoting import for_user_shell
            sys.stdout.write(for_user_shell(result.argv) + "\n")
            return 0
        unblock_signals()
        handed = os.environ.pop(conventions.HANDED_CCACHE, None)
        if handed is not None:               # the front took it out of qrsh -V's reach: ssh's ticket cache
            os.environ["KRB5CCNAME"] = handed
        try:
            os.execv(result.program, result.argv)
        except OSError as err:
            raise WrapperError(EXEC_FAILED, "cannot run %s: %s" % (result.program, err.strerror or err))

    run_cli(name, body)


# console_scripts of ``pip install .`` (the drop-in scripts call main(NAME) themselves)
def qlogin_wrapper():
    main("qlogin_wrapper")


def ssh_wrapper():
    main("ssh_wrapper")


def telnet_adapter():
    main("telnet_adapter")


def rlogin_adapter():
    main("rlogin_adapter")


def rsh_adapter():
    main("rsh_adapter")
