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

    def __init__(self, name, clients, daemon, daemon_short, daemon_candidates, switches=(), summary="",
                 client_aliases=(), daemon_aliases=(), cleartext=False, finish=None):
        self.name = name
        self.clients = tuple(clients)     #: candidates, first executable wins
        self.daemon = daemon              #: the daemon value it pairs with
        #: ``rshdwrapper DAEMON``: the daemon's short name and its candidates, first executable wins
        #: (``utilbin:NAME`` = ``$SGE_ROOT/utilbin/$ARC/NAME``)
        self.daemon_short = daemon_short
        self.daemon_candidates = tuple(daemon_candidates)
        self.switches = tuple(switches)   #: method-specific wrapper options
        self.summary = summary
        #: other names of this method's clients and daemons in sge_conf values (other distributions',
        #: other wrappers); the candidates' and entry points' names count already
        self.client_aliases = tuple(client_aliases)
        self.daemon_aliases = tuple(daemon_aliases)
        #: sessions (and passwords) cross the network unencrypted: check warns
        self.cleartext = cleartext
        #: ``finish(words, client, settings, environ)``: the client words made final once the client
        #: program is known (ssh's tunnel runs the client again in its ProxyCommand); ``settings``:
        #: {flag: value} of the switches that add no words themselves
        self.finish = finish

    def switch(self, flag):
        """The Switch ``flag`` of this method (or a common one), or None."""
        return next((s for s in self.switches + COMMON_SWITCHES if s.flag == flag), None)

    def entry_points(self):
        """[(installed name, slots it serves)] of this method, as ENTRY_POINTS says."""
        return [(name, slots) for name, (method, slots, _) in sorted(ENTRY_POINTS.items()) if method == self.name]

    def slots(self):
        """The slots (qlogin, rlogin, rsh) this method serves through its entry points."""
        from ..conventions import SLOT
        return tuple(slot for slot in SLOT
                     if any(slot in slots for _, slots in self.entry_points()))

    def daemon_names(self):
        """Every program name that says a ``*_daemon`` value uses this method."""
        found = [self.daemon.split()[0].rsplit("/", 1)[-1], self.daemon_short]
        found += [c.split(":")[-1].rsplit("/", 1)[-1] for c in self.daemon_candidates]
        return tuple(dict.fromkeys(found + list(self.daemon_aliases)))

    def names(self):
        """Every program name that says a sge_conf value uses this method."""
        found = [c.split(":")[-1].rsplit("/", 1)[-1] for c in self.clients]
        found += [name for name, _ in self.entry_points()]
        return tuple(dict.fromkeys(found + list(self.client_aliases) + list(self.daemon_names())))


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


class Program:
    """An installed program: the module whose ``main`` it runs, who runs it (``user``, ``root``:
    the shepherd's daemon, a queue's prolog/epilog or a PAM hook, whose interpreter must be isolated
    whatever installed it; ``admin``), its man page section and what it is."""

    __slots__ = ("module", "runs_as", "section", "summary")

    def __init__(self, module, runs_as, section, summary):
        self.module, self.runs_as, self.section, self.summary = module, runs_as, section, summary


#: every installed program: setup.cfg, the installer, the Debian package (through the installer),
#: the man pages and the entry shims in wrappers/ follow this (tests/unit/test_entry_points.py)
PROGRAMS = dict(
    {name: Program("sgewrap.client", "user", 1, "paste into %s" % ", ".join(s + "_command" for s in slots))
     for name, (_, slots, _) in ENTRY_POINTS.items()},
    qrsh_ssh=Program("sgewrap.qrshssh", "user", 1, "inside a parallel job, an ssh-compatible front for qrsh "
                                                   "-inherit"),
    qssh=Program("sgewrap.jobssh", "user", 1, "ssh into a running job by its number; the ProxyCommand of "
                                              "ssh JOB.job"),
    rshdwrapper=Program("sgewrap.rootside.rshd", "root", 8, "paste into *_daemon: a daemon started with nothing "
                                                            "of the job owner's in its way"),
    node_access=Program("sgewrap.rootside.nodeaccess", "root", 8, "the PAM hooks of job sshds and adopt, the "
                                                                  "queue's prolog and epilog"),
    sgewrap=Program("sgewrap.admin.cli", "admin", 8, "install, configure, check and test the wrappers"),
)

