"""``sgewrap config``: print, apply and restore the six remote-startup entries of sge_conf.

``--apply`` saves the configuration it changes (the exact ``qconf -sconf``
output) to a file it names, then changes only the six entries through
``qconf -Mconf`` (``-Aconf`` for a host without a local configuration yet),
and writes this host's gid_range cache for the session reaper
(:mod:`sgewrap.rootside.gidrange`);
``--restore FILE`` puts that file back and checks that ``qconf -sconf`` shows
it again byte for byte.
"""
import os
import tempfile
import time

from plumbum import cli

from .. import methods
from . import pam, sgeconf
from . import fronts, hostfacts, sshtrust
from .common import UNREADABLE, AdminError, Command, cache_gid_range, config_of, default_wrappers, qconf_list, \
    qconf_show, require_isolated_hook, run, same_host, this_host

DEFAULT_BACKUP_DIR = "/var/backups/sgewrap"


def render_entries(values):
    return "".join(sgeconf.format_line(k, values[k]) for k in sgeconf.SLOTS)


def save_backup(directory, name, text):
    """Write ``text`` to a new file ``NAME.TIMESTAMP`` in ``directory`` (mode 0600); its path."""
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except OSError as err:
        raise AdminError("cannot create %s: %s" % (directory, err.strerror or err))
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for n in range(1000):
        path = os.path.join(directory, "%s.%s%s" % (name, stamp, "" if not n else ".%d" % n))
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            continue
        except OSError as err:
            raise AdminError("cannot write %s: %s" % (path, err.strerror or err))
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return path
    raise AdminError("cannot find a free file name in %s" % directory)


def qconf_put(name, text, new):
    """``qconf -Mconf``/``-Aconf`` of ``text`` as configuration ``name`` (file name = configuration name)."""
    with tempfile.TemporaryDirectory(prefix="sgewrap-conf.") as tmp:
        path = sgeconf.config_file(tmp, name, text)
        rc, out, err = run(sgeconf.apply_argv(path, new=new))
        if "error" in (out + err).lower():   # qconf reports some failures with exit status 0
            raise AdminError("'%s' failed: %s" % (" ".join(sgeconf.apply_argv(path, new=new)),
                                                  (err or out).strip().splitlines()[-1]))


def local_exists(host):
    return host in qconf_list(code=1)


