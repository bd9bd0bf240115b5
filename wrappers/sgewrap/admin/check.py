"""``sgewrap check``: do the remote-startup entries in effect on every host pair fit together?

sge_conf(5), "local configurations of exechosts": for each slot, the command
in effect on the host running qrsh/qlogin (A) must speak the protocol of the
daemon in effect on the execution host (B).  A host without a local
configuration (or whose local configuration does not set the entry) uses the
global value; ``*`` in the table stands for every such host.
"""
import json
import os
import posixpath
import shutil

from plumbum import cli

from .. import methods
from . import hostfacts, jobssh, pam, sgeconf, sshtrust
from . import access
from . import common
from .common import OK, FAILED, UNREADABLE, AdminError, Command, config_of, read_dir, read_live_from_here, run, table, \
    same_host, this_host

OTHERS = "*"          #: the hosts without a local configuration
ERROR, WARNING = "error", "warning"


def _label(host):
    return "hosts without a local configuration" if host == OTHERS else host


def _short(value):
    """A value as the table shows it: the program's basename and its arguments."""
    if sgeconf.is_unset(value):
        return "(unset)"
    ws = value.split(" ")
    return " ".join([posixpath.basename(ws[0])] + ws[1:])


class Problem:
    def __init__(self, severity, host, slot, message):
        self.severity, self.host, self.slot, self.message = severity, host, slot, message

    def as_dict(self):
        return {"severity": self.severity, "host": self.host, "slot": self.slot, "message": self.message}

    def __str__(self):
        return "%s: %s" % (self.severity, self.message)


class Report:
    def __init__(self):
        self.pairs = []
        self.problems = []
        self.notes = []

    def add(self, severity, host, slot, message):
        if not any(p.message == message for p in self.problems):
            self.problems.append(Problem(severity, host, slot, message))

    def by_host(self, host):
        return [p for p in self.problems if p.host == host]

    @property
    def errors(self):
        return [p for p in self.problems if p.severity == ERROR]

    @property
    def warnings(self):
        return [p for p in self.problems if p.severity == WARNING]

    @property
    def consistent(self):
        return not self.errors