#: entry points that run as root: name -> module with main()
ROOT_ENTRY_POINTS = {name: p.module for name, p in PROGRAMS.items() if p.runs_as == "root"}

#: programs users run inside their jobs (not a sge_conf slot): name -> module with main()
USER_PROGRAMS = {name: p.module for name, p in PROGRAMS.items() if p.runs_as == "user" and name not in ENTRY_POINTS}


def daemons():
    """{daemon short name (``rshdwrapper DAEMON``): its candidates}, from every method."""
    return {m.daemon_short: m.daemon_candidates for m in map(get, NAMES)}


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
#: the sshd the job sshd runs
SSHD = "/usr/sbin/sshd"
#: the job sshds' own per-host configuration: job-only options, then an Include of the site's file; the
#: launcher (WRAPPERS/sge-sshd, wrappers/native/sge_sshd.c) gives it to sshd with -f; port 22 never reads it
JOB_SSHD_CONFIG = "/etc/ssh/sge-sshd_config"
SITE_SSHD_CONFIG = "/etc/ssh/sshd_config"
#: A directory holding ``ssh`` -> qrsh_ssh: first on PATH inside a parallel job, every tool that
#: runs ``ssh`` by name (pdsh -R ssh, Dask, Ray, older MPIs) starts its remote commands as tasks.
JOB_SSH_DIR = "job-ssh"
#: The SFTP server that qrsh_ssh runs on the execution host for ``ssh -s HOST sftp`` (what scp of OpenSSH 9
#: and later and sftp ask for): sshd's ``Subsystem sftp`` on Debian.  qrsh_ssh runs as the user and
#: cannot ask ``sshd -T``; where the hosts keep it elsewhere, the job's environment variable
#: SFTP_SERVER_VARIABLE names it (for every job: ``-v SGEWRAP_SFTP_SERVER=PATH`` in the cell's
#: ``common/sge_request``).
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
SFTP_SERVER_VARIABLE = "SGEWRAP_SFTP_SERVER"
#: symbolic links installed beside the entry points: name (relative to the wrappers) -> target
#: (where the launcher cannot be built, sge-sshd is a link to sshd: right on OpenSSH 9.2 only)
LINKS = {JOB_SSHD_NAME: SSHD, JOB_SSH_DIR + "/ssh": "../qrsh_ssh"}


def sshd_uses_pam_service_name(root="/"):
    """True where this host's sshd (OpenSSH 9.8 and later: ``SSHD_SESSION`` exists under ``root``) takes
    its PAM service from ``PamServiceName``, not from the name it was started under."""
    return os.path.exists(os.path.join(root, SSHD_SESSION.lstrip("/")))


def job_sshd_is_launcher(wrappers_dir):
    """True if ``wrappers_dir``'s sge-sshd is the launcher (a program, not a link to sshd): it selects the
    job PAM service on every OpenSSH release by itself, when each session starts."""
    path = os.path.join(wrappers_dir, JOB_SSHD_NAME)
    return os.path.isfile(path) and not os.path.islink(path)


def job_pam_service_options():
    """The sshd words that select the job PAM service where :func:`sshd_uses_pam_service_name`."""
    return ["-o", "%s=%s" % (PAM_SERVICE_OPTION, JOB_SSHD_NAME)]


def get(name):
    """The Method called ``name`` (imports only that method's module)."""
    if name not in NAMES:
        raise KeyError(name)
    module = __import__("sgewrap.methods." + name, fromlist=["METHOD"])
    return module.METHOD
