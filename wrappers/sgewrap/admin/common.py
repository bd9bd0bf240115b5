"""What the subcommands share: the error type, qconf through plumbum, reading configurations, tables."""
import os
import re
import socket
import sys

from plumbum.cli import SwitchError

from . import sgeconf
from ..errors import INTERNAL  # noqa: F401 -- the admin command's code for a bug, as every program's

OK = 0
FAILED = 1          #: the job failed: check found problems, a selftest failed, a command failed
UNREADABLE = 2      #: a configuration could not be read; a usage error
INTERRUPTED = 130


class AdminError(Exception):
    """The subcommand cannot do its job: one line for the administrator, and an exit code."""

    def __init__(self, message, code=FAILED):
        super().__init__(message)
        self.code = code


class Command:
    """Mixed into every subcommand: a bad switch is one line and exit 2, not a help screen.

    The docstring's first line is the one-line description (the subcommand
    list), the rest the text of ``--help``.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        import inspect
        first, _, rest = inspect.cleandoc(cls.__doc__ or "").partition("\n")
        cls.DESCRIPTION = first.strip()
        cls.DESCRIPTION_MORE = rest.strip() or None

    def _parse_args(self, argv):
        try:
            return super()._parse_args(argv)
        except SwitchError as err:
            raise _switch_error(self, err)

    def _validate_args(self, swfuncs, tailargs):
        try:
            return super()._validate_args(swfuncs, tailargs)
        except SwitchError as err:
            raise _switch_error(self, err)


def _switch_error(app, err):
    from plumbum.cli import application
    # plumbum's own "show and quit" signals; ShowCompletion is newer than Debian 12's plumbum 1.8.0
    shows = tuple(getattr(application, n) for n in ("ShowHelp", "ShowHelpAll", "ShowVersion", "ShowCompletion")
                  if hasattr(application, n))
    if isinstance(err, shows):
        return err
    return AdminError("%s (see %s --help)" % (str(err).rstrip("."), app.PROGNAME), UNREADABLE)


def _one_line(text, limit=400):
    text = " / ".join(line.strip() for line in (text or "").strip().splitlines() if line.strip())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def run(argv, code=FAILED, retcode=0, stdin=None):
    """Run ``argv`` (a list, no shell) through plumbum: (exit status, stdout, stderr).

    A missing program or an exit status not in ``retcode`` (None: any) raises
    AdminError naming the command and its output.
    """
    import shutil
    from plumbum import local
    from plumbum.commands.processes import ProcessExecutionError
    # the environment of this process as it is now (plumbum's local.env is a copy taken at import)
    path = shutil.which(argv[0], path=os.environ.get("PATH", os.defpath))
    if path is None:
        hint = " (source $SGE_ROOT/$SGE_CELL/common/settings.sh first)" if argv[0] == sgeconf.QCONF else ""
        raise AdminError("%s: command not found in PATH%s" % (argv[0], hint), code)
    program = local[path].with_env(**os.environ)
    command = program[tuple(argv[1:])]
    if stdin is not None:
        command = command << stdin
    try:
        return command.run(retcode=retcode)
    except ProcessExecutionError as err:
        raise AdminError("'%s' failed with exit status %s: %s" % (
            " ".join(argv), err.retcode, _one_line(err.stderr or err.stdout) or "no output"), code)
    except OSError as err:
        raise AdminError("cannot run '%s': %s" % (" ".join(argv), err.strerror or err), code)


def qconf_list(code=UNREADABLE):
    """The hosts with a local configuration (``qconf -sconfl``)."""
    rc, out, err = run(sgeconf.list_argv(), code=code, retcode=None)
    if rc != 0:
        if "no config" in (out + err).lower():
            return []
        raise AdminError("'%s' failed with exit status %d: %s" % (
            " ".join(sgeconf.list_argv()), rc, _one_line(err or out) or "no output"), code)
    return sgeconf.parse_list(out)


def qconf_show(name, code=UNREADABLE):
    """The exact ``qconf -sconf NAME`` output."""
    rc, out, err = run(sgeconf.show_argv(name), code=code, retcode=None)
    if rc != 0 or not out.strip():
        raise AdminError("'%s' failed with exit status %d: %s" % (
            " ".join(sgeconf.show_argv(name)), rc, _one_line(err or out) or "no output"), code)
    return out


def read_live(code=UNREADABLE):
    """(global Config, {host: Config}) from the running qmaster."""
    glob = sgeconf.parse(qconf_show("global", code=code), "global")
    hosts = {}
    for host in qconf_list(code=code):
        hosts[host] = sgeconf.parse(qconf_show(host, code=code), host)
    return glob, hosts


def read_live_from_here(code=UNREADABLE):
    """(global Config, {host: Config}, [hosts not read]): qconf resolves a host's name here before it
    shows its configuration, and another host's name may not resolve on this one (a Debian 13 node that
    knows only its own network); those are skipped and named.  This host's own must be read."""
    glob = sgeconf.parse(qconf_show("global", code=code), "global")
    hosts, skipped = {}, []
    for name in qconf_list(code=code):
        try:
            hosts[name] = sgeconf.parse(qconf_show(name, code=code), name)
        except AdminError:
            if same_host(name, this_host()):
                raise
            skipped.append(name)
    return glob, hosts, skipped


