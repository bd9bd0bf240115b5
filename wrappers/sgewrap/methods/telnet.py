"""telnet: ``telnet HOST PORT`` against inetutils ``telnetd`` (qlogin only)."""
from . import Method

METHOD = Method(
    "telnet",
    aliases=("telnet-ssl", "in.telnetd", "telnetd.netkit", "inetutils-telnetd"),
    clients=("/usr/bin/telnet", "/usr/bin/telnet.netkit", "/usr/bin/inetutils-telnet"),
    daemon="/usr/sbin/telnetd",
    summary="unencrypted, asks for a password; qlogin only",
)
