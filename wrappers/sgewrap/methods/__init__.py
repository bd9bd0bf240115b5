"""The startup methods: one module per method, one interface.

Each module defines ``METHOD``, an instance of :class:`Method` saying which
client and daemon it uses and which wrapper switches it understands.  The
list of methods and of installed entry points is data that the wrappers, the
admin command and the tests all read.
"""
import os


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

    def __init__(self, name, clients, daemon, switches=(), summary="", aliases=()):
        self.name = name
        self.clients = tuple(clients)     #: candidates, first executable wins
        self.daemon = daemon              #: the daemon value it pairs with
        self.switches = tuple(switches)   #: method-specific wrapper options
        self.summary = summary
        #: other names of this method's programs in sge_conf values (other distributions' clients
        #: and daemons, other wrappers); its clients', daemon's and entry points' names count already
        self.aliases = tuple(aliases)

    def switch(self, flag):
        """The Switch ``flag`` of this method (or a common one), or None."""
        return next((s for s in self.switches + COMMON_SWITCHES if s.flag == flag), None)

    def entry_points(self):
        """[(installed name, slots it serves)] of this method, as ENTRY_POINTS says."""
        return [(name, slots) for name, (method, slots, _) in sorted(ENTRY_POINTS.items()) if method == self.name]

    def slots(self):
        """The slots (qlogin, rlogin, rsh) this method serves through its entry points."""
        return tuple(slot for slot in ("qlogin", "rlogin", "rsh")
                     if any(slot in slots for _, slots in self.entry_points()))

    def names(self):
        """Every program name that says a sge_conf value uses this method."""
        found = [c.split(":")[-1].rsplit("/", 1)[-1] for c in self.clients]
        found.append(self.daemon.split()[0].rsplit("/", 1)[-1])
        found += [name for name, _ in self.entry_points()]
        return tuple(dict.fromkeys(found + list(self.aliases)))


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

#: entry points that run as root (the shepherd's daemon, the queue's prolog/epilog, a PAM hook):
#: their interpreter must be isolated (python -I) whatever installed them.  name -> module with main()
ROOT_ENTRY_POINTS = {"rshdwrapper": "sgewrap.rootside.rshd", "node_access": "sgewrap.rootside.nodeaccess"}

#: programs users run inside their jobs (not a sge_conf slot): name -> module with main()
USER_PROGRAMS = {"qrsh_ssh": "sgewrap.qrshssh"}

#: daemon short names (rshdwrapper DAEMON) -> candidates, first executable wins
#: (utilbin:NAME = $SGE_ROOT/utilbin/$ARC/NAME)
DAEMONS = {
    "sshd": ("/usr/sbin/sshd",),
    "rshd": ("utilbin:rshd", "/usr/sbin/in.rshd"),
    "rlogind": ("utilbin:rlogind", "/usr/sbin/in.rlogind"),
    "telnetd": ("utilbin:telnetd", "/usr/sbin/telnetd"),
}

#: The job sshd: the real sshd started under this name, so that OpenSSH (up to 9.7, which names
#: its PAM service after its program) uses the PAM service of that name, not the site's "sshd".
#: Installed as a symbolic link beside the wrappers; sge_conf gets "WRAPPERS/sge-sshd -i".
JOB_SSHD_NAME = "sge-sshd"
JOB_PAM_FILE = "/etc/pam.d/" + JOB_SSHD_NAME
#: OpenSSH 9.8 and later: ``sshd -i`` execs this program, and the PAM service is no longer the program's
#: name but the ``PamServiceName`` option's (default ``sshd``).  Where it exists, the job sshd needs
#: ``-o PamServiceName=sge-sshd``; OpenSSH 9.2 refuses that option ("Bad configuration option", exit 1).
SSHD_SESSION = "/usr/lib/openssh/sshd-session"
PAM_SERVICE_OPTION = "PamServiceName"
#: A directory holding ``ssh`` -> qrsh_ssh: first on PATH inside a parallel job, every tool that
#: runs ``ssh`` by name (pdsh -R ssh, Dask, Ray, older MPIs) starts its remote commands as tasks.
JOB_SSH_DIR = "job-ssh"
#: symbolic links installed beside the entry points: name (relative to the wrappers) -> target
LINKS = {JOB_SSHD_NAME: "/usr/sbin/sshd", JOB_SSH_DIR + "/ssh": "../qrsh_ssh"}


def sshd_uses_pam_service_name(root="/"):
    """True where this host's sshd (OpenSSH 9.8 and later: ``SSHD_SESSION`` exists under ``root``) takes
    its PAM service from ``PamServiceName``, not from the name it was started under."""
    return os.path.exists(os.path.join(root, SSHD_SESSION.lstrip("/")))


def job_pam_service_options():
    """The sshd words that select the job PAM service where :func:`sshd_uses_pam_service_name`."""
    return ["-o", "%s=%s" % (PAM_SERVICE_OPTION, JOB_SSHD_NAME)]


def get(name):
    """The Method called ``name`` (imports only that method's module)."""
    if name not in NAMES:
        raise KeyError(name)
    module = __import__("sgewrap.methods." + name, fromlist=["METHOD"])
    return module.METHOD
