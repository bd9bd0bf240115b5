"""ssh: ``ssh [-X|-x] [-tt] [-o OPT]... [-n] -p PORT -- HOST [CMD...]`` against ``sshd -i``.

``--tunnel`` and ``--tunnel-via`` are the remote_startup(5) RESTRICTIONS case:
an execution host behind a firewall or NAT that lets only ssh (port 22)
through.  ssh then reaches the shepherd's random PORT through a second ssh
(its ``ProxyCommand``, ``ssh -W``): through HOST's own sshd, which connects
to 127.0.0.1:PORT on HOST itself (the shepherd listens on every address), or
through a gateway that connects to HOST:PORT.  The tunnel is a child of the
session's ssh: it ends with it (ssh hangs up on it; a killed ssh closes its
pipes), so nothing is left behind.
"""
from . import JOB_SSHD_NAME, Method, Switch
from ..conventions import check_host
from ..errors import USAGE, WrapperError

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


METHOD = Method(
    "ssh",
    aliases=("slogin", JOB_SSHD_NAME, "rshdwrapper", "rshd-wrapper"),
    clients=("/usr/bin/ssh", "/usr/local/bin/ssh"),
    daemon="/usr/sbin/sshd -i",
    summary="encrypted; the daemon side may add tight integration (sge-sshd + its PAM service)",
    switches=(
        Switch("--x11", ("-X",), "forward X11 (ssh -X); qlogin_wrapper's default, as the shipped one",
               group="x11"),
        Switch("--no-x11", ("-x",), "do not forward X11 (ssh -x)", group="x11"),
        Switch("--tty", ("-tt",), "force a pseudo-terminal (ssh -tt)"),
        Switch("--ssh-option", ("-o", "{}"), "pass -o OPT to ssh, e.g. GSSAPIDelegateCredentials=no "
               "(repeatable)", metavar="OPT", repeat=True),
        Switch("--tunnel", ("-o", "ProxyCommand={client} -W 127.0.0.1:%p %h"),
               "reach PORT through HOST's own sshd (port 22): only ssh need pass the firewall", group="tunnel"),
        Switch("--tunnel-via", ("-o", "ProxyCommand={client} -W %h:%p {}"),
               "reach HOST:PORT through the ssh gateway GW ([USER@]HOST)", metavar="GW", group="tunnel",
               check=check_gateway),
    ),
)