def analyse(glob, hosts, here=None, pam_file=pam.PAM_FILE, executable=None, queues=None, sshd_settings=None,
            job_pam_file=pam.JOB_PAM_FILE, front_state=None, sshd_root="/", gid_range_cache=None,
            exec_hosts=None, facts=None, job_ssh=None, submit_hosts=None):
    """The Report for a global configuration and the local ones (``{host: Config}``).

    ``here``: this host's name, for what can only be checked on this host
    (executables, the PAM lines, sshd); None skips those checks.  ``queues``:
    ``{queue: {attribute: value}}`` (prolog/epilog), None if not read.
    ``sshd_settings``: a callable giving this host's ``sshd -T`` as a dict.
    ``front_state``: {name: installed} of this host's qlogin/qrsh front, None if not known.
    ``sshd_root``: where this host's sshd is looked at (tests point it at a fake tree).
    ``gid_range_cache``: this host's gid_range cache (default :data:`sgewrap.rootside.gidrange.CACHE`).
    ``exec_hosts``: the execution hosts (qconf -sel); ``facts``: {host: recorded facts}
    (:mod:`sgewrap.admin.hostfacts`); None skips the check of every host's job sshd.  ``submit_hosts``
    (qconf -ss): with the records, host-based logins are judged for every submit x execution host pair.
    ``job_ssh``: the path of this host's ``sgewrap job-ssh`` drop-in; where it exists, what ``ssh -L`` and
    ``-D`` into jobs need of this host's sshd is reported.
    """
    executable = executable or (lambda path: os.path.isfile(path) and os.access(path, os.X_OK))
    report = Report()
    names = list(hosts) + [OTHERS]

    def value(host, key):
        local = hosts.get(host)
        if local is not None and key in local:
            return local.get(key)
        return glob.get(key)

    # --- host pairs -------------------------------------------------------------------
    for slot, cmd_key, dmn_key in sgeconf.PAIRS:
        for a in names:
            for b in names:
                cmd, dmn = value(a, cmd_key), value(b, dmn_key)
                ck, dk = sgeconf.classify(cmd, cmd_key), sgeconf.classify(dmn, dmn_key)
                if "unknown" in (ck, dk):
                    status = "unknown"
                    report.add(WARNING, a if ck == "unknown" else b, cmd_key if ck == "unknown" else dmn_key,
                               "%s: cannot tell which protocol %s %r speaks; check by hand that it fits %r" % (
                                   _label(a if ck == "unknown" else b), cmd_key if ck == "unknown" else dmn_key,
                                   cmd if ck == "unknown" else dmn, dmn if ck == "unknown" else cmd))
                elif ck == dk:
                    status = "ok"
                else:
                    status = "MISMATCH"
                    report.add(ERROR, b, slot, "%s: %s on %s runs %s (%s) but %s on %s is %s (%s)" % (
                        slot, cmd_key, _label(a), _short(cmd), ck, dmn_key, _label(b), _short(dmn), dk))
                report.pairs.append({"slot": slot, "client_host": a, "exec_host": b,
                                     "command": cmd, "command_kind": ck, "daemon": dmn, "daemon_kind": dk,
                                     "status": status})

    # --- each configuration's own entries -----------------------------------------------
    for name, conf in [("global", glob)] + list(hosts.items()):
        where = "global configuration" if name == "global" else "local configuration of %s" % name
        for key in sgeconf.SLOTS:
            if key not in conf:
                continue
            v = conf.get(key)
            for var in ("$SGE_ROOT", "${SGE_ROOT}", "$ARC", "${ARC}", "$sge_root", "$arch"):
                if var in (v or ""):
                    report.add(ERROR, name, key, "%s: %s holds %s literally (%s): Grid Engine does not expand "
                               "it" % (where, key, var, v))
                    break
            if sgeconf.is_unset(v) or v.strip() == "builtin":
                continue
            first = v.split(" ")[0]
            if key.endswith("_daemon"):
                if not posixpath.isabs(first):
                    report.add(ERROR, name, key, "%s: %s %r is not an absolute path: the shepherd refuses to "
                               "start it" % (where, key, first))
                if v != v.strip() or "  " in v:
                    report.add(WARNING, name, key, "%s: %s %r has extra spaces: the shepherd splits on single "
                               "spaces, so it gets empty arguments" % (where, key, v))
                service = sgeconf.pam_service(v)
                if sgeconf.is_tight(v) and sgeconf.classify(v) == "ssh" \
                        and service not in (None, methods.JOB_SSHD_NAME):
                    report.add(ERROR, name, key, "%s: %s runs the job sshd under the PAM service %r, not %s: its "
                               "sessions are neither tied to their job nor limited to its owner" % (
                                   where, key, service, methods.JOB_SSHD_NAME))
                if not sgeconf.is_daemon_program(v) and sgeconf.classify(v) != "unknown":
                    report.add(ERROR, name, key, "%s: %s runs %s, a client, not a daemon" % (
                        where, key, posixpath.basename(first)))
            elif sgeconf.is_daemon_program(v):
                report.add(ERROR, name, key, "%s: %s runs %s, a daemon, not a client" % (
                    where, key, posixpath.basename(first)))

    # --- unencrypted methods ------------------------------------------------------------
    for slot, cmd_key, dmn_key in sgeconf.PAIRS:
        kinds = {p["command_kind"] for p in report.pairs if p["slot"] == slot}
        for kind in sorted(kinds & set(sgeconf.CLEARTEXT)):
            report.add(WARNING, None, cmd_key, "%s: %s is used: unencrypted (sessions and passwords cross the "
                       "network in clear text)" % (cmd_key, kind))

    # --- wrapped logins: a Grid Engine 8.1.9 bug users must step around ------------------------
    wrapped = sorted({p["slot"] for p in report.pairs
                      if p["slot"] in ("qlogin", "rlogin") and p["command_kind"] != "builtin"})
    if front_state is not None:
        have = all(front_state.values())
        if wrapped and not have:
            report.add(WARNING, here, ", ".join("%s_command" % s for s in wrapped), "%s: no qlogin/qrsh front: %s"
                       % (here, sgeconf.PTY_NOTE))
        elif have and not wrapped:
            report.add(WARNING, here, "front", "%s: the qlogin/qrsh front adds -pty no but no login is wrapped: "
                       "builtin logins lose their terminal; sgewrap front --remove" % here)
        elif have:
            report.notes.append("%s: the qlogin/qrsh front adds -pty no to logins" % here)
    elif wrapped:
        report.add(WARNING, None, ", ".join("%s_command" % s for s in wrapped), sgeconf.PTY_NOTE)

    # --- node_access as prolog/epilog ------------------------------------------------------
    restricting = []
    for name, values in sorted((queues or {}).items()):
        pro, epi = (access.runs_node_access(values.get(w)) for w in ("prolog", "epilog"))
        if pro or epi:
            restricting.append(name)
        if pro and not epi:
            report.add(ERROR, None, "queue " + name, "queue %s runs node_access as its prolog but not as its "
                       "epilog: users keep ssh access after their jobs end" % name)
        elif epi and not pro:
            report.add(ERROR, None, "queue " + name, "queue %s runs node_access as its epilog but not as its "
                       "prolog: users never get ssh access to their jobs' hosts" % name)

    # --- what runs as root must not start an interpreter the job's owner can steer -----------------
    for message in common.interpreter_errors(common.root_run_entries(glob, hosts, queues)):
        report.add(ERROR, None, "root", message)

    # --- enough job group ids for the tasks a host may run at once ----------------------------
    most = max([(q, n) for q, values in (queues or {}).items() for n in _numbers(values.get("slots"))] or [(None, 0)],
               key=lambda pair: pair[1])
    for name, conf in [("global", glob)] + list(hosts.items()):
        ids = gid_count(conf.get("gid_range"))
        if ids is not None and most[0] is not None and ids < most[1]:
            report.add(WARNING, name, "gid_range", "%s gid_range %s gives %d group ids, but queue %s has %d slots on "
                       "a host: every job and every qrsh -inherit task running on a host takes one, so beyond %d "
                       "at once tasks fail to start; widen it (the README's Scale section)"
                       % ("global" if name == "global" else name + "'s", conf.get("gid_range"), ids, most[0],
                          most[1], ids))

    # --- every execution host's job sshd, from the facts its root recorded ---------------------------
    if facts is not None:
        _check_recorded_hosts(report, exec_hosts or [], here, facts,
                              lambda host: [(k, value(host, k)) for k in sgeconf.SLOTS if k.endswith("_daemon")])

    # --- on this host -------------------------------------------------------------------
    if here is None:
        report.notes.append("executables, the PAM lines and sshd were not checked (no --this-host)")
        return report
    if queues is not None:
        try:
            restricted_here = pam.has_node_access(pam_file)
        except OSError as err:
            report.notes.append("cannot read %s: %s" % (pam_file, err.strerror or err))
        else:
            if restricting and not restricted_here:
                report.add(WARNING, here, "node access", "%s: queue%s %s run node_access but %s lacks its account "
                           "rules: if %s runs their jobs, ssh to it is not restricted (sgewrap node-access)"
                           % (here, "s" * (len(restricting) > 1), ", ".join(restricting), pam_file, here))
            elif restricted_here and not restricting:
                report.add(ERROR, here, "node access", "%s: %s lets in only users listed by node_access, but no "
                           "queue runs node_access: every user from uid 1000 up is refused" % (here, pam_file))
    tunnelled = sorted({key for conf in [glob] + list(hosts.values()) for key in sgeconf.SLOTS
                        if key.endswith("_command") and "--tunnel" in sgeconf.words(conf.get(key))})
    if tunnelled:
        _check_tunnel_end(report, here, tunnelled, sshd_settings)
        for host, settings in _recorded_port22(facts, exec_hosts, here, report, "the --tunnel end"):
            _judge_tunnel_end(report, host, tunnelled, settings, "its record's")
    if sshtrust.has_block(sshtrust.SHOSTS_EQUIV, sshtrust.SHOSTS_WHAT) or os.path.exists(sshtrust.SSHD_DROPIN):
        _check_hostbased_port22(report, here, bool(tunnelled), sshd_settings)
    if job_ssh and os.path.exists(job_ssh):
        _check_job_ssh(report, here, job_ssh, sshd_settings, exec_hosts, facts)
    local = config_of(here, hosts)
    tight = []
    for key in sgeconf.SLOTS:
        v = value(local, key) if local else glob.get(key)
        first = sgeconf.program(v)
        if first is None:
            continue
        if key.endswith("_daemon"):
            first = v.split(" ")[0]
            if posixpath.isabs(first) and not executable(first):
                report.add(ERROR, here, key, "%s: %s %s is %s on this host: the shepherd refuses to start it" % (
                    here, key, first, "not executable" if os.path.exists(first) else "missing"))
            if sgeconf.is_tight(v):
                tight.append(key)
        elif posixpath.isabs(first):
            if not executable(first):
                report.add(ERROR, here, key, "%s: %s %s is %s on this host" % (
                    here, key, first, "not executable" if os.path.exists(first) else "missing"))
        elif shutil.which(first) is None:
            report.add(WARNING, here, key, "%s: %s %r is not an absolute path and not found in this PATH" % (
                here, key, first))
    _check_pam_service_name(report, here, [(k, value(local, k) if local else glob.get(k)) for k in tight], sshd_root)
    if tight:
        _check_gid_range_cache(report, here, tight, value(local, "gid_range") if local else glob.get("gid_range"),
                               gid_range_cache)
    root_run = [(key, value(local, key) if local else glob.get(key)) for key in sgeconf.SLOTS
                if key.endswith("_daemon")]
    root_run += [("queue %s %s" % (q, w), values.get(w)) for q, values in sorted((queues or {}).items())
                 for w in ("prolog", "epilog") if (values.get(w) or "").startswith("root@")]
    root_run += [("%s (%s)" % (w, here), value(local, w) if local else glob.get(w)) for w in ("prolog", "epilog")
                 if ((value(local, w) if local else glob.get(w)) or "").startswith("root@")]
    adopt_hooks = []
    try:
        for problem in pam.adopt_problems(pam_file):
            report.add(ERROR, here, "adopt", "%s: %s" % (here, problem))
        if pam.has_adopt(pam_file):
            adopt_hooks = [("adopt (%s)" % pam_file, pam.adopt_hook(pam_file))]
            report.notes.append("%s: node_access adopt in %s: ssh logins join the user's job here, or are refused"
                                % (here, pam_file))
    except OSError as err:
        report.notes.append("cannot read %s: %s" % (pam_file, err.strerror or err))
    _check_isolated(report, here, root_run + [h for h in adopt_hooks if h[1]])
    _check_job_stack(report, here, tight, [value(local, k) if local else glob.get(k) for k in tight],
                     pam_file, job_pam_file)
    if facts is not None and (os.path.exists(sshtrust.CLIENT_DROPIN)
                              or sshtrust.has_block(sshtrust.SHOSTS_EQUIV, sshtrust.SHOSTS_WHAT)):
        missing = sshtrust.hostbased_problems(facts, sshtrust.chosen_hosts(sshtrust.hosts_spec(), exec_hosts or []))
        for problem in missing:
            report.add(ERROR, here, "host-based", "%s: host-based authentication: %s" % (here, problem))
        if not missing:
            report.notes.append("%s: host-based authentication to the job sshds is complete here (setuid "
                                "ssh-keysign, EnableSSHKeysign, the job sshds' options, every execution host in "
                                "%s and its keys in %s)" % (here, sshtrust.SHOSTS_EQUIV, sshtrust.KNOWN_HOSTS))
    if facts is not None and submit_hosts is not None:
        pairs = sshtrust.pair_problems(facts, submit_hosts, exec_hosts or [])
        for severity, host, why in pairs:
            report.add(ERROR if severity == "error" else WARNING, host, "host-based", why)
        if any(r.get("hostbased") for r in facts.values()) and not pairs:
            report.notes.append("host-based logins: every submit x execution host pair is set up on both ends, "
                                "as their records say (%d x %d)" % (len(submit_hosts), len(exec_hosts or [])))
    wrapped = [value(local, k) if local else glob.get(k) for k in sgeconf.SLOTS if k.endswith("_command")]
    wrapped = [v for v in wrapped if sgeconf.program(v)
               and methods.ENTRY_POINTS.get(posixpath.basename(sgeconf.program(v)), ("",))[0] == "ssh"]
    if facts is not None and (sshtrust.gssapi_configured() or any(
            {"--gssapi", "--gssapi-delegate"} & set(sgeconf.words(v)) for v in wrapped)):
        import socket
        missing = sshtrust.gssapi_problems([here, socket.gethostname()], wrapped)
        for problem in missing:
            report.add(ERROR, here, "Kerberos", "%s: Kerberos (GSSAPI): %s" % (here, problem))
        if not missing:
            report.notes.append("%s: Kerberos (GSSAPI) to the job sshds is complete here (the job sshds' options, "
                                "%s, this host's key in %s, the wrappers' option%s)" % (
                                    here, sshtrust.KRB5_CONF, sshtrust.KRB5_KEYTAB,
                                    ": delegation" if any("--gssapi-delegate" in sgeconf.words(v) for v in wrapped)
                                    else ", no delegation"))
    return report