#: files of a --from directory that are not host configurations
NOT_HOSTS = ("global", "sconfl")


def read_dir(directory):
    """(global Config, {host: Config}) from saved outputs in ``directory``.

    ``global`` holds ``qconf -sconf global``, ``sconfl`` the output of
    ``qconf -sconfl`` (optional: without it every other file is a host's) and
    a file named after each host its ``qconf -sconf HOST``.
    """
    def read(name):
        try:
            with open(os.path.join(directory, name)) as f:
                return f.read()
        except OSError as err:
            raise AdminError("cannot read %s: %s" % (os.path.join(directory, name), err.strerror or err),
                             UNREADABLE)
    if not os.path.isdir(directory):
        raise AdminError("%s is not a directory" % directory, UNREADABLE)
    glob = sgeconf.parse(read("global"), "global")
    if os.path.exists(os.path.join(directory, "sconfl")):
        names = sgeconf.parse_list(read("sconfl"))
    else:
        names = sorted(n for n in os.listdir(directory)
                       if n not in NOT_HOSTS and not n.startswith((".", "queue."))
                       and not n.endswith((".md", ".txt", ".rst"))
                       and os.path.isfile(os.path.join(directory, n)))
    hosts = {name: sgeconf.parse(read(name), name) for name in names}
    return glob, hosts


def this_host():
    return socket.gethostname()


def gid_ranges(glob, hosts):
    """[(configuration, gid_range)...] of the global configuration and every local one that sets it:
    what the session reaper's cache holds (:mod:`sgewrap.rootside.gidrange`)."""
    found = [("global", glob.get("gid_range"))] if glob.get("gid_range") else []
    return found + [(name, conf.get("gid_range")) for name, conf in hosts.items() if conf.get("gid_range")]


def cache_gid_range(path=None):
    """Write this host's gid_range cache from ``qconf -sconf`` (every configuration), for the reaper that
    kills a closed session's leftovers by the job's group id only inside it; a line saying what was
    done.  A cache that cannot be written leaves the reaper as it was (said: --apply goes on)."""
    from ..rootside import frame, gidrange
    path = path or gidrange.CACHE
    skipped = []
    try:
        glob, hosts, skipped = read_live_from_here(code=FAILED)
        values = gid_ranges(glob, hosts)
        if not values or values[0][0] != "global":
            raise ValueError("the global configuration has no gid_range")
        gidrange.write(values, path)
    except (AdminError, ValueError, OSError, frame.UnsafeError) as err:
        return "warning: cannot write %s (%s): the session reaper goes on by what is there (sgewrap check " \
            "says what)" % (path, getattr(err, "strerror", None) or err)
    return "wrote %s: %s (a closed session's leftovers are killed by the job's group id only inside it)%s" % (
        path, "; ".join("%s %s" % pair for pair in values),
        "; not read here: %s (qconf -sconf failed for it; this host's own line does not depend on it)"
        % ", ".join(skipped) if skipped else "")


def same_host(a, b):
    if not a or not b:
        return False
    return a == b or a.split(".")[0] == b.split(".")[0]


def config_of(host, hosts):
    """The local configuration name that applies to ``host`` (None: the global one alone)."""
    for name in hosts:
        if same_host(name, host):
            return name
    return None


