"""``sgewrap facts``: this host's job sshd facts, and its record in the cell (:mod:`sgewrap.admin.hostfacts`)."""
import os

from plumbum import cli

from . import hostfacts, sshtrust
from .common import Command


class Facts(Command, cli.Application):
    """Show what this host's job sshd will be, and record it for sgewrap check on the other hosts

    Prints this host's facts: its OpenSSH, whether it takes the PAM service from PamServiceName
    (9.8 and later), the job sshd in the wrappers directory (the launcher, a link to sshd, or
    missing), the job PAM service and the PAM module; then whether the record in the cell's common
    directory ($SGE_ROOT/$SGE_CELL/common/sgewrap-hosts/HOST) still says the same.  --record (as
    root) writes it; sgewrap config ssh --tight --apply does too.  Exit 0: the record is up to date
    (or was just written; then the cluster's host keys in /etc/ssh/ssh_known_hosts and the host-based
    block, where --apply wrote them, are refreshed from every record); 1: it is missing or stale; 2: bad
    usage or no SGE_ROOT.
    """

    record = cli.Flag("--record", help="write this host's facts into the cell's common directory (as root)")
    wrappers = cli.SwitchAttr("--wrappers", str, argname="DIR",
                              help="the wrappers directory whose sge-sshd to look at (default: this sgewrap's)")

    def main(self):
        from .common import default_wrappers
        wrappers = os.path.abspath(self.wrappers) if self.wrappers else default_wrappers()
        now = hostfacts.collect(wrappers)
        for key in hostfacts.KEYS:
            value = now[key]
            if isinstance(value, dict):     # hostbased, port22: what each says
                value = "; ".join("%s: %s" % (k, ", ".join(v) or "-" if isinstance(v, list) else v)
                                  for k, v in value.items())
            print("%-16s %s" % (key, "; ".join(value) if isinstance(value, list) else value))
        if self.record:
            if not hostfacts.record_here(wrappers):
                return 1
            sshtrust.refresh_trust(hostfacts.load())
            hostfacts.record_here(wrappers, report=lambda line: None)    # with the refreshed host-based side
            return 0
        old = hostfacts.load().get(now["host"])
        if old is None:
            print("record: none in %s (sgewrap facts --record, or sgewrap config ssh --tight --apply)"
                  % hostfacts.directory())
            return 1
        stale = hostfacts.changed(old, now)
        if stale:
            print("record: stale (recorded %s): %s; sgewrap facts --record" % (hostfacts.when(old), "; ".join(
                "%s was %r, is %r" % item for item in stale)))
            return 1
        print("record: up to date (recorded %s)" % hostfacts.when(old))
        return 0
