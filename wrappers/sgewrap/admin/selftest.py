"""``sgewrap selftest``: prove each remote-startup method works on this host, without a job.

For each slot to test it does what the shepherd and qrsh do (remote-startup.md,
sections 1 and 2), through :class:`sgewrap.admin.shepherd.Shepherd`:

- a scratch job spool directory (root-owned, like execd's) holding
  ``addgrpid`` (an unused group id outside this host's ``gid_range``: see
  :func:`free_gid`), ``environment`` and a probe script;
- a random port on 127.0.0.1; the one connection goes to the configured
  daemon, split on single spaces like the shepherd does, as root, with a
  job-like environment (``SGE_JOB_SPOOL_DIR`` ...) and the spool directory as cwd;
- the configured command, split like SGE splits it, with SGE's exact words
  appended (``HOST PORT``, ``-p PORT HOST``, ``-p PORT HOST exec 'STARTER'
  'JOBDIR'`` with the probe in the starter's place), run as ``--user``; the
  interactive slots in a pseudo-terminal, typing the probe;
- pass when the probe ran remotely as that user (and, through the job sshd,
  carried the job's group id).  The stand-in shepherd's executable is called
  sge_shepherd, so the job sshd's PAM hook takes it for one.

Daemon-side messages go to syslog; when this host has no syslog socket
(``/dev/log``) the selftest listens there itself while it runs, so a failure
can quote the daemon's log line.
"""
import os
import pwd
import random
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

from plumbum import cli

from .. import methods
from . import pam, sgeconf
from .shepherd import Shepherd, as_user
from .common import FAILED, OK, UNREADABLE, AdminError, Command, config_of, default_wrappers, effective, \
    qconf_list, qconf_show, read_live_from_here, table, this_host

MARKER = "SGEWRAP-SELFTEST-OK"
_PROBE_RE = re.compile(MARKER + r" uid=(\d+) groups=([0-9 ]*) env=\[([^\]\r\n]*)\]")
SLOT_OF = {cmd: (slot, cmd, dmn) for slot, cmd, dmn in sgeconf.PAIRS}
SYSLOG_SOCKET = "/dev/log"
LOG_FILES = ("/var/log/auth.log", "/var/log/syslog", "/var/log/messages", "/var/log/secure")
DAEMON_WORDS = ("sshd", "rshd", "rlogind", "telnetd", "rshdwrapper", "node_access", "pam", "login")


class Case:
    """One slot of one method: the configured command and daemon, and what happened."""

    def __init__(self, method, slot, command, daemon):
        self.method, self.slot, self.command, self.daemon = method, slot, command, daemon
        self.passed = None
        self.hostbased = False
        self.detail = ""
        self.seconds = 0.0

    @property
    def label(self):
        return self.method + (" (tight)" if sgeconf.is_tight(self.daemon) else "") + (
            " host-based" if self.hostbased else "")


def cases_for(method, wrappers, tight):
    values = sgeconf.entries(method, wrappers, tight=tight, x11=False if method == "ssh" else None)
    if methods.sshd_uses_pam_service_name() and not methods.job_sshd_is_launcher(wrappers):
        # what --tight --apply puts into this host's local configuration
        values.update(sgeconf.guard_entries(values))
    return [Case(method, slot, values[cmd], values[dmn]) for slot, cmd, dmn in sgeconf.PAIRS
            if values[cmd] != "builtin"]


#: what --hostbased adds to each ssh client wrapper: no method but host-based is tried (ssh would otherwise
#: fall back to the user's key, or ask for a password in the pseudo-terminal of the interactive slots)
HOSTBASED_ONLY = ("PreferredAuthentications=hostbased", "PubkeyAuthentication=no", "PasswordAuthentication=no",
                  "KbdInteractiveAuthentication=no", "GSSAPIAuthentication=no")


def hostbased_only(cases):
    """The job sshd cases, their client wrappers told to authenticate host-based only; AdminError if none."""
    def ssh_wrapper(command):
        program = sgeconf.program(command)
        return program is not None and methods.ENTRY_POINTS.get(os.path.basename(program), ("",))[0] == "ssh"
    chosen = [c for c in cases if sgeconf.needs_job_stack(c.daemon) and ssh_wrapper(c.command)]
    if not chosen:
        raise AdminError("--hostbased: no slot here runs this project's ssh wrapper against the job sshd (sgewrap "
                         "config ssh --tight --hostbased --apply, or name ssh --tight)", UNREADABLE)
    for case in chosen:
        case.command += "".join(" --ssh-option=" + option for option in HOSTBASED_ONLY)
        case.hostbased = True
    return chosen