def _numbers(value):
    """The slot counts in a queue's ``slots`` value (``80`` or ``1,[vm=80],[@hg=4]``)."""
    import re
    return [int(n) for n in re.findall(r"(?:^|[,=])\s*(\d+)", value or "")]


def gid_count(value):
    """How many group ids a ``gid_range`` value (``m-n`` and ``m`` items, comma-separated) holds; None
    if it cannot be read."""
    if not value:
        return None
    total = 0
    for item in value.replace(" ", "").split(","):
        low, _, high = item.partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            return None
        total += int(high or low) - int(low) + 1 if int(high or low) >= int(low) else 0
    return total


def _check_isolated(report, here, entries):
    """Root-run programs that are Python scripts must start an isolated interpreter (python -I) by their
    first line; an interpreter the entry names itself is :func:`common.interpreter_errors`'."""
    for key, v in entries:
        words = common.entry_words(v)
        if not words or not posixpath.isabs(words[0]):
            continue
        problem = common.interpreter_problem(words[0])
        if problem:
            report.add(ERROR, here, key, "%s: %s runs %s as root, %s: the job's owner could run code as root "
                       "(PYTHONPATH...); reinstall it (make install / sgewrap install / the package), or give its "
                       "interpreter line the isolating option" % (here, key, words[0], problem))