class Config(Command, cli.Application):
    """Print (or --apply, or --restore) the six sge_conf entries of a method

    The qlogin, rlogin and rsh _command and _daemon entries that make METHOD
    work with these wrappers.  METHOD is one of builtin, ssh, telnet, rsh, rlogin.  The legacy methods
    (telnet, rsh, rlogin) only cover their own slot; the other slots stay builtin.
    """

    tight = cli.Flag("--tight", help="ssh only: tight integration (the job sshd sge-sshd and its own PAM service "
                                     "/etc/pam.d/sge-sshd; where this host's sshd is OpenSSH 9.8 or later, --apply "
                                     "also puts its *_daemon entries with -o PamServiceName=sge-sshd into this "
                                     "host's local configuration)")
    x11 = cli.Flag("--x11", help="qlogin_wrapper --x11 (forward X11)", excludes=["--no-x11"])
    no_x11 = cli.Flag("--no-x11", help="qlogin_wrapper --no-x11", excludes=["--x11"])
    tunnel = cli.Flag("--tunnel", excludes=["--tunnel-via"],
                      help="ssh only: reach the shepherd's random port through the execution host's sshd "
                           "(port 22), for firewalled or NATed execution hosts")
    tunnel_via = cli.SwitchAttr("--tunnel-via", str, argname="GW", excludes=["--tunnel"],
                                help="ssh only: reach it through the ssh gateway GW ([USER@]HOST) instead")
    tunnel_persist = cli.SwitchAttr("--tunnel-persist", cli.Range(0, 3600), argname="SECONDS",
                                    help="with --tunnel(-via): how long one user's shared tunnel connection to "
                                         "a host stays after its last session (the wrapper's default: 60; 0: "
                                         "a connection per session)")
    wrappers = cli.SwitchAttr("--wrappers", str, argname="DIR",
                              help="where the wrappers are installed (default: next to this sgewrap, "
                                   "else $SGE_ROOT/util/resources/wrappers)")
    apply = cli.Flag("--apply", help="change the global configuration (or --host's) through qconf, "
                                     "saving the previous one first", excludes=["--restore"])
    host = cli.SwitchAttr("--host", str, argname="HOST", requires=["--apply"],
                          help="with --apply: change HOST's local configuration instead of the global one")
    backup_dir = cli.SwitchAttr("--backup-dir", str, argname="DIR", default=DEFAULT_BACKUP_DIR,
                                help="where --apply saves the previous configuration")
    restore = cli.SwitchAttr("--restore", str, argname="FILE",
                             help="put back a configuration --apply saved (its first line names it); the local "
                                  "entries --tight --apply added for OpenSSH 9.8 or later follow the global ones")
    job_pam_file = cli.SwitchAttr("--job-pam-file", str, argname="PATH", default=pam.JOB_PAM_FILE,
                                  help="the job sshds' PAM service that --tight --apply writes (and --restore "
                                       "removes); the site's /etc/pam.d/sshd is never touched")

    no_front = cli.Flag("--no-front", help="leave qlogin and qrsh as they are (see sgewrap front)")
    hostbased = cli.Flag("--hostbased", requires=["--tight"],
                         help="ssh --tight: host-based authentication between the cluster's hosts, for the job "
                              "sshds only (their own configuration, /etc/ssh/shosts.equiv's block of the "
                              "submit and execution hosts, the client drop-in "
                              "/etc/ssh/ssh_config.d/sgewrap-hostbased.conf); without it --apply takes them out")
    hosts = cli.SwitchAttr("--hosts", str, argname="H1,H2|+H1,H2", requires=["--hostbased"],
                           help="with --hostbased: only these hosts (instead of Grid Engine's submit and execution "
                                "hosts, qconf -ss and -sel), or with a leading + these besides them; kept for "
                                "sgewrap facts --record's refreshes")
    hostbased_port22 = cli.Flag("--hostbased-port22", requires=["--hostbased"],
                                help="and the site's sshd on port 22 too (a drop-in in /etc/ssh/sshd_config.d, "
                                     "then a reload): what the --tunnel hop of a user without a key needs; STIG "
                                     "and CIS baselines forbid it, so only when asked")
    gssapi = cli.Flag("--gssapi", requires=["--tight"],
                      help="ssh --tight: Kerberos (GSSAPI) to the job sshds: GSSAPIAuthentication yes in their own "
                           "configuration only, and the ssh wrappers' --gssapi (no delegation); the realm and the "
                           "hosts' keytabs are the site's; without it --apply takes the options out")
    gssapi_delegate = cli.Flag("--gssapi-delegate", requires=["--gssapi"],
                               help="with --gssapi: the wrappers pass the user's ticket on (--gssapi-delegate): "
                                    "sessions have the user's credentials, in a cache that goes with the session")

    def main(self, method=None):
        if self.restore:
            if method:
                raise AdminError("--restore FILE takes no METHOD", UNREADABLE)
            before = sgeconf.parse(qconf_show("global", code=1), "global")
            restore(self.restore)
            glob = sgeconf.parse(qconf_show("global", code=1), "global")
            follow_guards(before, glob)
            if not self.no_front:
                fronts.apply_here(sgeconf.wraps_logins(glob.as_dict()), delegate=fronts.delegates(glob.as_dict()))
            code = restore_job_stack(self.job_pam_file, glob)
            if self.job_pam_file == pam.JOB_PAM_FILE and not any(
                    sgeconf.classify(glob.get(k), k) == "ssh" for k in sgeconf.SLOTS):
                withdraw_trust(self.backup_dir)
            if self.job_pam_file == pam.JOB_PAM_FILE and hostfacts.load().get(this_host()):
                hostfacts.record_here(None)       # the record follows what is here now
            return code
        if method is None:
            raise AdminError("give a METHOD (%s) or --restore FILE" % ", ".join(sgeconf.METHODS), UNREADABLE)
        if method not in sgeconf.METHODS:
            raise AdminError("unknown METHOD %r: expected one of %s" % (method, ", ".join(sgeconf.METHODS)),
                             UNREADABLE)
        x11 = True if self.x11 else False if self.no_x11 else None
        if x11 is not None and method != "ssh":
            raise AdminError("--x11/--no-x11 only apply to ssh (qlogin_wrapper)", UNREADABLE)
        if self.tunnel_persist is not None and not (self.tunnel or self.tunnel_via):
            raise AdminError("--tunnel-persist goes with --tunnel or --tunnel-via", UNREADABLE)
        wrappers = self.wrappers or (default_wrappers() if method != "builtin" else "/")
        try:
            values = sgeconf.entries(method, os.path.abspath(wrappers) if self.wrappers else wrappers,
                                     tight=self.tight, x11=x11, tunnel=self.tunnel or self.tunnel_via,
                                     tunnel_persist=self.tunnel_persist,
                                     gssapi="delegate" if self.gssapi_delegate else "auth" if self.gssapi else None)
        except ValueError as err:
            raise AdminError(str(err), UNREADABLE)
        if not self.apply:
            print(render_entries(values), end="")
            if self.tight:
                print("\n# and on every execution host, %s (the job sshds' own PAM service; "
                      "/etc/pam.d/sshd stays as it is):\n%s" % (self.job_pam_file, pam.job_stack(
                          os.path.dirname(sgeconf.program(values["rsh_daemon"])))), end="")
                if methods.sshd_uses_pam_service_name() and not methods.job_sshd_is_launcher(
                        os.path.dirname(sgeconf.program(values["rsh_daemon"]))):
                    print("\n# %s; --apply puts there:\n%s" % (GUARD_NOTE, "".join(
                        sgeconf.format_line(k, v) for k, v in sgeconf.guard_entries(values).items())), end="")
            if sgeconf.wraps_logins(values):
                print("\n# note: " + sgeconf.PTY_NOTE)
            return 0
        here = not self.host or same_host(self.host, this_host())
        if self.hosts:
            try:
                sshtrust.parse_hosts(self.hosts)
            except ValueError as err:
                raise AdminError(str(err), UNREADABLE)
        if self.hostbased_port22 and not (self.tunnel or self.tunnel_via):
            raise AdminError("--hostbased-port22 is for the --tunnel hop: without --tunnel nothing needs it",
                             UNREADABLE)
        if (self.hostbased or self.gssapi) and not here:
            raise AdminError("%s writes this host's files: run it on %s itself" % (
                "--hostbased" if self.hostbased else "--gssapi", self.host), UNREADABLE)
        if self.tight and here:
            ensure_job_stack(os.path.dirname(sgeconf.program(values["rsh_daemon"])), self.job_pam_file,
                             hostbased=self.hostbased, gssapi=self.gssapi)
        launcher = self.tight and methods.job_sshd_is_launcher(os.path.dirname(sgeconf.program(values["rsh_daemon"])))
        if launcher:
            print("note: %s is the launcher: it selects the job PAM service on each host when each session starts "
                  "(OpenSSH 9.2 and 9.8+ alike, also after an in-place upgrade); no host needs a local entry"
                  % sgeconf.program(values["rsh_daemon"]))
        elif self.tight and here and methods.sshd_uses_pam_service_name():
            print(GUARD_NOTE)
            if self.host:     # this host's own local configuration: the guarded values go in at once
                values = dict(values, **sgeconf.guard_entries(values))
            else:             # first: this host never runs the new global value unguarded
                apply(sgeconf.guard_entries(values), config_of(this_host(), qconf_list(code=1)) or this_host(),
                      self.backup_dir)
        elif self.tight and not here and not launcher:
            print("note: %s's sshd was not looked at: if it is OpenSSH 9.8 or later, run sgewrap config ssh --tight "
                  "--apply on %s itself" % (self.host, self.host))
        apply(values, self.host, self.backup_dir)
        print(cache_gid_range())
        if method == "ssh" and here and self.job_pam_file == pam.JOB_PAM_FILE:
            wrappers_here = os.path.dirname(sgeconf.program(values["rsh_daemon"]))
            hostfacts.record_here(wrappers_here)
            publish_trust(self.hostbased, self.backup_dir, self.hostbased_port22, self.hosts)
            hostfacts.record_here(wrappers_here, report=lambda line: None)    # with its host-based side now
        if here and not self.no_front:
            fronts.apply_here(sgeconf.wraps_logins(values), delegate=fronts.delegates(values))
        return 0


