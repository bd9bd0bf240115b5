"""rsh: ``rsh [-n] -p PORT HOST CMD...``: SGE's own rsh where installed, else rsh-redone."""
from . import Method

METHOD = Method(
    "rsh",
    aliases=("remsh", "netkit-rsh", "rshd"),
    clients=("utilbin:rsh", "/usr/bin/rsh-redone-rsh"),
    daemon="/usr/sbin/in.rshd",
    summary="unencrypted, host-based trust (hosts.equiv/.rhosts); qrsh CMD and qrsh -inherit",
)