def effective(glob, local, key):
    """The value in effect: the local configuration's if it sets ``key``, else the global one's."""
    if local is not None and key in local:
        return local.get(key)
    return glob.get(key)


def default_wrappers():
    """Where the wrappers are: next to this ``sgewrap`` if it is the installed one, else $SGE_ROOT's."""
    for here in (os.path.dirname(os.path.abspath(sys.argv[0] or "")),
                 os.path.dirname(os.path.realpath(sys.argv[0] or ""))):   # /usr/bin/sgewrap -> /usr/lib/sgewrap
        if os.path.isfile(os.path.join(here, "ssh_wrapper")) and os.path.isfile(os.path.join(here, "sgewrap")):
            return here
    root = os.environ.get("SGE_ROOT")
    if root and os.path.isabs(root):
        return os.path.join(root, "util", "resources", "wrappers")
    raise AdminError("cannot tell where the wrappers are installed: give --wrappers DIR or set SGE_ROOT", UNREADABLE)


def require_isolated_hook(wrappers_dir):
    """``WRAPPERS/node_access``, the hook a PAM service runs as root; AdminError if it is missing or a
    Python script without an isolated interpreter line."""
    hook = os.path.join(wrappers_dir, "node_access")
    if not os.path.isfile(hook):
        raise AdminError("%s is missing: install the wrappers first (sgewrap install --sge-root DIR)" % hook)
    problem = interpreter_problem(hook)
    if problem:
        raise AdminError("%s would run as root %s: reinstall it with sgewrap install --sge-root DIR (pip cannot "
                         "write an isolated interpreter line)" % (hook, problem))
    return hook


def interpreter_problem(path):
    """Why the script ``path`` would start Python without isolation (None if it would not, or is no
    Python script).  Only Python's line is read: Grid Engine's own Perl ``rshd-wrapper`` is a daemon, and
    Grid Engine 8.1.9 gives a daemon only the job's ``SGE_*`` variables (measured); what an entry names
    itself is :func:`command_problem`'s."""
    try:
        with open(path, "rb") as f:
            first = f.readline(256)
    except OSError:
        return None
    if not first.startswith(b"#!") or b"python" not in first:
        return None
    words = first[2:].decode("utf-8", "replace").split()
    if not words:
        return None
    if os.path.basename(words[0]) == "env":
        return "through '#!%s' (the interpreter is looked up in the caller's PATH)" % " ".join(words)
    if not any(w.startswith("-") and not w.startswith("--") and "I" in w for w in words[1:]):
        return "with '#!%s' (no -I: not isolated)" % " ".join(words)
    return None


#: interpreters that read code or startup files from the environment they are started with, the option
#: that stops it, why it is needed, and the options that take an argument (where the option letters end)
_PYTHON = re.compile(r"^(python|pypy)[0-9.]*$")
_PERL = re.compile(r"^perl[0-9.]*$")
SHELLS = ("sh", "dash", "bash", "ksh", "mksh", "zsh", "ash")
PATH_LOOKUP = "looked up in the caller's PATH"


def _letters(args, with_argument):
    """The option letters given before the first operand (the script), and the words from it on;
    ``with_argument``: the letters whose option takes an argument (the rest of the word, or the next)."""
    letters, i = set(), 0
    while i < len(args):
        word = args[i]
        if word == "--":
            return letters, args[i + 1:]
        if word.startswith("--"):          # a long option
            i += 1
            continue
        if not word.startswith("-") or word == "-":
            break
        for n, letter in enumerate(word[1:]):
            letters.add(letter)
            if letter in with_argument:
                if n == len(word) - 2:
                    i += 1                 # its argument is the next word
                break
        i += 1
    return letters, args[i:]


def is_interpreter(word):
    """True if the program ``word`` names is an interpreter :func:`command_problem` looks at (or env)."""
    name = os.path.basename(word)
    return bool(_PYTHON.match(name) or _PERL.match(name)) or name in SHELLS or name == "env"


