"""The six remote-startup entries of ``sge_conf``: what to set, how to read and write them.

The single source of truth for configuration values: ``sgewrap config``
prints and applies :func:`entries`, ``sgewrap check`` reads :func:`classify`,
and the end-to-end tests apply the very same values.  Stdlib only.

``qconf -sconf [NAME]`` output, as read by :func:`parse`::

    #global:                                  (or #HOST: for a local configuration)
    execd_spool_dir              /var/spool/gridengine/execd
    reporting_params             accounting=true reporting=false \\
                                 flush_time=00:00:15 joblog=false
    rsh_daemon                   builtin
                                              (a trailing empty line)

:func:`render` gives back exactly the text parsed; :func:`with_entries`
replaces only the lines of the keys it is given (appending the missing ones
after the last entry), so nothing else is lost, reformatted or reordered.

``qconf -Mconf FILE`` takes the configuration's name from FILE's basename
(``global`` or a host name); ``-Aconf FILE`` adds a local configuration that
does not exist yet, ``-dconf HOST`` deletes one.  The ``*_argv`` functions
build those command lines; the caller runs them (plumbum in the CLI,
subprocess in the tests).
"""
import os
import posixpath
import shlex

from .. import conventions, methods
from ..methods import JOB_SSHD_NAME

#: the six parameters, in sge_conf's order
SLOTS = tuple(key for slot in conventions.SLOTS for key in (slot.command, slot.daemon))
METHODS = ("builtin",) + methods.NAMES
#: the three slot pairs: (name, command key, daemon key)
PAIRS = tuple((slot.name, slot.command, slot.daemon) for slot in conventions.SLOTS)
#: unencrypted methods: check warns about them
CLEARTEXT = tuple(name for name in methods.NAMES if methods.get(name).cleartext)

SSHD = methods.get("ssh").daemon

#: the slots whose sessions get a pty from the shepherd by default (qlogin, qrsh without a command)
LOGIN_COMMANDS = ("qlogin_command", "rlogin_command")
#: Measured on Grid Engine 8.1.9 (README, "Known Grid Engine bugs"): for a pty session the
#: shepherd opens the job's output files as the job owner, fails to switch its effective uid
#: back ("Cannot reset euid") and sends SIGTERM to the job's process group.  When that lands
#: after the job's child made its session, the daemon never starts and qlogin/qrsh print
#: "error: 143:".  Only with builtin is the pty path a different, working one.
PTY_NOTE = ("with Grid Engine 8.1.9, qlogin and qrsh without a command through a wrapper need -pty no "
            "(otherwise the shepherd kills most of these sessions as they start: 'error: 143:'); the "
            "qlogin/qrsh front adds it: sgewrap config --apply installs it on the host it runs on, "
            "'sgewrap front --install' on every other submit host")

#: a file restoring a local configuration that did not exist holds this line
ABSENT_MARK = "# sgewrap: no local configuration existed; restoring deletes it"