def hostbased_missing():
    """What check would say is missing for host-based logins here (sshtrust.hostbased_problems)."""
    from . import hostfacts, sshtrust
    try:
        hosts = sshtrust.chosen_hosts(sshtrust.hosts_spec(), sshtrust.cluster_hosts())
    except AdminError:
        hosts = []
    return sshtrust.hostbased_problems(hostfacts.load(), hosts)


def configured_cases():
    """The slots configured on this host (qconf): every pair whose command is not builtin."""
    glob = sgeconf.parse(qconf_show("global"), "global")
    hosts = {h: None for h in qconf_list()}
    name = config_of(this_host(), hosts)
    local = sgeconf.parse(qconf_show(name), name) if name else None
    cases = []
    for slot, cmd, dmn in sgeconf.PAIRS:
        c, d = effective(glob, local, cmd), effective(glob, local, dmn)
        if c == "builtin" and d == "builtin":
            continue
        cases.append(Case(sgeconf.classify(c, cmd), slot, c, d))
    return cases


# --- syslog: where daemon-side errors go -----------------------------------------------------


class SyslogCapture:
    """The log lines written while the selftest runs: new lines of the log files, or /dev/log itself."""

    def __init__(self):
        self.lines = []
        self._sock = None
        self._offsets = {}
        if not os.path.exists(SYSLOG_SOCKET) and os.geteuid() == 0:
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                sock.bind(SYSLOG_SOCKET)
                os.chmod(SYSLOG_SOCKET, 0o666)
                self._sock = sock
                self._ino = os.stat(SYSLOG_SOCKET).st_ino
                threading.Thread(target=self._listen, daemon=True).start()
            except OSError:
                self._sock = None
        for path in LOG_FILES:
            try:
                self._offsets[path] = os.path.getsize(path)
            except OSError:
                pass

    def _listen(self):
        while True:
            try:
                data = self._sock.recv(8192)
            except OSError:
                return
            self.lines.append(re.sub(r"^<\d+>", "", data.decode("utf-8", "replace")).strip())

    def since(self, start):
        """Lines logged since index ``start`` of :attr:`lines` (and new lines in the log files)."""
        found = list(self.lines[start:])
        for path, offset in self._offsets.items():
            try:
                with open(path, "rb") as f:
                    f.seek(offset)
                    found += f.read().decode("utf-8", "replace").splitlines()
            except OSError:
                pass
        return found

    def mark(self):
        return len(self.lines)

    def close(self):
        if self._sock is not None:
            try:
                if os.stat(SYSLOG_SOCKET).st_ino == self._ino:
                    os.unlink(SYSLOG_SOCKET)
            except OSError:
                pass
            self._sock.close()


def daemon_log_line(lines):
    relevant = [line for line in lines if any(w in line for w in DAEMON_WORDS)]
    for line in reversed(relevant):
        if re.search(r"error|fatal|refus|fail|denied|bad |not |invalid|cannot|unable", line, re.I):
            return line
    return relevant[-1] if relevant else None


# --- the scratch job ----------------------------------------------------------------------------


#: where the scratch job's group id is picked (below nogroup's 65534), outside this host's gid_range
SCRATCH_GIDS = (65000, 65533)


def host_gid_ranges():
    """([(low, high)...] of this host's gid_range, where that was read) from the session reaper's cache,
    else from qconf; ([], why not) when neither says."""
    from ..rootside import gidrange
    try:
        data = gidrange.read()
    except gidrange.Unusable as err:
        data, why = None, str(err)
    else:
        why = "no %s" % gidrange.CACHE
    value = gidrange.line_for(data, gidrange.this_host()) if data is not None else None
    if value is not None and gidrange.parse_ranges(value) is not None:
        return gidrange.parse_ranges(value), gidrange.CACHE
    try:
        glob, hosts, _ = read_live_from_here(code=FAILED)
    except AdminError as err:
        return [], "%s, and %s" % (why, err)
    local = config_of(this_host(), hosts)
    value = effective(glob, hosts.get(local) if local else None, "gid_range")
    ranges = gidrange.parse_ranges((value or "").encode())
    return (ranges, "qconf -sconf") if ranges else ([], "%s, and qconf shows gid_range %r" % (why, value))