def command_problem(words):
    """What a root-run command line (its words, ``user@`` taken off) starts without isolation: (program,
    why, fix), or None.  Python without ``-I`` (or ``-E -s``) imports the caller's ``PYTHONPATH``,
    ``sitecustomize`` and user site-packages before the script runs; Perl without ``-T`` reads
    ``PERL5LIB``/``PERL5OPT``; bash without ``-p`` runs ``BASH_ENV`` and imports exported functions; a
    program ``env`` finds (without ``-i``) is looked up in the caller's ``PATH``.  ``sh -c``/``bash -c``
    strings and ``env`` are looked through."""
    import shlex
    if not words:
        return None
    name = os.path.basename(words[0])
    args = words[1:]
    if name == "env":
        while args and "=" in args[0] and not args[0].startswith("-"):
            args = args[1:]
        letters, rest = _letters(args, "uCS")
        if "i" in letters or (args[:1] == ["-"]) or "--ignore-environment" in args:
            return None
        while rest and "=" in rest[0]:
            rest = rest[1:]
        if rest and not rest[0].startswith("/"):
            return rest[0], PATH_LOOKUP, "name %s by its absolute path (or use env -i)" % rest[0]
        return command_problem(rest)
    interpreter = _PYTHON.match(name) or _PERL.match(name) or name == "bash"
    if interpreter and not words[0].startswith("/"):
        return name, PATH_LOOKUP, "name %s by its absolute path, isolated" % name
    if _PYTHON.match(name):
        letters, _ = _letters(args, "cmWXQ")
        if "I" in letters or {"E", "s"} <= letters:
            return None
        return name, "no -I: not isolated", "add -I (%s -I ...), or name the program itself: sgewrap's " \
            "installers write '#!PYTHON -I' into its first line" % words[0]
    if _PERL.match(name):
        letters, _ = _letters(args, "eEIMmxiCdD0l")
        if "T" in letters:
            return None
        return name, "no -T: PERL5LIB and PERL5OPT are read", "add -T (taint mode)"
    if name in SHELLS:
        letters, rest = _letters(args, "oO")
        if name == "bash" and "p" not in letters:
            return name, "no -p: BASH_ENV and exported functions are read", "add -p (bash -p ...)"
        if "c" in letters and rest:
            lexer = shlex.shlex(rest[0], posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            try:
                inner = list(lexer)
            except ValueError:
                return None
            commands, current = [], []
            for word in inner + [";"]:
                if word and all(c in ";&|()" for c in word):
                    commands.append(current)
                    current = []
                else:
                    current.append(word)
            for command in commands:
                while command and (command[0] in ("exec", "command", "nohup", "nice") or "=" in command[0]):
                    command = command[1:]
                found = command_problem(command)
                if found:
                    return found
    return None


def root_run_entries(glob, hosts, queues=None):
    """(label, value) of what Grid Engine runs as root, in every configuration: the ``*_daemon`` entries
    and each ``root@`` prolog and epilog, of the configurations and of the queues."""
    found = []
    for name, conf in [("global", glob)] + list(hosts.items()):
        where = "global configuration" if name == "global" else "local configuration of %s" % name
        for key in [k for k in sgeconf.SLOTS if k.endswith("_daemon")] + ["prolog", "epilog"]:
            value = conf.get(key)
            if key in conf and (key.endswith("_daemon") or (value or "").startswith("root@")):
                found.append(("%s: %s" % (where, key), value))
    for queue, values in sorted((queues or {}).items()):
        for which in ("prolog", "epilog"):
            if (values.get(which) or "").startswith("root@"):
                found.append(("queue %s: %s" % (queue, which), values.get(which)))
    return found


def entry_words(value):
    """The words of a configured command line, a prolog's ``user@`` taken off."""
    words = sgeconf.words(value)
    if words and "@" in words[0].split("/")[0]:
        words[0] = words[0].split("@", 1)[1]
    return words


def interpreter_errors(entries):
    """One line for each root-run entry that starts an interpreter without isolation: the entry, what it
    starts, why that is root for the job's owner, and the fix."""
    out = []
    for label, value in entries:
        found = command_problem(entry_words(value))
        if found:
            program, why, fix = found
            out.append("%s %r starts %s as root (%s): the job's owner's environment reaches it, so their code "
                       "could run as root; fix: %s" % (label, value, program, why, fix))
    return out


def table(header, rows):
    """Rows as aligned text columns (the last column is not padded)."""
    rows = [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    out = []
    for row in [header, ["-" * w for w in widths]] + rows:
        out.append("  ".join(c.ljust(w) for c, w in zip(row[:-1], widths[:-1])) + ("  " if len(row) > 1 else "")
                   + row[-1])
    return "\n".join(line.rstrip() for line in out) + "\n"