def entries(method, wrappers_dir, tight=False, x11=None, tunnel=None, tunnel_persist=None, gssapi=None):
    """The six slot -> value entries that make ``method`` work with the wrappers in ``wrappers_dir``.

    ``x11``: True adds ``--x11``, False ``--no-x11`` to qlogin_wrapper, None
    leaves its default (``--x11``, as the shipped one).  ``tight`` (ssh only):
    the daemons are ``WRAPPERS/sge-sshd -i`` (sshd under a name of its own, so
    that its PAM service ``/etc/pam.d/sge-sshd`` ties each session to its job).
    ``tunnel`` (ssh only): True reaches the shepherd's port through the
    execution host's own sshd (``--tunnel``), a ``[USER@]HOST`` through that
    gateway (``--tunnel-via=GW``): only ssh need pass a firewall.  ``tunnel_persist``: seconds
    the tunnels' shared connection stays (``--tunnel-persist``; None: the wrapper's default).
    ``gssapi`` (ssh only): ``"auth"`` adds ``--gssapi`` (Kerberos, no delegation), ``"delegate"``
    ``--gssapi-delegate`` to every ssh wrapper.
    The legacy methods only cover their own slot; the others stay builtin.
    """
    if method not in METHODS:
        raise ValueError("unknown method %r: expected one of %s" % (method, ", ".join(METHODS)))
    if tight and method != "ssh":
        raise ValueError("--tight is only possible with ssh (the job sshd + pam_sge-qrsh-setup), not %s" % method)
    if tunnel and method != "ssh":
        raise ValueError("a tunnel is only possible with ssh (ssh -W through port 22), not %s" % method)
    if tunnel and tunnel is not True:
        from ..errors import WrapperError
        from ..methods.ssh import check_gateway
        try:
            check_gateway(tunnel)
        except WrapperError as err:
            raise ValueError(str(err))
    if gssapi and method != "ssh":
        raise ValueError("Kerberos (GSSAPI) is only possible with ssh, not %s" % method)
    if gssapi not in (None, "auth", "delegate"):
        raise ValueError("gssapi: expected 'auth' or 'delegate', got %r" % gssapi)
    if method != "builtin" and not posixpath.isabs(wrappers_dir):
        raise ValueError("the wrappers directory must be an absolute path (SGE takes values literally): %r"
                         % wrappers_dir)
    result = dict.fromkeys(SLOTS, "builtin")
    if method == "builtin":
        return result
    m = methods.get(method)      # the registry: which entry point serves which slot, which daemon
    daemon = posixpath.join(wrappers_dir, JOB_SSHD_NAME) + " -i" if tight and method == "ssh" else m.daemon
    via = "" if not tunnel else " --tunnel" if tunnel is True else " --tunnel-via=" + tunnel
    if tunnel and tunnel_persist is not None:
        via += " --tunnel-persist=%d" % int(tunnel_persist)
    for name, slots in m.entry_points():
        command = posixpath.join(wrappers_dir, name)
        if "qlogin" in slots and m.switch("--x11"):
            command += {None: "", True: " --x11", False: " --no-x11"}[x11]
        if gssapi:
            command += " --gssapi-delegate" if gssapi == "delegate" else " --gssapi"
        if m.switch("--tunnel"):
            command += via
        for slot in slots:
            result[slot + "_command"] = command
            result[slot + "_daemon"] = daemon
    return result


# --- reading and writing qconf -sconf output ---------------------------------------------


class Line:
    """One logical line of a configuration: an entry (key, value) or anything else (key None).

    ``text`` is the exact source text, continuation lines and newline included.
    """

    __slots__ = ("key", "value", "text")

    def __init__(self, key, value, text):
        self.key = key
        self.value = value
        self.text = text

    def __repr__(self):
        return "Line(%r, %r)" % (self.key, self.value)


class Config:
    """A parsed configuration: its name (``global``, a host, or None) and its lines in order."""

    def __init__(self, name, lines):
        self.name = name
        self.lines = list(lines)

    def get(self, key, default=None):
        for line in self.lines:
            if line.key == key:
                return line.value
        return default

    def __contains__(self, key):
        return any(line.key == key for line in self.lines)

    def keys(self):
        return [line.key for line in self.lines if line.key is not None]

    def as_dict(self):
        return {line.key: line.value for line in self.lines if line.key is not None}

    @property
    def absent(self):
        """True for the saved stand-in of a local configuration that did not exist."""
        return any(line.key is None and line.text.strip() == ABSENT_MARK for line in self.lines)

    def render(self):
        return render(self)

    def with_entries(self, values):
        return with_entries(self, values)

    def __eq__(self, other):
        return isinstance(other, Config) and render(self) == render(other) and self.name == other.name

    def __repr__(self):
        return "Config(%r, %d entries)" % (self.name, len(self.keys()))


def _physical_lines(text):
    return text.splitlines(True)


def _strip_newline(line):
    return line.rstrip("\r\n")


def parse(text, name=None):
    """A :class:`Config` from ``qconf -sconf`` output (or a file written for ``qconf -Mconf``).

    The name comes from a first line ``#NAME:``, else from ``name``.
    """
    physical = _physical_lines(text)
    lines = []
    i = 0
    while i < len(physical):
        first = physical[i]
        body = _strip_newline(first)
        stripped = body.strip()
        if not stripped or stripped.startswith("#"):
            if i == 0 and stripped.startswith("#") and stripped.endswith(":") and len(stripped) > 2 \
                    and " " not in stripped:
                name = stripped[1:-1]
            lines.append(Line(None, None, first))
            i += 1
            continue
        parts = [body]
        chunk = [first]
        while parts[-1].endswith("\\") and i + 1 < len(physical):
            i += 1
            chunk.append(physical[i])
            parts.append(_strip_newline(physical[i]))
        i += 1
        words = [p[:-1] if p.endswith("\\") else p for p in parts]
        joined = " ".join(w.strip() for w in words if w.strip())
        key, _, value = joined.partition(" ")
        lines.append(Line(key, value.strip(), "".join(chunk)))
    return Config(name, lines)


