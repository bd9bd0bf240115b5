"""rlogin: ``rlogin -p PORT HOST``: SGE's own rlogin where installed, else rsh-redone."""
from . import Method

METHOD = Method(
    "rlogin",
    client_aliases=("netkit-rlogin",),
    clients=("utilbin:rlogin", "/usr/bin/rsh-redone-rlogin"),
    daemon="/usr/sbin/in.rlogind",
    daemon_short="rlogind",
    daemon_candidates=("utilbin:rlogind", "/usr/sbin/in.rlogind"),
    cleartext=True,
    summary="unencrypted, host-based trust (hosts.equiv/.rhosts); qrsh without a command",
)
