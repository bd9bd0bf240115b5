"""telnet: ``telnet HOST PORT`` against inetutils ``telnetd`` (qlogin only)."""
from . import Method

METHOD = Method(
    "telnet",
    client_aliases=("telnet-ssl",),
    clients=("/usr/bin/telnet", "/usr/bin/telnet.netkit", "/usr/bin/inetutils-telnet"),
    daemon="/usr/sbin/telnetd",
    daemon_short="telnetd",
    daemon_candidates=("utilbin:telnetd", "/usr/sbin/telnetd"),
    daemon_aliases=("in.telnetd", "telnetd.netkit", "inetutils-telnetd"),
    cleartext=True,
    summary="unencrypted, asks for a password; qlogin only",
)
