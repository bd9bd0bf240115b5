"""Grid Engine's calling conventions, as one table.

A ``*_command`` value in sge_conf is split like a shell line, SGE appends its
own words and execs the result.  What it appends depends on the slot; what a
client wants depends on the client.  Both are written as templates in the
table below, and one template language serves both directions: a slot's
template *parses* SGE's words, a client's template *renders* the client's.

Template words::

    HOST     the execution host: validated, then passed on unchanged
    PORT     the shepherd's port: a decimal 1-65535
    [-n]     SGE's ``-n`` (only with ``qrsh -nostdin``), optional
    CMD...   one or more words for the remote shell, passed on byte for byte
             (SGE already single-quoted the starter paths *inside* the words)
    other    a literal word (``-p``, ``--``)

Facts from the reference (remote-startup.md, section 1): ``-n`` is present
only for ``-nostdin``; ``noshell`` ends CMD only for ``-noshell``.  ssh gets a
``--`` before HOST because OpenSSH parses options again *after* the host
unless ``--`` ended them.
"""
from .errors import BAD_HOST, BAD_PORT, CONVENTION, WrapperError


class Slot:
    """One slot of sge_conf: its ``NAME_command`` and ``NAME_daemon`` parameters, who calls it, what
    SGE appends to the command, what each client wants instead, and the kind SGE runs when the
    parameter is unset or ``none`` (``$SGE_ROOT/utilbin/$ARC/rsh``, ``rlogin``, or ``telnet``)."""

    __slots__ = ("name", "caller", "appends", "wants", "default_kind")

    def __init__(self, name, caller, appends, wants, default_kind):
        self.name, self.caller, self.appends, self.wants, self.default_kind = \
            name, caller, appends, wants, default_kind

    @property
    def command(self):
        return self.name + "_command"

    @property
    def daemon(self):
        return self.name + "_daemon"


#: the slots, in sge_conf's order
SLOTS = (
    Slot("qlogin", "qlogin", "HOST PORT", {
        "ssh": "-p PORT -- HOST",
        "telnet": "HOST PORT",
    }, "telnet"),
    Slot("rlogin", "qrsh without a command", "-p PORT HOST", {
        "ssh": "-p PORT -- HOST",
        "rlogin": "-p PORT HOST",
    }, "rlogin"),
    Slot("rsh", "qrsh CMD and qrsh -inherit", "[-n] -p PORT HOST CMD...", {
        "ssh": "[-n] -p PORT -- HOST CMD...",
        "rsh": "[-n] -p PORT HOST CMD...",
    }, "rsh"),
)
SLOT = {s.name: s for s in SLOTS}
#: slot -> (what SGE appends, {client: what it wants})
TABLE = {s.name: (s.appends, s.wants) for s in SLOTS}
#: slot -> (the sge_conf parameter it is pasted into, who calls it)
SLOT_PARAMETER = {s.name: (s.command, s.caller) for s in SLOTS}

#: the name under which the qlogin/qrsh front (written with --gssapi-delegate) carries the submitting
#: shell's KRB5CCNAME past qrsh -V, whose job environment Grid Engine's qrsh_starter sets over the
#: session's delegated cache; the client wrappers give it back to ssh as KRB5CCNAME
HANDED_CCACHE = "SGEWRAP_KRB5CCNAME"

_HOST_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:%")
_DIGITS = frozenset("0123456789")


class Request:
    """What SGE asked for: the parsed words of one call."""

    __slots__ = ("slot", "host", "port", "nostdin", "command")

    def __init__(self, slot, host, port, nostdin=False, command=()):
        self.slot = slot
        self.host = host
        self.port = port
        self.nostdin = nostdin
        self.command = tuple(command)

    def __eq__(self, other):
        return isinstance(other, Request) and all(
            getattr(self, a) == getattr(other, a) for a in self.__slots__)

    def __repr__(self):
        return "Request(%s)" % ", ".join(
            "%s=%r" % (a, getattr(self, a)) for a in self.__slots__)


def check_port(word):
    """PORT as an int; a decimal 1-65535 in ASCII digits, nothing else."""
    if not word or len(word) > 5 or not _DIGITS.issuperset(word) \
            or not 1 <= int(word) <= 65535:
        raise WrapperError(BAD_PORT, "invalid PORT %r: expected a decimal number 1-65535" % word)
    return int(word)


def check_host(word):
    """HOST unchanged, if it is a plausible name or address and no option."""
    if not word:
        raise WrapperError(BAD_HOST, "invalid HOST: empty")
    if word[0] == "-":
        raise WrapperError(BAD_HOST, "invalid HOST %r: starts with '-' and would be read as an option" % word)
    if len(word) > 255:
        raise WrapperError(BAD_HOST, "invalid HOST: longer than 255 characters")
    bad = [c for c in word if c not in _HOST_CHARS]
    if bad:
        what = "whitespace or control characters" if any(c.isspace() or c < " " or c == "\x7f" for c in bad) \
            else "the character %r" % bad[0]
        raise WrapperError(BAD_HOST, "invalid HOST %r: contains %s" % (word, what))
    return word


def _arity(words):
    """(least, most) number of argv words a template matches; most None = any."""
    least, most = 0, 0
    for w in words:
        if w == "[-n]":
            most += 1
        elif w == "CMD...":
            least += 1
            most = None
        else:
            least += 1
            if most is not None:
                most += 1
    return least, most


def match(slot, argv):
    """Parse SGE's words for ``slot``: a Request, or None if the shape differs.

    A word in a placeholder's position that is not valid raises WrapperError
    (BAD_PORT, BAD_HOST): the shape matched, the value did not.
    """
    words = TABLE[slot][0].split()
    least, most = _arity(words)
    if len(argv) < least or (most is not None and len(argv) > most):
        return None
    found = {"slot": slot}
    i = 0
    for w in words:
        if w == "[-n]":
            if argv[i] == "-n" and len(argv) > least:
                found["nostdin"] = True
                i += 1
            continue
        if i >= len(argv):
            return None
        if w == "CMD...":
            found["command"] = argv[i:]
            i = len(argv)
        elif w == "PORT":
            found["port"] = check_port(argv[i])
            i += 1
        elif w == "HOST":
            found["host"] = check_host(argv[i])
            i += 1
        elif argv[i] == w:
            i += 1
        else:
            return None
    if i != len(argv):
        return None
    return Request(**found)


def parse(slots, argv):
    """The Request for the first of ``slots`` whose convention ``argv`` follows."""
    for slot in slots:
        request = match(slot, argv)
        if request is not None:
            return request
    expected = " or ".join("'%s' (%s)" % (TABLE[s][0], SLOT_PARAMETER[s][0]) for s in slots)
    raise WrapperError(CONVENTION, "expected %s after the options, got %d argument%s: %s" % (
        expected, len(argv), "" if len(argv) == 1 else "s", " ".join(repr(a) for a in argv) or "none"))


def render(slot, client, request):
    """The words ``client`` wants for ``request`` in ``slot`` (without options)."""
    out = []
    for w in TABLE[slot][1][client].split():
        if w == "[-n]":
            if request.nostdin:
                out.append("-n")
        elif w == "HOST":
            out.append(request.host)
        elif w == "PORT":
            out.append(str(request.port))
        elif w == "CMD...":
            out.extend(request.command)
        else:
            out.append(w)
    return out