def carried_gids():
    """Every supplementary group id a running process carries."""
    from ..rootside import procs
    return set().union(*(procs.groups_of(int(p)) for p in os.listdir("/proc") if p.isdigit()))


def free_gid(ranges=(), low=SCRATCH_GIDS[0], high=SCRATCH_GIDS[1]):
    """A group id for the scratch job: no group of this host's, carried by no process, and outside this
    host's gid_range (``ranges``).  Not inside it: execd hands out ids of gid_range looking at nothing but
    its own jobs (Grid Engine's exec_job.c, get_next_addgrpid), so an id picked there could be given to a
    job starting meanwhile, and the scratch session's close would kill that job's processes by it.
    Outside, the reaper leaves the id alone (sgewrap.rootside.gidrange; the job sshd's cgroup still ends
    the session's processes) and the selftest proves what it checks: the session carries the group."""
    import grp
    used = {g.gr_gid for g in grp.getgrall()} | carried_gids()
    candidates = [g for g in range(low, high + 1)
                  if g not in used and not any(lo <= g <= hi for lo, hi in ranges)]
    if not candidates:
        raise AdminError("no unused group id outside gid_range in %d-%d for the scratch job (give --gid)" % (low, high))
    return random.choice(candidates)


def make_job_dir(gid, token, user):
    """A root-owned scratch job spool directory named like execd's (``active_jobs/JOB.TASK``): addgrpid,
    environment, config (the job's owner), the probe; its path.  The top goes with rmtree(dirname(dirname))."""
    top = tempfile.mkdtemp(prefix="sgewrap-selftest.", dir="/tmp")
    path = os.path.join(top, "active_jobs", "1.1")
    os.makedirs(path)
    for d in (top, os.path.dirname(path), path):
        os.chmod(d, 0o755)
    files = {
        "config": ("job_owner=%s\njob_id=1\nja_task_id=1\njob_name=sgewrap-selftest\n" % user, 0o644),
        "addgrpid": ("%d\n" % gid, 0o644),
        "environment": ("SGEWRAP_SELFTEST=%s\n" % token, 0o644),
        # the marker is split in two so that a terminal echoing typed input never shows it
        "probe": ('#!/bin/sh\n# sgewrap selftest: stands in for qrsh_starter (argument: the job directory)\n'
                  'echo "%s""%s uid=$(id -u) groups=$(id -G) env=[${SGEWRAP_SELFTEST:-}]"\n'
                  % (MARKER[:8], MARKER[8:]), 0o755),
    }
    for name, (text, mode) in files.items():
        with open(os.path.join(path, name), "w") as f:
            f.write(text)
        os.chmod(os.path.join(path, name), mode)
    return path