def _check_gid_range_cache(report, here, tight, configured, path=None):
    """The job sshd's reaper kills by a job's group id only inside the gid_range cached here: it must be
    there, and say what the configuration says."""
    from ..rootside import gidrange
    path = path or gidrange.CACHE
    fix = "sgewrap config ssh --tight --apply on %s rewrites it from qconf" % here
    try:
        with open(path, "rb") as f:
            data = f.read(gidrange.MAX_BYTES + 1)
    except FileNotFoundError:
        report.add(WARNING, here, "gid_range", "%s: %s run%s the job sshd, but there is no %s: a closed session's "
                   "leftovers are killed by whatever group id its job's addgrpid holds, unchecked against gid_range; "
                   "%s" % (here, ", ".join(tight), "s" if len(tight) == 1 else "", path, fix))
        return
    except OSError as err:
        report.notes.append("cannot read %s: %s" % (path, err.strerror or err))
        return
    cached = gidrange.line_for(data, here)
    cached = cached.decode("ascii", "replace") if cached is not None else None
    if cached != configured:
        report.add(WARNING, here, "gid_range", "%s: %s says gid_range %s for this host, the configuration %s: a "
                   "closed session whose group id is outside the cached one is not reaped; %s"
                   % (here, path, cached or "nothing", configured or "nothing", fix))