def apply(values, host, backup_dir):
    """Set ``values`` (the six entries, or some of them) in the global configuration or ``host``'s."""
    name = host or "global"
    keys = [k for k in sgeconf.SLOTS if k in values]
    if host:
        exists = local_exists(host)
        old_text = qconf_show(host, code=1) if exists else None
    else:
        exists, old_text = True, qconf_show("global", code=1)
    old = sgeconf.parse(old_text, name) if old_text is not None else sgeconf.parse("", name)
    new = sgeconf.with_entries(old, values)
    if exists and all(old.get(k) == values[k] for k in keys):
        print("%s configuration: %s already ha%s these values; nothing changed" % (
            name, "the six entries" if len(keys) == len(sgeconf.SLOTS) else ", ".join(keys),
            "s" if len(keys) == 1 else "ve"))
        return None
    backup = save_backup(backup_dir, "sge_conf." + name,
                         old_text if old_text is not None else sgeconf.render(sgeconf.absent(name)))
    print("saved the previous %s configuration to %s" % (name, backup))
    qconf_put(name, sgeconf.render(new), new=not exists)
    now = sgeconf.parse(qconf_show(name, code=1), name)
    wrong = [k for k in keys if now.get(k) != values[k]]
    if wrong:
        raise AdminError("qconf accepted the change but %s of %s shows %s; undo with: sgewrap config --restore %s"
                         % (name, "configuration", ", ".join("%s=%r" % (k, now.get(k)) for k in wrong), backup))
    for key in keys:
        print("%s %-15s %s" % (name, key, values[key]))
    if not host:
        for other in qconf_list(code=1):
            try:
                local = sgeconf.parse(qconf_show(other, code=1), other)
            except AdminError as err:       # qconf resolves the name here first: it may not resolve here
                print("note: the local configuration of %s was not read here (%s)" % (other, err))
                continue
            overriding = [k for k in keys if k in local
                          and local.get(k) not in (values[k], sgeconf.job_service_guard(values[k]))]
            if overriding:
                print("warning: the local configuration of %s overrides %s (sgewrap check tells whether it matters)"
                      % (other, ", ".join(overriding)))
    print("execution daemons use changed *_daemon entries after 15-90 s; undo with: sgewrap config --restore %s"
          % backup)
    if len(keys) == len(sgeconf.SLOTS) and sgeconf.wraps_logins(values):
        print("note: " + sgeconf.PTY_NOTE)
    return backup