def user_env(user, extra=None):
    pw = pwd.getpwnam(user)
    env = {"HOME": pw.pw_dir, "USER": user, "LOGNAME": user, "SHELL": pw.pw_shell,
           "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "TERM": "xterm"}
    for name in ("SGE_ROOT", "SGE_CELL", "SGE_QMASTER_PORT", "SGE_EXECD_PORT"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    env.update(extra or {})
    return env


def sge_words(slot, host, port, jobdir):
    """What SGE appends to the command of ``slot`` (the probe in place of qrsh_starter)."""
    if slot == "qlogin":
        return [host, str(port)]
    if slot == "rlogin":
        return ["-p", str(port), host]
    return ["-p", str(port), host, "exec", "'%s'" % os.path.join(jobdir, "probe"), "'%s'" % jobdir]


def run_in_pty(argv, env, typed, expect, timeout):
    """Run argv on a new pseudo-terminal, type ``typed``; (exit status or None, output) once ``expect``
    (a compiled regex) matched and the program ended, or at the timeout."""
    master, slave = os.openpty()
    proc = subprocess.Popen(["/usr/bin/setsid", "-c"] + argv, stdin=slave, stdout=slave, stderr=slave,
                            env=env, close_fds=True)
    os.close(slave)
    output = b""
    deadline = time.monotonic() + timeout
    sent, matched_at = False, None
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    data = b""
                if not data:
                    break
                output += data
            if not sent and (output or time.monotonic() > deadline - timeout + 0.5):
                os.write(master, typed.encode())
                sent = True
            if matched_at is None and expect.search(output.decode("utf-8", "replace")):
                matched_at = time.monotonic()
            if matched_at is not None and (proc.poll() is not None or time.monotonic() - matched_at > 3
                                           or not expect.pattern.startswith(MARKER)):
                break
            if not ready and proc.poll() is not None:
                break
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
        status = proc.wait()
    return status, output.decode("utf-8", "replace").replace("\r", "")


def run_case(case, user, host, timeout, log, gid, address="127.0.0.1"):
    token = "%08x" % random.getrandbits(32)
    start = time.monotonic()
    mark = log.mark()
    jobdir = make_job_dir(gid, token, user)
    try:
        return _run(case, user, host, timeout, log, gid, token, jobdir, mark, address)
    finally:
        case.seconds = time.monotonic() - start
        shutil.rmtree(os.path.dirname(os.path.dirname(jobdir)), ignore_errors=True)


def _fail(case, message, log=None, mark=0):
    case.passed = False
    line = daemon_log_line(log.since(mark)) if log is not None else None
    case.detail = message + ("; daemon log: %s" % line if line else "")
    return case


def _run(case, user, host, timeout, log, gid, token, jobdir, mark, address):
    daemon = case.daemon.split(" ")     # the shepherd splits on single spaces, no quoting
    if case.daemon == "builtin" or sgeconf.is_unset(case.daemon):
        return _fail(case, "%s_daemon is %s: no daemon to run (only SGE's builtin protocol fits)" % (
            case.slot, case.daemon or "unset"))
    if not os.path.isabs(daemon[0]):
        return _fail(case, "daemon %s is not an absolute path (the shepherd refuses it)" % daemon[0])
    if not (os.path.isfile(daemon[0]) and os.access(daemon[0], os.X_OK)):
        return _fail(case, "daemon %s is %s" % (daemon[0], "not executable" if os.path.exists(daemon[0])
                                                else "missing"))
    command = sgeconf.words(case.command)
    if not command or command == ["builtin"]:
        return _fail(case, "%s_command is %s: nothing to run" % (case.slot, case.command))
    pw = pwd.getpwnam(user)
    job_env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": pw.pw_dir, "USER": user, "LOGNAME": user,
               "SHELL": pw.pw_shell, "JOB_ID": "0", "JOB_NAME": "sgewrap-selftest", "SGE_TASK_ID": "undefined",
               "QUEUE": "selftest", "HOSTNAME": host, "REQUEST": "sgewrap-selftest", "ENVIRONMENT": "BATCH",
               "SGE_JOB_SPOOL_DIR": jobdir, "SGE_STDIN_PATH": "/dev/null"}
    for name in ("SGE_ROOT", "SGE_CELL"):
        if os.environ.get(name):
            job_env[name] = os.environ[name]
    with Shepherd(daemon, env=job_env, cwd=jobdir, accept_timeout=timeout, address=address) as shepherd:
        argv = command + sge_words(case.slot, host, shepherd.port, jobdir)
        env = user_env(user)
        if case.slot == "rsh":
            try:
                proc = as_user(user, argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=timeout, start_new_session=True)
            except subprocess.TimeoutExpired:
                return _fail(case, "no answer within %d s" % timeout, log, mark)
            status, output, errors = proc.returncode, proc.stdout.decode("utf-8", "replace"), \
                proc.stderr.decode("utf-8", "replace")
        else:
            probe = os.path.join(jobdir, "probe")
            typed = "%s %s; exit\n" % (probe, jobdir)
            expect = re.compile(r"login:\s*$" if case.method == "telnet" else _PROBE_RE.pattern)
            status, output = run_in_pty(["/usr/sbin/runuser", "-u", user, "--"] + argv, env, typed, expect,
                                        timeout)
            errors = output
            if case.method == "telnet" and expect.search(output):
                case.passed = True
                case.detail = "telnetd's login prompt reached (a password is needed beyond it: not typed)"
                return case
        found = _PROBE_RE.search(output)
        if not found:
            last = [line for line in errors.splitlines() if line.strip()]
            tail = ": " + last[-1].strip() if last else ", and the probe did not run remotely"
            return _fail(case, "client exit %s%s" % (status, tail), log, mark)
        uid, groups = int(found.group(1)), found.group(2).split()
        if uid != pw.pw_uid:
            return _fail(case, "the remote session ran as uid %d, not %s (%d)" % (uid, user, pw.pw_uid))
        if sgeconf.is_tight(case.daemon) and str(gid) not in groups:
            problems = pam.job_stack_problems() if sgeconf.needs_job_stack(case.daemon) else []
            why = ": " + "; ".join(problems) if problems else ": is pam_sge-qrsh-setup in sshd's auth stack?"
            return _fail(case, "the remote session lacks the job's group %d (groups %s)%s" % (
                gid, " ".join(groups), why), log, mark)
        if case.slot == "rsh" and status != 0:
            return _fail(case, "the probe ran but the client exited %s" % status, log, mark)
    case.passed = True
    case.detail = "ran as %s" % user + (", with the job's group %d" % gid if sgeconf.is_tight(case.daemon) else "") \
        + (", authenticated host-based only" if case.hostbased else "")
    return case


def own_address(name):
    """(name, the address it resolves to) for --hostbased: ssh tells the job sshd the host name its side of the
    connection resolves back to, so the stand-in listens where this host's name points (127.0.1.1 on a stock
    Debian host, the cluster address elsewhere), as the real shepherd, which listens on every address, is
    reached; 127.0.0.1 would name the client "localhost", which no equivalence file lists."""
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except OSError as err:
        raise AdminError("--hostbased: this host's name %s does not resolve (%s)" % (name, err), UNREADABLE)
    addresses = [i[4][0] for family in (socket.AF_INET, socket.AF_INET6) for i in infos if i[0] == family]
    if not addresses:
        raise AdminError("--hostbased: this host's name %s has no address" % name, UNREADABLE)
    return name, addresses[0]


def default_host():
    """This host's name if it resolves to loopback (where the stand-in shepherd listens), else localhost."""
    name = this_host()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, None)}
    except OSError:
        return "localhost"
    return name if any(a.startswith("127.") or a == "::1" for a in addresses) else "localhost"


