"""The root programs' options, as data: one table per program.

OpenSSH keeps sshd's options in one list from which the structure, the
defaults, the keyword table and ``sshd -T`` are made; pam_slurm_adopt keeps
its options in one struct.  Here each root program (``rshdwrapper``,
``node_access``) has one :class:`Table` of :class:`Option` rows, and
everything that knows an option reads it: the parser (:meth:`Table.parse`),
``--help`` (:meth:`Table.help`, which the man pages copy), ``sgewrap
node-access --adopt-option`` (:meth:`Table.names`) and the PAM lines
``sgewrap`` writes (their ``uid <`` bound is :data:`MIN_UID`, the default
of ``--ignore-below-uid``).  A default is written once, here or in the row.

Options come first (``--opt=VALUE``: the form that survives the shepherd's
splitting of a daemon value on spaces; ``--opt VALUE`` is read too), unless
a table says ``anywhere``.  Stdlib only.
"""
from ..errors import USAGE, WrapperError
from . import daemonlog

#: users below this uid are system users: never refused or tied by the PAM hooks, and the PAM lines'
#: ``pam_succeed_if uid <`` bound (Debian's first user uid)
MIN_UID = 1000


class Option:
    """One option: ``--flag`` (``metavar`` None) or ``--flag=METAVAR``.

    ``default`` is the value when it is not given; ``choices`` the values it
    may take; ``number``: digits only; ``path``: an absolute path;
    ``repeat``: given again, it collects a list; ``commands``: the commands
    it belongs to (None: all); ``shown``: listed in ``--help`` (an option kept
    only so old configurations keep working is not).
    """

    __slots__ = ("flag", "help", "metavar", "default", "choices", "number", "path", "repeat", "commands", "shown")

    def __init__(self, flag, help, metavar=None, default=None, choices=None, number=False, path=False,
                 repeat=False, commands=None, shown=True):
        self.flag, self.help, self.metavar, self.default = flag, help, metavar, default
        self.choices, self.number, self.path, self.repeat = choices, number, path, repeat
        self.commands, self.shown = commands, shown

    @property
    def attr(self):
        return self.flag[2:].replace("-", "_")

    def check(self, value):
        if self.choices and value not in self.choices:
            raise WrapperError(USAGE, "%s must be %s, got %r" % (
                self.flag, " or ".join(self.choices), daemonlog.clean(value, 40)))
        if self.number and not (value.isascii() and value.isdigit()):
            raise WrapperError(USAGE, "%s needs a number, got %r" % (self.flag, daemonlog.clean(value, 40)))
        if self.path and not value.startswith("/"):
            raise WrapperError(USAGE, "%s needs an absolute path, got %r" % (self.flag, daemonlog.clean(value, 80)))
        return int(value) if self.number else value

    def usage(self):
        return self.flag + ("=" + self.metavar if self.metavar else "")


class Values:
    """The parsed options: ``values.NAME`` (``--some-flag`` -> ``some_flag``) with the defaults filled in,
    ``values.given``: {flag: value} of what the command line said."""

    def __init__(self, table, given):
        self.given = given
        for option in table.options:
            if option.flag in given:
                value = given[option.flag]
            elif option.metavar is None:
                value = False
            elif option.repeat:
                value = list(option.default or ())
            else:
                value = option.default
            setattr(self, option.attr, value)


class Table:
    """A program's options; ``commands`` (if any) are the words that say what it does."""

    def __init__(self, program, options, commands=(), anywhere=False):
        self.program, self.options, self.commands, self.anywhere = program, tuple(options), tuple(commands), anywhere
        self.by_flag = {o.flag: o for o in self.options}

    def names(self, command=None):
        """The flags of the options of ``command`` (every option without one)."""
        return tuple(o.flag for o in self.options if command is None or o.commands is None or command in o.commands)

    def parse(self, argv):
        """(Values, the remaining words); WrapperError(USAGE) on a bad option."""
        given, rest, i = {}, [], 0
        while i < len(argv):
            word = argv[i]
            i += 1
            if word == "--":
                rest += argv[i:]
                break
            if not word.startswith("--"):
                rest.append(word)
                if self.anywhere:
                    continue
                rest += argv[i:]
                break
            flag, eq, value = word.partition("=")
            option = self.by_flag.get(flag)
            if option is None:
                raise WrapperError(USAGE, "unknown option %s (see --help)" % daemonlog.clean(flag, 60))
            if option.metavar is None:
                if eq:
                    raise WrapperError(USAGE, "option %s takes no value" % flag)
                given[flag] = True
                continue
            if not eq:
                if i >= len(argv):
                    raise WrapperError(USAGE, "option %s needs a value" % flag)
                value = argv[i]
                i += 1
            if not value:
                raise WrapperError(USAGE, "option %s needs a value" % flag)
            value = option.check(value)
            if option.repeat:
                given.setdefault(flag, []).append(value)
            else:
                given[flag] = value
        return Values(self, given), rest

    def help(self, extra=(), width=100):
        """The options part of ``--help``: one row each with its default and choices, then ``extra``
        rows (usage, text)."""
        import textwrap
        rows = []
        for option in self.options:
            if not option.shown:
                continue
            text = option.help
            if option.choices:
                text += " (%s)" % ", ".join(option.choices)
            if option.default not in (None, False, ()):
                text += "; default %s" % option.default
            if option.repeat:
                text += "; repeatable"
            if option.commands:
                text += " [%s]" % ", ".join(option.commands)
            rows.append((option.usage(), text))
        rows += list(extra)
        column = max(len(usage) for usage, _ in rows) + 4
        out = []
        for usage, text in rows:
            lines = textwrap.wrap(text, width - column) or [""]
            out.append("  %-*s%s\n" % (column - 2, usage, lines[0]))
            out += ["%s%s\n" % (" " * column, line) for line in lines[1:]]
        return "".join(out)


FACILITY = Option("--facility", "syslog facility", metavar="NAME", default=daemonlog.DEFAULT_FACILITY,
                  choices=daemonlog.FACILITIES)
HELP = Option("--help", "this text")
SGE_ROOT = Option("--sge-root", "SGE_ROOT, instead of the one derived from the program's own path",
                  metavar="DIR", path=True)
ADMIN_USER = Option("--admin-user", "a user besides root whose spool directories are trusted (default: "
                    "Grid Engine's admin user, from the cell's bootstrap file)", metavar="NAME", repeat=True)