#: what ``--tight --apply`` says on a host whose sshd takes its PAM service from PamServiceName
GUARD_NOTE = ("this host's sshd is OpenSSH 9.8 or later (%s exists): it takes its PAM service from %s, not "
              "from the name %s, so this host's job sshd entries get -o %s=%s in its local configuration "
              "(OpenSSH 9.2 refuses that option: the global entries go without it)"
              % (methods.SSHD_SESSION, methods.PAM_SERVICE_OPTION, methods.JOB_SSHD_NAME,
                 methods.PAM_SERVICE_OPTION, methods.JOB_SSHD_NAME))


def follow_guards(before, after):
    """After a restore: the local entries ``--tight --apply`` wrote on OpenSSH 9.8+ hosts (a global job
    sshd value with ``-o PamServiceName=...``, :func:`sgeconf.job_service_guard`) follow the global value
    they guarded from ``before`` to ``after``: they go where it is no job sshd any more (a local
    configuration left with no entry goes too), and guard the new one where it still is."""
    changed = {k: sgeconf.job_service_guard(after.get(k)) for k in sgeconf.SLOTS
               if k.endswith("_daemon") and sgeconf.job_service_guard(before.get(k))
               and before.get(k) != after.get(k)}
    if not changed:
        return
    for host in qconf_list(code=1):
        local = sgeconf.parse(qconf_show(host, code=1), host)
        mine = {k: v for k, v in changed.items() if local.get(k) == sgeconf.job_service_guard(before.get(k))}
        if not mine:
            continue
        new = sgeconf.without_entries(sgeconf.with_entries(local, {k: v for k, v in mine.items() if v}),
                                      [k for k, v in mine.items() if not v])
        if not new.keys():
            run(sgeconf.delete_argv(host))
            if local_exists(host):
                raise AdminError("the local configuration of %s is still there after '%s'" % (
                    host, " ".join(sgeconf.delete_argv(host))))
            print("deleted the local configuration of %s: it held only %s, written by --tight --apply for its "
                  "OpenSSH 9.8+ sshd" % (host, ", ".join(mine)))
            continue
        qconf_put(host, sgeconf.render(new), new=False)
        now = sgeconf.parse(qconf_show(host, code=1), host)
        if any(now.get(k) != new.get(k) or (k in now) != (k in new) for k in mine):
            raise AdminError("qconf accepted the change but the local configuration of %s shows %s" % (
                host, ", ".join("%s=%r" % (k, now.get(k)) for k in mine)))
        gone, moved = [k for k, v in mine.items() if not v], [k for k, v in mine.items() if v]
        print("local configuration of %s (written by --tight --apply for its OpenSSH 9.8+ sshd, guarding the "
              "global value): %s" % (host, "; ".join((["took out %s" % ", ".join(gone)] if gone else [])
                                                     + ["%s now %s" % (k, mine[k]) for k in moved])))