class Selftest(Command, cli.Application):
    """Prove on this execution host that each method works end to end, without a job

    As root: a stand-in shepherd on loopback hands one connection to the
    configured daemon (job-like environment, scratch job spool directory with
    an addgrpid); the configured command runs as --user with SGE's exact
    arguments.  Without METHOD the entries configured for this host are
    tested.  With a job sshd among them it then says, for every other
    execution host, what that host's recorded facts (sgewrap facts) tell of
    its job sshd.  Exit 0: every method passed; 1: one failed (or another
    host's job sshd would run outside the job PAM service); 2: cannot start.
    """

    user = cli.SwitchAttr("--user", str, argname="USER", mandatory=True,
                          help="the unprivileged user who runs the client (needs working ssh/rsh trust)")
    tight = cli.Flag("--tight", help="with a named ssh: through the job sshd and its PAM service (tight "
                                     "integration)")
    hostbased = cli.Flag("--hostbased", help="ssh clients may authenticate host-based only (no user key, no "
                                             "password): proves config ssh --tight --hostbased for a user without a "
                                             "key")
    wrappers = cli.SwitchAttr("--wrappers", str, argname="DIR",
                              help="with a named METHOD: where the wrappers are (default: next to this sgewrap)")
    host = cli.SwitchAttr("--host", str, argname="NAME",
                          help="the host name the client is given (default: this host's, if it is loopback)")
    timeout = cli.SwitchAttr("--timeout", cli.Range(1, 600), argname="SECONDS", default=30,
                             help="per slot")
    gid = cli.SwitchAttr("--gid", cli.Range(1, 2 ** 31 - 1), argname="GID",
                         help="the scratch job's addgrpid (default: an unused one of 65000-65533 outside this host's "
                              "gid_range: execd could give one inside to a job meanwhile)")

    def main(self, *names):
        if os.geteuid() != 0:
            raise AdminError("selftest must run as root (it starts the daemons the way the shepherd does)",
                             UNREADABLE)
        try:
            pw = pwd.getpwnam(self.user)
        except KeyError:
            raise AdminError("no user %r" % self.user, UNREADABLE)
        if pw.pw_uid == 0:
            raise AdminError("--user must be an unprivileged user, not %s" % self.user, UNREADABLE)
        for name in names:
            if name not in sgeconf.METHODS:
                raise AdminError("unknown METHOD %r: expected one of %s" % (name, ", ".join(sgeconf.METHODS)),
                                 UNREADABLE)
        if self.tight and names and "ssh" not in names:
            raise AdminError("--tight applies to ssh only", UNREADABLE)
        if self.hostbased and names and not (self.tight and names == ("ssh",)):
            raise AdminError("--hostbased goes with ssh --tight (host-based logins are the job sshds')", UNREADABLE)
        if names:
            wrappers = os.path.abspath(self.wrappers) if self.wrappers else default_wrappers()
            cases, skipped = [], []
            for name in names:
                if name == "builtin":
                    skipped.append(name)
                    continue
                cases += cases_for(name, wrappers, self.tight and name == "ssh")
        else:
            if self.tight or self.wrappers:
                raise AdminError("--tight and --wrappers go with a named METHOD (without one the configured "
                                 "entries are tested)", UNREADABLE)
            cases, skipped = configured_cases(), []
            if not cases:
                raise AdminError("every slot of this host's configuration is builtin: nothing to test (name a "
                                 "METHOD to test it before applying it)", UNREADABLE)
        if self.hostbased:
            cases = hostbased_only(cases)
        if self.hostbased:
            host, address = own_address(self.host or this_host())
        else:
            host, address = self.host or default_host(), "127.0.0.1"
        ranges, source = host_gid_ranges()
        if not ranges:
            sys.stderr.write("selftest: this host's gid_range is not known (%s): the scratch job's group id may "
                             "be one of it\n" % source)
        gid = self.gid or free_gid(ranges)
        if any(low <= gid <= high for low, high in ranges):
            sys.stderr.write("selftest: warning: --gid %d is inside this host's gid_range (%s): execd may give it to "
                             "a job meanwhile, and the scratch session's close would kill that job's processes\n"
                             % (gid, source))
        log = SyslogCapture()
        # testing the job sshd before `config --apply` wrote its PAM service: lend it one for the run
        lent = None
        job_daemons = [c.daemon for c in cases if sgeconf.needs_job_stack(c.daemon)]
        if job_daemons and names and not os.path.exists(pam.JOB_PAM_FILE):
            lent = pam.JOB_PAM_FILE
            pam.install_job_stack(os.path.dirname(sgeconf.program(job_daemons[0])), lent)
            sys.stderr.write("selftest: wrote %s for this run (sgewrap config --apply writes it for good)\n" % lent)
        try:
            for i, case in enumerate(cases, 1):
                sys.stderr.write("selftest [%d/%d] %s %s_command -> %s_daemon ... " % (
                    i, len(cases), case.label, case.slot, case.slot))
                sys.stderr.flush()
                run_case(case, self.user, host, self.timeout, log, gid, address)
                sys.stderr.write("%s (%.2f s)\n" % ("pass" if case.passed else "FAIL", case.seconds))
        finally:
            log.close()
            if lent:
                pam.remove_job_stack(lent)
        if self.hostbased and not all(c.passed for c in cases):
            for problem in hostbased_missing():
                sys.stderr.write("selftest: host-based: %s\n" % problem)
        rows = [[c.label, c.slot, "pass" if c.passed else "FAIL", "%.2f s" % c.seconds, c.detail] for c in cases]
        rows += [[name, "-", "skipped", "-", "SGE's own protocol: no wrapper or daemon to test"] for name in skipped]
        print(table(["METHOD", "SLOT", "RESULT", "TIME", "DETAIL"], rows), end="")
        others_fail = other_hosts(job_daemons) if job_daemons else False
        return OK if all(c.passed for c in cases) and not others_fail else FAILED


