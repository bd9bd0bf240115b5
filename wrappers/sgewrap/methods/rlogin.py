"""rlogin: ``rlogin -p PORT HOST``: SGE's own rlogin where installed, else rsh-redone."""
from . import Method

METHOD = Method(
    "rlogin",
    aliases=("netkit-rlogin", "rlogind"),
    clients=("utilbin:rlogin", "/usr/bin/rsh-redone-rlogin"),
    daemon="/usr/sbin/in.rlogind",
    summary="unencrypted, host-based trust (hosts.equiv/.rhosts); qrsh without a command",
)