def format_line(key, value):
    """An entry the way qconf shows it: the key padded to 28 columns, one space, the value."""
    return "%-28s %s\n" % (key, value)


def render(config):
    """The text of ``config``: byte for byte what was parsed, for unchanged lines."""
    return "".join(line.text for line in config.lines)


def with_entries(config, values):
    """A copy of ``config`` with the entries of ``values`` (key -> value) set.

    Lines of other keys are kept exactly; a key already there keeps its place
    (and its exact text if the value is unchanged); missing keys are appended
    after the last entry, in the order of ``values``.
    """
    values = dict(values)
    out = []
    for line in config.lines:
        if line.key in values:
            value = values.pop(line.key)
            if value != line.value:
                newline = "\r\n" if line.text.endswith("\r\n") else "\n"
                line = Line(line.key, value, format_line(line.key, value)[:-1] + newline)
        out.append(line)
    last = max([i for i, line in enumerate(out) if line.key is not None], default=len(out) - 1)
    if last < 0 and out and out[0].key is None and out[0].text.startswith("#"):
        last = 0   # only a header line: append after it
    extra = [Line(k, v, format_line(k, v)) for k, v in values.items()]
    if extra and last >= 0 and not out[last].text.endswith("\n"):
        out[last] = Line(out[last].key, out[last].value, out[last].text + "\n")
    out[last + 1:last + 1] = extra
    return Config(config.name, out)


def without_entries(config, keys):
    """A copy of ``config`` without the entries of ``keys``; every other line kept exactly."""
    return Config(config.name, [line for line in config.lines if line.key is None or line.key not in keys])


def absent(name):
    """The saved stand-in of a local configuration ``name`` that does not exist."""
    return parse("#%s:\n%s\n" % (name, ABSENT_MARK))


def without_header(text):
    """``text`` with a first ``#NAME:`` line removed (what some qconf versions refuse)."""
    lines = text.splitlines(True)
    if lines and lines[0].startswith("#") and lines[0].strip().endswith(":"):
        return "".join(lines[1:])
    return text


def parse_list(text):
    """The host names of ``qconf -sconfl`` output (its 'no config defined' message: none)."""
    hosts = []
    for line in text.splitlines():
        word = line.strip()
        if word and " " not in word and not word.startswith("#"):
            hosts.append(word)
    return hosts


# --- qconf command lines -------------------------------------------------------------------

QCONF = "qconf"


def show_argv(name="global"):
    return [QCONF, "-sconf", name]


def list_argv():
    return [QCONF, "-sconfl"]


def config_file(directory, name, text):
    """Write ``text`` to ``directory/name`` (qconf reads the configuration's name from it); its path."""
    if not name or "/" in name or name in (".", ".."):
        raise ValueError("not a configuration name: %r" % name)
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def apply_argv(path, new=False):
    """``qconf -Mconf PATH`` (``-Aconf`` for a local configuration that does not exist yet)."""
    return [QCONF, "-Aconf" if new else "-Mconf", path]


def delete_argv(host):
    return [QCONF, "-dconf", host]


# --- what a value is ------------------------------------------------------------------------

_KINDS = {name: methods.get(name).names() for name in methods.NAMES}
_KIND_OF = {name: kind for kind, names in _KINDS.items() for name in names}
#: daemon-side wrappers that run another daemon: the kind is that daemon's (default sshd)
_DAEMON_WRAPPERS = ("rshdwrapper", "rshd-wrapper")
#: programs that serve a connection (as opposed to clients)
DAEMON_NAMES = frozenset(n for kind in methods.NAMES for n in methods.get(kind).daemon_names())
#: tight-integration daemons: the job sshd (needs its PAM service), the daemon wrappers
TIGHT_NAMES = frozenset(_DAEMON_WRAPPERS + (JOB_SSHD_NAME,))
#: what SGE runs for an unset/"none" command: utilbin rsh, rlogin, or telnet
DEFAULT_KIND = {slot.name: slot.default_kind for slot in conventions.SLOTS}


def words(value):
    """The words of a value, split as SGE splits commands (shell-like); on bad quoting, on spaces."""
    try:
        return shlex.split(value or "")
    except ValueError:
        return (value or "").split()


def wraps_logins(values):
    """True if qlogin or qrsh without a command run a program (not builtin) with these entries."""
    return any((values.get(key) or "").strip() != "builtin" for key in LOGIN_COMMANDS)


def is_unset(value):
    return value is None or value.strip().lower() in ("", "none")


