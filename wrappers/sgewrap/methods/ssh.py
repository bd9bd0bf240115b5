"""ssh: ``ssh [-X|-x] [-tt] [-o OPT]... [-n] -p PORT -- HOST [CMD...]`` against ``sshd -i``.

``--tunnel`` and ``--tunnel-via`` are the remote_startup(5) RESTRICTIONS case:
an execution host behind a firewall or NAT that lets only ssh (port 22)
through.  ssh then reaches the shepherd's random PORT through a second ssh
(its ``ProxyCommand``, ``ssh -W``): through HOST's own sshd, which connects
to 127.0.0.1:PORT on HOST itself (the shepherd listens on every address), or
through a gateway that connects to HOST:PORT.  The tunnel is a child of the
session's ssh: it ends with it (ssh hangs up on it; a killed ssh closes its
pipes), so nothing is left behind.

The tunnels of one user to one host share one authenticated connection: the
tunnel's ssh runs with ``ControlMaster=auto`` and ``ControlPersist`` (60 s, or
``--tunnel-persist``), its control socket in a directory only that user can
enter (``$XDG_RUNTIME_DIR/sgewrap`` or ``/tmp/sgewrap-mux-UID``; one that is
not safely theirs means no sharing).  The first tunnel starts the shared
connection, which stays in the background until it has served no session for
that long; a socket whose connection is gone is replaced (OpenSSH connects
directly when the socket refuses).  The session's own ssh stays direct, so
exit codes and signals are its own.

``--gssapi`` and ``--gssapi-delegate`` are Kerberos (remote_startup(5) names GSSAPI as a reason to use
ssh): ssh authenticates to the job sshd with the user's ticket.  ``--gssapi`` says
``GSSAPIDelegateCredentials=no`` itself (the man page's example; a user's ``~/.ssh/config`` cannot turn
delegation on for these sessions); ``--gssapi-delegate`` passes the ticket on, and the session has it
in a cache of its own that sshd removes when the session ends.  The options reach only the session's
ssh to the job sshd, not a tunnel's hop to port 22.
"""
import os

from . import JOB_SSHD_NAME, Method, Switch
from ..conventions import check_host
from ..errors import USAGE, WrapperError

#: seconds a tunnel's shared connection stays after its last session (--tunnel-persist, 0: none)
PERSIST = 60
MAX_PERSIST = 3600
#: what a path may hold to stand unquoted in a ProxyCommand (the user's shell runs it)
PROXY_PATH_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._+-")

_USER_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def check_gateway(value):
    """``[USER@]HOST`` of an ssh gateway, safe to put into a ProxyCommand line."""
    user, at, host = value.rpartition("@")
    if at and not (user and _USER_CHARS.issuperset(user) and user[0] != "-"):
        raise WrapperError(USAGE, "--tunnel-via: invalid user in %r" % value)
    try:
        check_host(host)
    except WrapperError as err:
        raise WrapperError(USAGE, "--tunnel-via: %s" % err)
    if "%" in host:
        raise WrapperError(USAGE, "--tunnel-via: %r: '%%' would be read as an ssh token" % value)
    return value


def check_persist(value):
    if not (value.isdigit() and int(value) <= MAX_PERSIST):
        raise WrapperError(USAGE, "--tunnel-persist: %r is not a number of seconds 0-%d" % (value, MAX_PERSIST))
    return str(int(value))


def control_dir(environ, uid=None):
    """The caller's private directory for tunnel control sockets, made if missing; None when there is
    none that is safely ours (then the tunnel is not shared).  ``$XDG_RUNTIME_DIR/sgewrap`` when
    that is the caller's, else ``/tmp/sgewrap-mux-UID``; the directory must be a real directory
    (no link) owned by the caller with no access for anyone else."""
    uid = os.getuid() if uid is None else uid
    runtime = environ.get("XDG_RUNTIME_DIR", "")
    candidates = []
    if runtime.startswith("/") and _owned_private(runtime, uid):
        candidates.append(os.path.join(runtime, "sgewrap"))
    candidates.append("/tmp/sgewrap-mux-%d" % uid)
    for path in candidates:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError:
            continue
        if _owned_private(path, uid) and PROXY_PATH_CHARS.issuperset(path):
            return path
    return None