def _check_job_stack(report, here, tight, values, pam_file, job_pam_file):
    """The PAM side of tight integration on this host: the job stack, the 0.1 line, the Perl anchor's line."""
    job = [k for k, v in zip(tight, values) if sgeconf.needs_job_stack(v)]
    perl = [k for k, v in zip(tight, values) if posixpath.basename(sgeconf.program(v) or "") == "rshd-wrapper"]
    if job:
        for problem in pam.job_stack_problems(job_pam_file):
            report.add(ERROR, here, job[0], "%s: %s run%s the job sshd, but %s" % (
                here, ", ".join(job), "s" if len(job) == 1 else "", problem))
    try:
        old_line = pam.has_line(pam_file)
    except OSError as err:
        report.notes.append("cannot read %s: %s" % (pam_file, err.strerror or err))
        return
    if perl and not old_line:
        report.add(ERROR, here, perl[0], "%s: %s run%s Grid Engine's rshd-wrapper but %s lacks '%s': sessions do "
                   "not get the job's group"
                   % (here, ", ".join(perl), "s" if len(perl) == 1 else "", pam_file, pam.PAM_LINE))
    elif old_line and not perl and not pam.has_adopt(pam_file):
        report.add(WARNING, here, "PAM", "%s: %s still has '%s' (sgewrap 0.1): job sessions now use %s; ordinary "
                   "logins that reach it could be tied to a stale job. Migrate: sgewrap config ssh --tight --apply "
                   "(writes %s), then delete that line from %s" % (
                       here, pam_file, pam.PAM_LINE, job_pam_file, job_pam_file, pam_file))