def save_original(backup_dir, path):
    """The first time sgewrap changes ``path``: a copy (or a note that it did not exist) in ``backup_dir``."""
    name = os.path.join(backup_dir, "original" + path.replace("/", "_"))
    if os.path.exists(name):
        return
    os.makedirs(backup_dir, mode=0o700, exist_ok=True)
    try:
        with open(path, "rb") as f:
            data = b"present\n" + f.read()
    except FileNotFoundError:
        data = b"absent\n"
    from ..rootside.frame import write_atomic
    write_atomic(name, data, 0o600)


def compare_original(backup_dir, path):
    """After sgewrap took its part out of ``path``: a line saying whether it is as it was before."""
    name = os.path.join(backup_dir, "original" + path.replace("/", "_"))
    try:
        with open(name, "rb") as f:
            saved = f.read()
    except FileNotFoundError:
        return "%s: sgewrap's part taken out (no copy of the original to compare with)" % path
    try:
        with open(path, "rb") as f:
            now = b"present\n" + f.read()
    except FileNotFoundError:
        now = b"absent\n"
    if now == saved:
        os.unlink(name)
        return "%s: as it was before sgewrap (byte for byte)" % path
    return "%s: sgewrap's part taken out; the administrator changed the rest since (kept; the original is in %s)" \
        % (path, name)


