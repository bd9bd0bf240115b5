"""``sgewrap explain -- WRAPPER ARGS...``: a wrapper's ``--dry-run``, with the reasons.

Uses the wrappers' own code (:mod:`sgewrap.client`, :mod:`sgewrap.conventions`,
:mod:`sgewrap.quoting`): what it shows is what the wrapper would do.
"""
import os

from plumbum import cli

from .. import client, conventions, methods, quoting
from ..errors import WrapperError
from .common import UNREADABLE, AdminError, Command


def option_lines(method, given, defaults):
    """One line per option (defaults first), saying which client words it adds or what overrode it."""
    by_flag = {s.flag: s for s in client.switches_of(method)}
    entries = [(by_flag[f], None, "default") for f in defaults] + [(s, v, "given") for s, v in given]
    winner = {}
    for i, (switch, _, _) in enumerate(entries):
        if not switch.repeat:
            winner[switch.group] = i
    lines = []
    for i, (switch, value, origin) in enumerate(entries):
        flag = switch.flag + ("=" + value if switch.metavar else "")
        if switch.flag == "--client":
            what = "the client program is %s" % value
        else:
            what = "adds %s" % (" ".join(switch.render(value if switch.metavar else None)) or "nothing")
        if not switch.repeat and winner[switch.group] != i:
            what = "overridden by %s" % entries[winner[switch.group]][0].flag
        lines.append("%-28s %s (%s)" % (flag, what, origin if origin == "given" else "the wrapper's default"))
    return lines


def describe_request(request):
    parts = ["HOST=%s" % request.host, "PORT=%d" % request.port]
    if request.nostdin:
        parts.append("-n (qrsh -nostdin)")
    if request.command:
        parts.append("CMD=%s" % " ".join(request.command))
        if request.command[-1] == "noshell":
            parts.append("(ends with noshell: qrsh -noshell)")
    return " ".join(parts)


def explain(argv, shell=None, environ=os.environ, out=print):
    """Print the explanation of ``argv`` (argv[0]: the wrapper); the wrapper's exit code."""
    if not argv:
        raise AdminError("give the wrapper and its arguments after --, e.g. "
                         "sgewrap explain -- ssh_wrapper -p 4711 node01 hostname", UNREADABLE)
    name = os.path.basename(argv[0])
    if name not in methods.ENTRY_POINTS:
        raise AdminError("%s is not a client wrapper: expected one of %s" % (
            name, ", ".join(sorted(methods.ENTRY_POINTS))), UNREADABLE)
    method_name, slots, defaults = methods.ENTRY_POINTS[name]
    method = methods.get(method_name)
    out("wrapper     %s: method %s (%s)" % (name, method.name, method.summary))
    for slot in slots:
        parameter, caller = conventions.SLOT_PARAMETER[slot]
        out("            paste into %s (called by %s); SGE appends '%s'" % (
            parameter, caller, conventions.TABLE[slot][0]))
    try:
        given, dry_run, want_help, rest = client.parse_options(method, argv[1:])
    except WrapperError as err:
        out("options     would fail: %s (exit %d)" % (err, err.code))
        return err.code
    lines = option_lines(method, given, defaults)
    if dry_run:
        lines.append("--dry-run                    print the command instead of running it")
    if want_help:
        lines.append("--help                       print the wrapper's help instead of running anything")
    out("options     " + ("\n            ".join(lines) if lines else "none"))
    matched = None
    for slot in slots:
        parameter = conventions.SLOT_PARAMETER[slot][0]
        try:
            request = conventions.match(slot, rest)
        except WrapperError as err:
            out("convention  %s '%s': the shape fits but %s (exit %d)" % (
                parameter, conventions.TABLE[slot][0], err, err.code))
            return err.code
        if request is None:
            out("convention  %s '%s': does not fit %d word%s" % (
                parameter, conventions.TABLE[slot][0], len(rest), "" if len(rest) == 1 else "s"))
            continue
        out("convention  %s '%s': matches: %s" % (parameter, conventions.TABLE[slot][0], describe_request(request)))
        matched = request
        break
    if matched is None:
        err = WrapperError(conventions.CONVENTION, "")
        try:
            conventions.parse(slots, rest)
        except WrapperError as e:
            err = e
        out("result      would fail: %s (exit %d)" % (err, err.code))
        return err.code
    try:
        plan = client.plan(name, argv[1:], environ)
    except WrapperError as err:
        out("client      would fail: %s (exit %d)" % (err, err.code))
        return err.code
    chosen = [v for s, v in given if s.flag == "--client"]
    how = "--client" if chosen else "first executable of " + ", ".join(method.clients)
    out("client      %s (%s)" % (plan.program, how))
    out("client args %s" % " ".join(conventions.TABLE[matched.slot][1][method.name].split()))
    shell = shell or quoting.user_shell()
    out("command     %s" % quoting.join(plan.argv, shell))
    out("            (quoted for %s; the wrapper execs it directly, without a shell)" % shell)
    return 0


class Explain(Command, cli.Application):
    """Show how a wrapper would translate ARGV: its --dry-run, with reasons

    Give the wrapper and its arguments after --.  Shows the convention that
    matched, every option, and the final command quoted for your shell.
    Exit status: the one the wrapper would have.
    """

    shell = cli.SwitchAttr("--shell", str, argname="NAME",
                           help="quote for this shell (sh, bash, zsh, fish, csh, tcsh; default: the one running)")

    def main(self, *argv):
        return explain(list(argv), shell=self.shell)