def _check_hostbased_port22(report, here, tunnelled, sshd_settings):
    """Host-based logins and the port-22 sshd: the --tunnel hop needs them there, nothing else does."""
    try:
        settings = sshd_settings() if sshd_settings else None
    except Exception as err:   # not root, no host keys, no sshd: say so, do not guess
        report.notes.append("%s: cannot read 'sshd -T' (%s): host-based logins on port 22 not checked" % (here, err))
        return
    problem = sshtrust.port22_problem(settings or {}, tunnelled)
    if problem:
        report.add(WARNING, here, "host-based", "%s: %s" % (here, problem))


def _check_tunnel_end(report, here, keys, sshd_settings):
    """This host as the far end of ``--tunnel``: its sshd must forward, and take many at once."""
    settings = None
    try:
        settings = sshd_settings() if sshd_settings else None
    except Exception as err:   # not root, no host keys, no sshd: say so, do not guess
        report.notes.append("%s: cannot read 'sshd -T' (%s): the --tunnel end was not checked" % (here, err))
        return
    if not settings:
        report.notes.append("%s: 'sshd -T' said nothing: the --tunnel end was not checked" % here)
        return
    _judge_tunnel_end(report, here, keys, settings, "this host's")


def _recorded_port22(facts, exec_hosts, here, report, what):
    """(host, its recorded port-22 settings) of the execution hosts but this one; a note for those that
    recorded none (or whose sshd -T could not be read when they recorded)."""
    found, unknown = [], []
    for host in exec_hosts or []:
        if here and same_host(host, here):
            continue
        settings = ((facts or {}).get(host) or {}).get("port22")
        (found.append((host, settings)) if settings else unknown.append(host))
    if unknown and facts is not None:
        report.notes.append("%s of %s not checked: no port-22 settings in their records (sgewrap facts --record "
                            "there)" % (what, ", ".join(unknown)))
    return found


def _judge_tunnel_end(report, host, keys, settings, whose):
    """``host`` as the far end of ``--tunnel`` by its port-22 ``settings``: it must forward, and take many."""
    forwarding = settings.get("allowtcpforwarding") or "yes"
    if forwarding in ("no", "remote"):
        report.add(ERROR, host, keys[0], "%s: %s use --tunnel but %s sshd has AllowTcpForwarding %s: "
                   "the tunnels to it are refused" % (host, ", ".join(keys), whose, forwarding))
    start = (settings.get("maxstartups") or "10:30:100").split(":")[0]
    if start.isdigit() and int(start) < 32:
        report.add(WARNING, host, keys[0], "%s: %s use --tunnel and %s sshd has MaxStartups %s: a "
                   "parallel job starting more than %s qrsh -inherit there at once sees some refused "
                   "('kex_exchange_identification'); raise it, e.g. MaxStartups 100:30:200"
                   % (host, ", ".join(keys), whose, settings.get("maxstartups"), start))