def publish_trust(hostbased, backup_dir, port22=False, hosts_spec=None):
    """This host's ssh trust from every host's record: the known-hosts block; with ``hostbased`` the
    host-based files (else they are taken out); with ``port22`` the port-22 sshd's drop-in (else it goes)."""
    port22_now(port22)
    records = hostfacts.load()
    if not records:
        return
    save_original(backup_dir, sshtrust.KNOWN_HOSTS)
    if sshtrust.write_known_hosts(records):
        print("wrote the cluster's host keys into %s (%d host%s recorded: %s)" % (
            sshtrust.KNOWN_HOSTS, len(records), "s" * (len(records) != 1), ", ".join(sorted(records))))
    if hostbased:
        hosts = sshtrust.chosen_hosts(hosts_spec, sshtrust.cluster_hosts())
        save_original(backup_dir, sshtrust.SHOSTS_EQUIV)
        if sshtrust.write_hostbased(records, hosts, spec=hosts_spec):
            print("wrote host-based authentication for the job sshds: %s (block), %s; hosts: %s"
                  % (sshtrust.SHOSTS_EQUIV, sshtrust.CLIENT_DROPIN, ", ".join(hosts)))
        unrecorded = [h for h in hosts if h not in records]
        if unrecorded:
            print("note: no record of %s yet: their host keys are not known here; run --apply there, then "
                  "sgewrap facts --record here" % ", ".join(unrecorded))
    elif sshtrust.remove_hostbased():
        print("took host-based authentication out (no --hostbased): " + compare_original(
            backup_dir, sshtrust.SHOSTS_EQUIV))


def port22_now(wanted):
    """The port-22 sshd's host-based drop-in written or taken out, and that sshd reloaded if it changed."""
    try:
        changed = sshtrust.write_port22() if wanted else sshtrust.remove_port22()
    except OSError as err:
        raise AdminError("cannot write %s: %s" % (sshtrust.SSHD_DROPIN, err.strerror or err))
    if changed:
        print("%s %s (the port-22 sshd %s host-based logins from the cluster's hosts); %s" % (
            "wrote" if wanted else "removed", sshtrust.SSHD_DROPIN, "accepts" if wanted else "no longer accepts",
            sshtrust.reload_sshd()))


def withdraw_trust(backup_dir):
    """No slot runs ssh any more: the known-hosts block and the host-based files go."""
    port22_now(False)
    if sshtrust.take_block(sshtrust.KNOWN_HOSTS, sshtrust.KNOWN_HOSTS_WHAT):
        print(compare_original(backup_dir, sshtrust.KNOWN_HOSTS))
    if sshtrust.remove_hostbased():
        print(compare_original(backup_dir, sshtrust.SHOSTS_EQUIV))


def ensure_job_stack(wrappers_dir, path, hostbased=False, gssapi=False):
    """Write the job sshds' PAM service (before sge_conf names sge-sshd: never a job sshd without it)."""
    require_isolated_hook(wrappers_dir)
    try:
        changed = pam.install_job_stack(wrappers_dir, path)
    except (OSError, ValueError) as err:
        raise AdminError("cannot write %s: %s" % (path, getattr(err, "strerror", None) or err))
    print("%s %s (this host; every execution host needs it: sgewrap config ssh --tight --apply there, or copy it)"
          % ("wrote" if changed else "unchanged:", path))
    config = methods.JOB_SSHD_CONFIG
    if path != pam.JOB_PAM_FILE:         # a job stack elsewhere (a test): its configuration beside it
        config = os.path.join(os.path.dirname(path), "sge-sshd_config")
    try:
        had_gssapi = sshtrust.gssapi_configured(config)
        changed = write_job_sshd_config(config, hostbased, gssapi)
    except OSError as err:
        raise AdminError("cannot write %s: %s" % (config, err.strerror or err))
    print("%s %s (the job sshds' own sshd configuration: it includes %s; port 22 never reads it)"
          % ("wrote" if changed else "unchanged:", config, methods.SITE_SSHD_CONFIG))
    if gssapi:
        print("Kerberos (GSSAPI) for the job sshds: %s in %s; this host needs %s and a host/NAME key in %s "
              "(sgewrap check says what is missing)"
              % (", ".join(sshtrust.JOB_SSHD_GSSAPI), config, sshtrust.KRB5_CONF, sshtrust.KRB5_KEYTAB))
    elif had_gssapi:
        print("took Kerberos (GSSAPI) out of %s (no --gssapi)" % config)
    if pam.has_line(pam.PAM_FILE):
        print("note: %s still has '%s' from sgewrap 0.1: ordinary ssh logins do not need it; remove that line "
              "(sgewrap check explains)" % (pam.PAM_FILE, pam.PAM_LINE))