def other_hosts(job_daemons):
    """The other execution hosts, as their roots recorded them (sgewrap facts): whether each one's job sshd
    would run under the job PAM service with the daemon values in force there; True if one would not."""
    from . import hostfacts
    from .common import run
    try:
        glob, hosts, skipped = read_live_from_here()
        rc, out, _ = run([sgeconf.QCONF, "-sel"], code=UNREADABLE, retcode=None)
        facts = hostfacts.load()
    except AdminError as err:
        print("other execution hosts: not looked at (%s)" % err)
        return False
    if skipped:
        print("other execution hosts: not judged here: %s (qconf -sconf fails on this host for them: their "
              "names do not resolve here; run selftest there)" % ", ".join(skipped))

    def daemons_of(host):
        local = hosts.get(host)
        return [(k, local.get(k) if local is not None and k in local else glob.get(k))
                for k in sgeconf.SLOTS if k.endswith("_daemon")]
    verdicts = hostfacts.judge([h for h in out.split() if h not in skipped] if rc == 0 else [], this_host(), facts,
                               daemons_of)
    if verdicts:
        print("other execution hosts, as their roots recorded them (sgewrap facts):")
    for severity, host, _, message in verdicts:
        print("  %s: %s" % ({"note": "ok"}.get(severity, severity), message))
    return any(v[0] == "error" for v in verdicts)
