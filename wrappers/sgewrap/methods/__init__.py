"""The startup methods: one module per method, one interface.

Each module defines ``METHOD``, an instance of :class:`Method` saying which
client and daemon it uses and which wrapper switches it understands.  The
list of methods and of installed entry points is data that the wrappers, the
admin command and the tests all read.
"""


class Switch:
    """A wrapper option: ``--flag`` or ``--flag=VALUE``, and the client words it adds.

    ``words`` may contain ``{}`` for the value and ``{client}`` for the client
    program's path (known once the client is found).  Switches of one
    ``group`` override each other (the last given wins) unless ``repeat`` is
    set.  ``check``, if given, validates the value: it returns it or raises
    WrapperError.
    """

    __slots__ = ("flag", "metavar", "group", "repeat", "words", "help", "check")

    def __init__(self, flag, words, help, metavar=None, group=None, repeat=False, check=None):
        self.flag = flag
        self.metavar = metavar
        self.group = group or flag
        self.repeat = repeat
        self.words = tuple(words)
        self.help = help
        self.check = check

    def render(self, value=None):
        if value is None:
            return list(self.words)
        return [w.replace("{}", value) for w in self.words]

class Method:
    """One way to start a remote session: its client, daemon and switches."""

    def __init__(self, name, clients, daemon, switches=(), summary=""):
        self.name = name
        self.clients = tuple(clients)     #: candidates, first executable wins
        self.daemon = daemon              #: the daemon value it pairs with
        self.switches = tuple(switches)   #: method-specific wrapper options
        self.summary = summary


#: switches every client wrapper understands, besides the method's own
COMMON_SWITCHES = (
    Switch("--client", (), "client program to run (absolute path); default: the first found of %s",
           metavar="PATH"),
    Switch("--client-arg", ("{}",), "pass ARG to the client before the host words (repeatable)",
           metavar="ARG", repeat=True),
)

# installed name     method     slots it accepts     default switches
ENTRY_POINTS = {
    "qlogin_wrapper": ("ssh", ("qlogin",), ("--x11",)),
    "ssh_wrapper": ("ssh", ("rsh", "rlogin"), ()),
    "telnet_adapter": ("telnet", ("qlogin",), ()),
    "rlogin_adapter": ("rlogin", ("rlogin",), ()),
    "rsh_adapter": ("rsh", ("rsh",), ()),
}

NAMES = ("ssh", "telnet", "rsh", "rlogin")


def get(name):
    """The Method called ``name`` (imports only that method's module)."""
    if name not in NAMES:
        raise KeyError(name)
    module = __import__("sgewrap.methods." + name, fromlist=["METHOD"])
    return module.METHOD