def _check_job_ssh(report, here, drop_in, sshd_settings, exec_hosts, facts=None):
    """ssh JOB.job is set up here (the drop-in): ``ssh -L`` and ``-D`` into a job need the execution hosts'
    sshd to forward; this host's is read live, the others' from their records."""
    try:
        settings = sshd_settings() if sshd_settings else None
    except Exception as err:
        settings = None
        report.notes.append("%s: cannot read 'sshd -T' (%s): AllowTcpForwarding for job-ssh not checked" % (here, err))
    if settings:
        forwarding = settings.get("allowtcpforwarding", "yes")
        is_exec = any(same_host(h, here) for h in exec_hosts or [])
        if forwarding in ("no", "remote") and is_exec:
            report.add(WARNING, here, "job-ssh", "%s: %s is set up (ssh JOB.job), but this execution host's sshd has "
                       "AllowTcpForwarding %s: ssh -L and -D into jobs here (Jupyter, VS Code) are refused"
                       % (here, drop_in, forwarding))
        else:
            report.notes.append("job-ssh: %s; this host's sshd has AllowTcpForwarding %s%s" % (
                drop_in, forwarding, "" if is_exec else " (not an execution host)"))
    for host, settings in _recorded_port22(facts, exec_hosts, here, report, "job-ssh's ssh -L and -D"):
        forwarding = settings.get("allowtcpforwarding") or "yes"
        if forwarding in ("no", "remote"):
            report.add(WARNING, host, "job-ssh", "%s: its record's sshd has AllowTcpForwarding %s: ssh -L and -D "
                       "into jobs there (Jupyter, VS Code) are refused" % (host, forwarding))


def _check_recorded_hosts(report, exec_hosts, here, facts, daemons_of):
    """For each execution host running a job sshd value: what its root recorded (sgewrap facts) says about
    the PAM service its sessions run under (:func:`hostfacts.judge`)."""
    for severity, host, key, message in hostfacts.judge(exec_hosts, here, facts, daemons_of):
        if severity == "note":
            report.notes.append(message)
        else:
            report.add(ERROR if severity == "error" else WARNING, host, key, message)


def _check_pam_service_name(report, here, daemons, root):
    """On OpenSSH 9.8 and later a job sshd value in force here must select the job PAM service itself."""
    bare = [key for key, v in daemons if sgeconf.job_service_guard(v)
            and not methods.job_sshd_is_launcher(os.path.dirname(sgeconf.program(v)))]
    if bare and methods.sshd_uses_pam_service_name(root):
        option = methods.PAM_SERVICE_OPTION
        report.add(ERROR, here, bare[0], "%s: %s run%s the job sshd without -o %s=%s, but this host's sshd is "
                   "OpenSSH 9.8 or later (%s): it ignores the name %s and runs the sessions under its own %s "
                   "(default sshd), untied from their jobs and open to any user at the port; fix: sgewrap config "
                   "ssh --tight --apply on %s" % (here, ", ".join(bare), "s" if len(bare) == 1 else "", option,
                                                  methods.JOB_SSHD_NAME, methods.SSHD_SESSION, methods.JOB_SSHD_NAME,
                                                  option, here))


def front_here():
    """This host's qlogin/qrsh front state, or None without a Grid Engine client here."""
    from . import fronts
    try:
        return fronts.state(fronts.client_dir(fronts.sge_root_here()))
    except AdminError:
        return None


sshd_T = hostfacts.sshd_settings


def text_report(report, glob, hosts, here):
    out = ["configurations: global%s" % "".join(", %s (local)" % h for h in hosts)]
    if here:
        out[0] += "; this host: %s" % here
    rows = []
    for p in report.pairs:
        rows.append(["%s -> %s" % (p["client_host"], p["exec_host"]), p["slot"],
                     "%s: %s" % (p["command_kind"], _short(p["command"])),
                     "%s: %s" % (p["daemon_kind"], _short(p["daemon"])), p["status"]])
    out.append(table(["CLIENT -> EXEC HOST", "SLOT", "COMMAND (client host)", "DAEMON (exec host)", "RESULT"],
                     rows).rstrip("\n"))
    if hosts:
        out.append("(* = hosts without a local configuration)")
    for p in report.errors + report.warnings:
        out.append(str(p))
    for note in report.notes:
        out.append("note: " + note)
    if report.consistent:
        out.append("consistent%s" % (" (%d warning%s)" % (len(report.warnings), "s" * (len(report.warnings) != 1))
                                     if report.warnings else ""))
    else:
        out.append("NOT consistent: %d error%s" % (len(report.errors), "s" * (len(report.errors) != 1)))
    return "\n".join(out) + "\n"


