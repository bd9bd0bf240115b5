"""rsh: ``rsh [-n] -p PORT HOST CMD...``: SGE's own rsh where installed, else rsh-redone."""
from . import Method

METHOD = Method(
    "rsh",
    client_aliases=("remsh", "netkit-rsh"),
    clients=("utilbin:rsh", "/usr/bin/rsh-redone-rsh"),
    daemon="/usr/sbin/in.rshd",
    daemon_short="rshd",
    daemon_candidates=("utilbin:rshd", "/usr/sbin/in.rshd"),
    cleartext=True,
    summary="unencrypted, host-based trust (hosts.equiv/.rhosts); qrsh CMD and qrsh -inherit",
)