JOB_SSHD_CONFIG_MARK = "# sgewrap: the job sshds' own configuration"


def job_sshd_config_text(hostbased=False, gssapi=False):
    """The per-host job sshd configuration: job-only options first (sshd keeps the first value it
    reads), then the site's file."""
    lines = [
        JOB_SSHD_CONFIG_MARK + " (sge-sshd, the launcher, starts sshd with -f on it; the site's",
        "# port-22 sshd never reads it).  Written by \"sgewrap config ssh --tight --apply\", removed with the",
        "# job PAM service.  Options for job sshds only go above the Include: sshd keeps the first value.",
        "# UsePAM: without PAM no job stack runs, and no session would be tied or limited to its owner.",
        "UsePAM yes"]
    if hostbased:
        lines += ["# --hostbased: which hosts in /etc/ssh/shosts.equiv, their keys in ssh_known_hosts; the client's",
                  "# name from the packet (through --tunnel the peer address is the node itself)"]
        lines += list(sshtrust.JOB_SSHD_HOSTBASED)
    if gssapi:
        lines += ["# --gssapi: Kerberos, with the host/NAME key of /etc/krb5.keytab; a delegated ticket's cache goes",
                  "# with its session"]
        lines += list(sshtrust.JOB_SSHD_GSSAPI)
    return "\n".join(lines + ["Include %s" % methods.SITE_SSHD_CONFIG, ""])


def write_job_sshd_config(path=None, hostbased=False, gssapi=False):
    """Write the job sshd configuration (root's, 0644); True if changed.  A file sgewrap did not write is kept."""
    return pam.write_marked(path or methods.JOB_SSHD_CONFIG, job_sshd_config_text(hostbased, gssapi),
                            JOB_SSHD_CONFIG_MARK)


def restore_job_stack(path, glob):
    """After a restore: the job stack goes when no slot of the global configuration ``glob`` runs the job sshd."""
    if any(sgeconf.needs_job_stack(glob.get(k)) for k in sgeconf.SLOTS):
        return 0
    if pam.remove_job_stack(path):
        print("no *_daemon runs the job sshd any more: removed %s (this host)" % path)
    if path == pam.JOB_PAM_FILE and pam.remove_marked(methods.JOB_SSHD_CONFIG, JOB_SSHD_CONFIG_MARK):
        print("removed %s (this host)" % methods.JOB_SSHD_CONFIG)
    return 0


def restore(path):
    try:
        with open(path) as f:
            text = f.read()
    except OSError as err:
        raise AdminError("cannot read %s: %s" % (path, err.strerror or err), UNREADABLE)
    saved = sgeconf.parse(text)
    name = saved.name
    if not name or not text.startswith("#%s:" % name):
        raise AdminError("%s does not start with '#global:' or '#HOST:': not a configuration sgewrap saved"
                         % path, UNREADABLE)
    if name == "global":
        exists = True
    else:
        exists = local_exists(name)
    if saved.absent:
        if exists:
            run(sgeconf.delete_argv(name))
            print("deleted the local configuration of %s (there was none before)" % name)
        else:
            print("%s has no local configuration, as before" % name)
        if local_exists(name):
            raise AdminError("the local configuration of %s is still there after '%s'" % (
                name, " ".join(sgeconf.delete_argv(name))))
        return 0
    if exists and qconf_show(name, code=1) == text:
        print("%s configuration: already identical to %s; nothing changed" % (name, path))
        return 0
    qconf_put(name, text, new=not exists)
    now = qconf_show(name, code=1)
    if now != text:
        raise AdminError("after restoring %s, 'qconf -sconf %s' differs from %s" % (name, name, path))
    print("restored the %s configuration from %s (qconf -sconf shows it byte for byte)" % (name, path))
    return 0