def json_report(report, glob, hosts, here):
    return json.dumps({
        "consistent": report.consistent,
        "this_host": here,
        "configurations": ["global"] + list(hosts),
        "entries": {name: {k: conf.get(k) for k in sgeconf.SLOTS if k in conf}
                    for name, conf in [("global", glob)] + list(hosts.items())},
        "pairs": report.pairs,
        "problems": [p.as_dict() for p in report.problems],
        "notes": report.notes,
    }, indent=2) + "\n"


class Check(Command, cli.Application):
    """Check that the remote-startup entries fit together on every host pair

    Reads the global configuration and every local one (qconf -sconfl,
    qconf -sconf HOST) and the queues (qconf -sql, qconf -sq QUEUE), or saved
    outputs with --from.  For each slot the command in effect on a client host
    must speak the protocol of the daemon in effect on an execution host.
    Also flags $SGE_ROOT/$ARC left in a value, daemons that are not absolute
    or not executable here, tight integration without the PAM line here (or,
    where this host's sshd is OpenSSH 9.8 or later, without -o PamServiceName),
    --tunnel with an sshd here that does not forward or takes few connections
    at once, node_access as prolog without epilog (or the reverse) and PAM
    rules here without a queue that runs it, a root-run daemon, prolog or
    epilog that starts an interpreter without isolation (python without -I,
    perl without -T, bash without -p, one env finds in the job's PATH; also
    through sh -c), a gid_range cache here that is missing or stale while the
    job sshd runs here, and unencrypted methods (warning).  For every
    execution host (qconf -sel) running a job sshd value it reads the facts
    that host's root recorded (sgewrap facts, config ssh --tight --apply) and
    reports one whose sessions would run outside the job PAM service or fail.  Exit 0:
    consistent (warnings allowed); 1: not consistent; 2: the configuration
    could not be read.
    """

    source = cli.SwitchAttr("--from", str, argname="DIR",
                            help="read saved outputs instead of qconf: DIR/global (qconf -sconf global), "
                                 "DIR/sconfl (qconf -sconfl, optional), DIR/HOST (qconf -sconf HOST), "
                                 "DIR/queue.QUEUE (qconf -sq QUEUE, optional)")
    here = cli.SwitchAttr("--this-host", str, argname="HOST",
                          help="the host whose executables and PAM line to check (default: this host; "
                               "with --from: none)")
    pam_file = cli.SwitchAttr("--pam-file", str, argname="PATH", default=pam.PAM_FILE,
                              help="sshd's PAM file on this host")
    job_pam_file = cli.SwitchAttr("--job-pam-file", str, argname="PATH", default=pam.JOB_PAM_FILE,
                                  help="the job sshds' PAM service on this host")
    as_json = cli.Flag("--json", help="print the result as JSON")

    def main(self):
        if self.source:
            glob, hosts = read_dir(self.source)
            queues = access.read_queue_dir(self.source)
            here = self.here
        else:
            glob, hosts, skipped = read_live_from_here()
            queues = {q: access.queue_values(access.show_queue(q)) for q in access.queues()}
            here = self.here or this_host()
        exec_hosts = facts = submit_hosts = None
        if not self.source:
            rc, out, _ = run([sgeconf.QCONF, "-sel"], code=UNREADABLE, retcode=None)
            exec_hosts = [h for h in out.split() if h not in skipped] if rc == 0 else []     # 1: "no execution host"
            rc, out, _ = run([sgeconf.QCONF, "-ss"], code=UNREADABLE, retcode=None)
            submit_hosts = out.split() if rc == 0 else []
            facts = hostfacts.load()
        report = analyse(glob, hosts, here=here, pam_file=self.pam_file, queues=queues, sshd_settings=sshd_T,
                         job_pam_file=self.job_pam_file, front_state=front_here() if here else None,
                         exec_hosts=exec_hosts, facts=facts,
                         job_ssh=None if self.source else jobssh.DROP_IN, submit_hosts=submit_hosts)
        for host in [] if self.source else skipped:
            report.add(WARNING, host, "configuration", "%s: not checked from here: 'qconf -sconf %s' fails on this "
                       "host (the name does not resolve here); run check where it does" % (host, host))
        print((json_report if self.as_json else text_report)(report, glob, hosts, here), end="")
        return OK if report.consistent else FAILED
