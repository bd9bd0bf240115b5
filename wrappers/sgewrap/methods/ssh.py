"""ssh: ``ssh [-X|-x] [-tt] [-o OPT]... [-n] -p PORT -- HOST [CMD...]`` against ``sshd -i``."""
from . import Method, Switch

METHOD = Method(
    "ssh",
    clients=("/usr/bin/ssh", "/usr/local/bin/ssh"),
    daemon="/usr/sbin/sshd -i",
    summary="encrypted; the daemon side may add tight integration (rshdwrapper + PAM)",
    switches=(
        Switch("--x11", ("-X",), "forward X11 (ssh -X); qlogin_wrapper's default, as the shipped one",
               group="x11"),
        Switch("--no-x11", ("-x",), "do not forward X11 (ssh -x)", group="x11"),
        Switch("--tty", ("-tt",), "force a pseudo-terminal (ssh -tt)"),
        Switch("--ssh-option", ("-o", "{}"), "pass -o OPT to ssh, e.g. GSSAPIDelegateCredentials=no "
               "(repeatable)", metavar="OPT", repeat=True),
    ),
)