def _owned_private(path, uid):
    import stat
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == uid and not st.st_mode & 0o077


def mux_options(persist, environ):
    """The tunnel ssh's options that make all tunnels of this user to one host share one
    authenticated connection (OpenSSH ControlMaster), or "" (a plain tunnel: --tunnel-persist=0,
    or no private directory for the socket).  In a ProxyCommand, ssh expands %-tokens: %%C
    reaches the tunnel's ssh as %C (a hash of the connection: short, no user-chosen text)."""
    if not int(persist):
        return ""
    directory = control_dir(environ)
    if directory is None:
        return ""
    return " -o ControlMaster=auto -o ControlPath=%s/%%%%C -o ControlPersist=%s" % (directory, persist)


def proxy_safe(path):
    """``path`` if it can stand unquoted in an ssh ProxyCommand (run by the user's shell)."""
    if not PROXY_PATH_CHARS.issuperset(path):
        raise WrapperError(USAGE, "the client path %r cannot go into a ProxyCommand (--tunnel): "
                                  "use one without spaces, quotes or %%" % path)
    return path


def finish(words, client, settings, environ):
    """A tunnel's ProxyCommand runs the client again ({client}), sharing one connection per user and
    host unless --tunnel-persist=0 ({mux})."""
    if not any("{client}" in w for w in words):
        return words
    mux = mux_options(settings.get("--tunnel-persist", PERSIST), environ)
    return [w.replace("{client}", proxy_safe(client)).replace("{mux}", mux) for w in words]


METHOD = Method(
    "ssh",
    client_aliases=("slogin",),
    clients=("/usr/bin/ssh", "/usr/local/bin/ssh"),
    daemon="/usr/sbin/sshd -i",
    daemon_short="sshd",
    daemon_candidates=("/usr/sbin/sshd",),
    daemon_aliases=(JOB_SSHD_NAME, "rshdwrapper", "rshd-wrapper"),
    finish=finish,
    summary="encrypted; the daemon side may add tight integration (sge-sshd + its PAM service)",
    switches=(
        Switch("--x11", ("-X",), "forward X11 (ssh -X); qlogin_wrapper's default, as the shipped one",
               group="x11"),
        Switch("--no-x11", ("-x",), "do not forward X11 (ssh -x)", group="x11"),
        Switch("--tty", ("-tt",), "force a pseudo-terminal (ssh -tt)"),
        Switch("--ssh-option", ("-o", "{}"), "pass -o OPT to ssh, e.g. GSSAPIDelegateCredentials=no "
               "(repeatable)", metavar="OPT", repeat=True),
        Switch("--gssapi", ("-o", "GSSAPIAuthentication=yes", "-o", "GSSAPIDelegateCredentials=no"),
               "Kerberos: authenticate with the user's ticket (GSSAPI), without passing it on", group="gssapi"),
        Switch("--gssapi-delegate", ("-o", "GSSAPIAuthentication=yes", "-o", "GSSAPIDelegateCredentials=yes"),
               "Kerberos: authenticate with the user's ticket and pass it on (the session has the user's "
               "credentials, in a cache that goes with the session)", group="gssapi"),
        Switch("--tunnel", ("-o", "ProxyCommand={client}{mux} -W 127.0.0.1:%p %h"),
               "reach PORT through HOST's own sshd (port 22): only ssh need pass the firewall", group="tunnel"),
        Switch("--tunnel-via", ("-o", "ProxyCommand={client}{mux} -W %h:%p {}"),
               "reach HOST:PORT through the ssh gateway GW ([USER@]HOST)", metavar="GW", group="tunnel",
               check=check_gateway),
        Switch("--tunnel-persist", (), "tunnels of one user to one host share one ssh connection, kept SECONDS "
               "after its last session (default %d; 0: a connection per session)" % PERSIST, metavar="SECONDS",
               check=check_persist),
    ),
)