def classify(value, slot=None):
    """Which method a command or daemon value belongs to.

    One of ``builtin``, ``ssh``, ``telnet``, ``rsh``, ``rlogin`` or
    ``unknown``.  Recognised by the program's basename: this project's
    wrappers, the clients and daemons themselves, Grid Engine's Perl
    ``rshd-wrapper`` (sshd unless it is given another daemon),
    ``$SGE_ROOT/utilbin/$ARC/rsh``...  An unset or ``none`` value is SGE's
    fallback for ``slot`` (``qlogin``/``rlogin``/``rsh`` or a full key) when
    given, else ``unknown``.
    """
    if is_unset(value):
        base = (slot or "").split("_")[0]
        return DEFAULT_KIND.get(base, "unknown")
    ws = words(value)
    if ws == ["builtin"]:
        return "builtin"
    if not ws:
        return "unknown"
    name = posixpath.basename(ws[0])
    if name in _DAEMON_WRAPPERS:
        rest = [w for w in ws[1:] if not w.startswith("--")]
        if ws[1:] and ws[1] == "--":
            rest = ws[2:]
        return classify(" ".join(rest), None) if rest else "ssh"
    return _KIND_OF.get(name, "unknown")


def program(value):
    """The program (first word) of a value, or None for builtin/unset."""
    if is_unset(value) or value.strip() == "builtin":
        return None
    ws = words(value)
    return ws[0] if ws else None


def is_tight(value):
    """True for a daemon value that runs a tight-integration wrapper (needs the PAM line), or sshd itself
    told to run under the job PAM service (``/usr/sbin/sshd -i -o PamServiceName=sge-sshd``)."""
    p = program(value)
    return p is not None and (posixpath.basename(p) in TIGHT_NAMES or _sshd_for_jobs(value))


def _sshd_for_jobs(value):
    return posixpath.basename(program(value) or "") == "sshd" and pam_service(value) == JOB_SSHD_NAME


def needs_job_stack(value):
    """True for a daemon value that runs sshd under the job's PAM service (sge-sshd, rshdwrapper's sshd, sshd
    with ``-o PamServiceName=sge-sshd``)."""
    p = program(value)
    if p is None:
        return False
    name = posixpath.basename(p)
    return name == JOB_SSHD_NAME or (name == "rshdwrapper" and classify(value) == "ssh") or _sshd_for_jobs(value)


def is_daemon_program(value):
    p = program(value)
    return p is not None and posixpath.basename(p) in DAEMON_NAMES


# --- the job sshd on OpenSSH 9.8 and later ---------------------------------------------------

#: sshd's options that take an argument (its getopt string)
_SSHD_ARGUMENT_OPTIONS = "CEbcfghkopu"


def pam_service(value):
    """The PAM service a daemon value names with ``-o PamServiceName=...`` (the first one: sshd keeps
    the first value it is given for an option), or None."""
    ws = words(value)[1:]
    i = 0
    while i < len(ws):
        word = ws[i]
        i += 1
        if word == "--":
            break
        if not word.startswith("-") or word == "-":
            continue
        for j in range(1, len(word)):
            if word[j] not in _SSHD_ARGUMENT_OPTIONS:
                continue
            argument = word[j + 1:]
            if not argument and i < len(ws):
                argument, i = ws[i], i + 1
            key, sep, service = argument.partition("=")
            if word[j] == "o" and sep and key.lower() == methods.PAM_SERVICE_OPTION.lower():
                return service
            break
    return None


def is_job_sshd(value):
    """True for a daemon value that runs the job sshd itself (``WRAPPERS/sge-sshd ...``)."""
    p = program(value)
    return p is not None and posixpath.basename(p) == JOB_SSHD_NAME


def job_service_guard(value):
    """What a job sshd ``value`` must be on a host whose sshd takes its PAM service from
    ``PamServiceName`` (OpenSSH 9.8 and later): ``value`` with ``-o PamServiceName=sge-sshd`` right
    after the program (the first value wins).  None when ``value`` is no job sshd or selects the
    job service already."""
    if not is_job_sshd(value) or pam_service(value) == JOB_SSHD_NAME:
        return None
    first, sep, rest = value.strip().partition(" ")
    return " ".join([first] + methods.job_pam_service_options()) + sep + rest


def guard_entries(values):
    """{daemon key: guarded value} of the entries of ``values`` that need :func:`job_service_guard`."""
    guards = {key: job_service_guard(values[key]) for key in SLOTS if key.endswith("_daemon") and key in values}
    return {key: value for key, value in guards.items() if value}
