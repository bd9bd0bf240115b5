"""``node_access adopt``: an ssh login joins the user's job on this host, or is refused.

Grid Engine's pam_slurm_adopt.  In the PAM service of the site's sshd
(``/etc/pam.d/sshd``; ``sgewrap node-access --adopt --apply`` adds it)::

    auth     required  pam_sge-qrsh-setup.so
    account  [success=1 default=ignore] pam_succeed_if.so quiet uid < 1000
    account  required  pam_exec.so quiet stdout /W/node_access adopt [OPTIONS]

The plan, for ``PAM_TYPE=account`` (pam_exec runs it as root, a child of the
connection's privileged sshd process, the *monitor*; nothing is read from the
user's environment):

1. the user: ``PAM_USER``; below ``--ignore-below-uid`` (1000) or in an
   ``--admin-group``: admitted, not tied;
2. the jobs: every running shepherd (real uid and executable,
   :mod:`sgewrap.rootside.procs`) working in this host's execd ``active_jobs``
   (``--active-jobs=DIR``, default Debian's
   /var/spool/gridengine/execd/HOST/active_jobs) whose task's trusted spool
   names the user as owner: job tasks and the tasks of parallel jobs alike
   (on a slave host a parallel job's tasks each have their own shepherd and
   spool);
3. the choice: the task ``qssh`` recorded for this very connection (its
   peer address and port, read from the monitor's socket in ``/proc``;
   ``qssh_ADDRESS_PORT=TASK@HOST`` in the context of one of the user's
   running jobs, asked of qmaster: ``qstat -u USER -s rs``, ``qstat -j``)
   -- a record whose task does not run here, or two records, refuse;
   without a record, the job the user named in ``~/.sge_adopt_job`` (a job number
   or ``JOB.TASK``; a regular file of the user's, read as the user with
   O_NOFOLLOW|O_NONBLOCK within 2 s) -- a job that is not theirs or not here
   is refused, never swapped, and so is a choice that is there but cannot be
   read (a link, not the user's, no answer in time) -- else the newest (the
   latest-started shepherd);
4. the tie: ``sge-qrsh-setup.<monitor>`` names that task's spool directory;
   pam_sge-qrsh-setup, in the session's own process, adds the job's group
   and environment, so Grid Engine accounts the session's processes and kills
   them when the job ends (``ENABLE_ADDGRP_KILL``);
5. no job: ``--action-no-jobs`` deny (default) or allow untied; a job
   chosen but the tie impossible (its setup file cannot be written):
   ``--action-adopt-failure`` deny (default: a session outside its job never
   starts) or allow untied -- and so does a parallel job with slots on this
   host but no task started here yet (execd made its ``active_jobs/JOB.TASK``
   directory on delivery, empty until a task starts; its owner is then asked
   of qmaster, ``qstat -j JOB``): there is no task to join yet; and so does a
   login for which qmaster does not answer in time (3 s a ``qstat``, 5 s in
   all): it cannot be decided.

``--warn-only`` refuses nobody: it ties where it can and logs what it would
have refused.  A refusal prints one line for the user (pam_exec ``stdout``)
and logs it.  The monitor's setup file is removed when the monitor exits, by
a watcher forked from this hook (:func:`sgewrap.rootside.session.watch`; it never
kills anything of an adopted login: the login dies with its job).  There is
no ``close_session`` line: in the site's stack the PAM environment then holds
the user's ``~/.pam_environment`` (``pam_env user_readenv=1``), and a root
program started with it is the user's (``LD_PRELOAD``); a ``close_session``
call (a block written by 0.2) does nothing.
"""
import os

from . import frame, jobspool, procs, session, setupfile

OK, REFUSE = 0, 1
CHOICE_FILE = ".sge_adopt_job"
#: how long reading it may take (seconds), and how many bytes it may hold
CHOICE_TIMEOUT, CHOICE_BYTES = 2.0, 64


class Decision(Exception):
    """Not adopted: ``allowed`` (per the policy) and why."""

    def __init__(self, why, allowed):
        super().__init__(why)
        self.allowed = allowed


def exempt(user, opts):
    """Why ``user`` is never refused, or None."""
    import grp
    import pwd
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return None
    if pw.pw_uid < opts.ignore_below_uid:
        return "uid %d is below %d" % (pw.pw_uid, opts.ignore_below_uid)
    for name in opts.admin_group:
        try:
            group = grp.getgrnam(name)
        except KeyError:
            continue
        if user in group.gr_mem or pw.pw_gid == group.gr_gid:
            return "member of the admin group %s" % name
    return None


def running_tasks(user, trust, active_jobs):
    """The user's tasks running on this host (their spool below one of this host's ``active_jobs``
    directories), newest first."""
    roots = [os.path.realpath(d).rstrip("/") + "/" for d in active_jobs]
    found = []
    for pid, spool in procs.shepherds().items():
        if not any(os.path.realpath(spool).startswith(root) for root in roots):
            continue
        try:
            job = jobspool.read_job(spool, trust, max_bytes=setupfile.MAX_SPOOL_BYTES)
        except jobspool.NoJob:
            continue
        st = procs.stat_of(pid)
        if job.owner == user and st is not None:
            job.shepherd = (pid, st.start)
            found.append((st.start, job))
    return [job for _, job in sorted(found, key=lambda item: item[0], reverse=True)]


class Undecided(Exception):
    """qmaster did not say in time whose a job is; the message says which."""


def waiting_slots(user, trust, active_jobs):
    """Job numbers of the user's parallel jobs delivered to this host whose task here has not started:
    ``active_jobs/JOB.TASK`` directories (trusted) holding no task, owned (says qmaster) by ``user``.
    Asked only when no task of the user's runs here, and only until one is found.  Each ``qstat -j``
    gets :data:`QSTAT_TIMEOUT` seconds and all of them :data:`QSTAT_BUDGET`: a login must not wait on
    a slow qmaster once per empty directory.  Undecided when one went unanswered."""
    import time
    deadline = time.monotonic() + QSTAT_BUDGET
    found = []
    for directory in active_jobs:
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for name in names:
            job_id = name.split(".")[0]
            path = os.path.join(directory, name)
            # a task's own spool (a config file: a master task starting or ending) is no waiting slot
            if not job_id.isdigit() or not os.path.isdir(path) or os.path.lexists(os.path.join(path, "config")):
                continue
            try:
                jobspool.spool_dir({"SGE_JOB_SPOOL_DIR": path}, trust)
            except jobspool.NoJob:
                continue
            if [d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d))]:
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise Undecided("qstat -j took more than %g s for the jobs before %s" % (QSTAT_BUDGET, job_id))
            if job_owner(job_id, trust.sge_root, min(QSTAT_TIMEOUT, left)) == user:
                found.append(job_id)
                return found
    return found


#: seconds for one ``qstat -j``, and for all of one login
QSTAT_TIMEOUT, QSTAT_BUDGET = 3.0, 5.0


def qstat(args, sge_root, timeout=QSTAT_TIMEOUT):
    """The standard output of ``qstat ARGS`` (Grid Engine's own, from ``sge_root``, with a fixed
    environment), or None when it cannot run; Undecided if it did not answer within ``timeout`` seconds
    (it is killed then)."""
    import subprocess
    from .. import locate
    if not sge_root:
        return None
    cells = jobspool.bootstrap_files(sge_root)
    arcs = [a for a in locate.arch_guesses() if os.access(os.path.join(sge_root, "bin", a, "qstat"), os.X_OK)]
    if not cells or not arcs:
        return None
    cell = os.path.basename(os.path.dirname(os.path.dirname(cells[0])))
    try:
        return subprocess.run([os.path.join(sge_root, "bin", arcs[0], "qstat")] + list(args),
                              env={"SGE_ROOT": sge_root, "SGE_CELL": cell, "PATH": "/usr/bin:/bin"},
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout).stdout
    except subprocess.TimeoutExpired:
        raise Undecided("qstat %s did not answer within %.1f s" % (" ".join(args)[:60], timeout))
    except (OSError, subprocess.SubprocessError):
        return None


def job_owner(job_id, sge_root, timeout=QSTAT_TIMEOUT):
    """The owner of job ``job_id`` as qmaster knows it (``qstat -j``), or None; Undecided if qstat did
    not answer within ``timeout`` seconds (it is killed then)."""
    out = qstat(["-j", job_id], sge_root, timeout)
    if out is None:
        return None
    for line in out.splitlines():
        if line.startswith("owner:"):
            return line.split(":", 1)[1].strip()
    return None


#: the context variable ``qssh`` records a connection under (:mod:`sgewrap.jobssh`): PREFIX ADDRESS _ PORT
RECORD_PREFIX = "qssh_"


def record_name(peer):
    """The context variable that names the connection from ``peer`` (address, port)."""
    return "%s%s_%d" % (RECORD_PREFIX, peer[0], peer[1])


def job_blocks(text):
    """[(job number, owner, {context variable: value})] of ``qstat -j JOB,...`` output."""
    found = []
    for block in text.split("\n=" + "=" * 20):
        fields = {}
        for line in block.splitlines():
            name, sep, value = line.partition(":")
            if sep and name and not name[0].isspace():
                fields.setdefault(name.strip(), value.strip())
        if fields.get("job_number", "").isdigit() and "owner" in fields:
            context = {}
            for pair in fields.get("context", "").split(","):
                name, sep, value = pair.partition("=")
                if sep:
                    context[name] = value
            found.append((fields["job_number"], fields["owner"], context))
    return found


def recorded(user, peer, sge_root):
    """[(job number, task number)] the user's running or suspended jobs record for the connection from
    ``peer``: only the user's own jobs are asked (``qstat -u USER -s rs``, then ``qstat -j`` of them), so
    a record written on anyone else's job never counts.  Two queries, :data:`QSTAT_TIMEOUT` seconds each,
    :data:`QSTAT_BUDGET` in all; Undecided when qmaster did not answer in time."""
    import time
    deadline = time.monotonic() + QSTAT_BUDGET
    listing = qstat(["-u", user, "-s", "rs"], sge_root)
    if listing is None:
        raise Undecided("qstat cannot run here: cannot tell whether qssh recorded this connection")
    jobs = sorted({line.split()[0] for line in listing.splitlines() if line.split()[:1] != []
                   and line.split()[0].isdigit()}, key=int)
    if not jobs:
        return []
    left = deadline - time.monotonic()
    if left <= 0:
        raise Undecided("qstat -u %s took more than %g s" % (user, QSTAT_BUDGET))
    text = qstat(["-j", ",".join(jobs)], sge_root, min(QSTAT_TIMEOUT, left))
    if text is None:
        raise Undecided("qstat -j cannot run here: cannot tell whether qssh recorded this connection")
    name = record_name(peer)
    found = []
    for job, owner, context in job_blocks(text):
        if owner == user and job in jobs and name in context:
            task = context[name].split("@")[0]
            found.append((job, task if task.isdigit() else ""))
    return found


def recorded_task(records, tasks, peer):
    """The task a connection's record names, among the user's tasks here (the oldest of that job task's
    shepherds: a parallel job's tasks on this host end one by one, its first lives as long as the
    others); Decision (refused) when the record names none running here, or there are several records."""
    if len(records) > 1:
        raise Decision("%d of your jobs record this connection (%s:%d): %s; not guessing" % (
            len(records), peer[0], peer[1], ", ".join("%s.%s" % r for r in records)), False)
    job_id, task = records[0]
    mine = [j for j in tasks if j.job_id == job_id and j.key.split("/")[0] == "%s.%s" % (job_id, task)]
    if not mine:
        raise Decision("this connection is for job %s.%s (qssh), which has no task running on this host"
                       % (job_id, task), False)
    return mine[-1]


def named_job(user):
    """The job the user named in ~/.sge_adopt_job (a number or JOB.TASK), or None if they named none
    (no such file, or an empty one); Decision (refused) if the file is there but cannot be read.

    Read as the user, bounded in time (:func:`sgewrap.rootside.frame.read_as_user`): as root a
    root-squashed NFS home refuses the read, and a stalled NFS or FUSE home would stall the login.
    A choice that cannot be read is never taken for none: joining the newest job instead would put
    the login into a job its user did not name."""
    import pwd
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return None
    status, value = frame.read_as_user(pw, os.path.join(pw.pw_dir, CHOICE_FILE), CHOICE_TIMEOUT, CHOICE_BYTES)
    if status == frame.MISSING:
        return None
    if status == frame.UNREADABLE:
        raise Decision("~/%s cannot be read (%s): not guessing which job to join" % (CHOICE_FILE, value), False)
    return value.decode("ascii", "replace").strip() or None


def choose(user, tasks, wanted):
    """The task to join: the one named, else the newest; Decision when there is none to join."""
    if wanted is not None:
        job_id, _, task = wanted.partition(".")
        if not job_id.isdigit() or (task and not task.isdigit()):
            raise Decision("~/%s names %r, not a job number" % (CHOICE_FILE, wanted[:40]), False)
        mine = [j for j in tasks if j.job_id == job_id and (not task or j.key.split("/")[0] == wanted)]
        if not mine:
            raise Decision("you named job %s (~/%s), but no task of a job %s of yours runs on this host"
                           % (wanted, CHOICE_FILE, wanted), False)
        return mine[0]
    if not tasks:
        raise Decision("no job of yours runs on this host", None)
    return tasks[0]


class Verdict:
    """What to do with a login: join ``job``, or admit untied (``allowed``) or refuse, and ``why``."""

    __slots__ = ("job", "allowed", "why", "tasks", "wanted", "recorded")

    def __init__(self, job=None, allowed=False, why="", tasks=(), wanted=None, recorded=False):
        self.job, self.allowed, self.why, self.tasks, self.wanted = job, allowed, why, tasks, wanted
        self.recorded = recorded


def decide(user, opts, trust, peer=None):
    """The Verdict on a login of a user not :func:`exempt` on this host now (steps 2, 3, 5 of the plan);
    ``peer``: the connection's (address, port), whose qssh record, if any, decides."""
    active_jobs = jobspool.active_jobs_dirs(opts.active_jobs)
    tasks = running_tasks(user, trust, active_jobs)
    if peer is not None:
        try:
            records = recorded(user, peer, trust.sge_root)
        except Undecided as why:
            return Verdict(allowed=opts.action_adopt_failure == "allow", why="cannot tell which job this "
                           "connection is for: %s" % why, tasks=tasks)
        if records:
            try:
                return Verdict(job=recorded_task(records, tasks, peer), tasks=tasks, recorded=True)
            except Decision as decision:
                return Verdict(allowed=False, why=str(decision), tasks=tasks, recorded=True)
    if not tasks:
        try:
            waiting = waiting_slots(user, trust, active_jobs)
        except Undecided as why:
            return Verdict(allowed=opts.action_adopt_failure == "allow", why="cannot tell whether a parallel job of "
                           "yours has slots here: %s" % why)
        if waiting:
            return Verdict(allowed=opts.action_adopt_failure == "allow", why="your parallel job %s has slots "
                           "here but no task started yet: nothing to join" % waiting[0])
    try:
        wanted = named_job(user)
    except Decision as decision:
        return Verdict(allowed=False, why=str(decision), tasks=tasks)
    try:
        return Verdict(job=choose(user, tasks, wanted), tasks=tasks, wanted=wanted)
    except Decision as decision:
        allowed = decision.allowed if decision.allowed is not None else opts.action_no_jobs == "allow"
        return Verdict(allowed=allowed, why=str(decision), tasks=tasks, wanted=wanted)


def account(environ, opts, trust, log):
    """Admit (0) or refuse (1) the login; tie it to a job where one is chosen."""
    user = environ.get("PAM_USER", "")
    if not jobspool.valid_user(user):
        return _refuse(None, "no valid user name", log, opts)
    why = exempt(user, opts)
    if why:
        log("info", "adopt: %s admitted untied (%s)" % (user, why))
        return OK
    try:
        monitor, monitor_stat = session.monitor()
    except session.Refused:
        return _refuse(user, "the process above the hook is not sshd's root process", log, opts)
    peer = None
    if opts.job_records:        # sgewrap job-ssh: qssh's record for this connection decides
        peer = procs.connection_peer(monitor, monitor_stat.start)
        if peer is None:
            return _refuse(user, "the connection's address cannot be read from sshd's socket", log, opts)
    source = "%s port %d" % peer if peer else None
    verdict = decide(user, opts, trust, peer)
    if verdict.job is None:
        if verdict.allowed:
            log("notice", "adopt: %s%s admitted untied: %s" % (user, " from " + source if source else "",
                                                               verdict.why))
            return OK
        return _refuse(user, verdict.why, log, opts, source)
    job = verdict.job
    try:
        session.tie(monitor, monitor_stat.start, job.spool, opts.setup_dir, log, shepherd=job.shepherd)
    except setupfile.SetupError as err:
        if opts.action_adopt_failure == "allow":
            log("warning", "adopt: %s admitted untied: job %s chosen, but %s" % (user, job.key, err))
            return OK
        return _refuse(user, "your job %s runs here, but the session cannot join it: %s" % (job.key, err),
                       log, opts)
    how = "as qssh recorded" if verdict.recorded else "named in ~/%s" % CHOICE_FILE if verdict.wanted else "the newest"
    log("info", "adopt: %s's ssh session%s joins job %s (gid %d, sshd %d, %s)" % (
        user, " from " + source if source else "", job.key, job.gid, monitor, how))
    return OK


def _refuse(user, why, log, opts, source=None):
    where = " from %s" % source if source else ""
    if opts.warn_only:
        log("warning", "adopt (--warn-only): would refuse %s%s: %s" % (user, where, why))
        return OK
    log("notice", "adopt: refused %s%s: %s" % (user, where, why))
    try:
        os.write(1, ("Access denied by Grid Engine's node_access: %s.\n" % why).encode("utf-8", "replace"))
    except OSError:
        pass
    return REFUSE


def explain(user, opts, trust):
    """Lines saying what the hook would do with a login of ``user`` on this host now, and why."""
    why = exempt(user, opts)
    if why:
        return ["%s: admitted, not tied (%s)" % (user, why)]
    verdict = decide(user, opts, trust)
    lines = ["%s's tasks running here, newest first: %s" % (
        user, ", ".join("%s (gid %d)" % (j.key, j.gid) for j in verdict.tasks) or "none")]
    if verdict.wanted:
        lines.append("named in ~/%s: %s" % (CHOICE_FILE, verdict.wanted))
    if verdict.job is None:
        state = "admitted, not tied" if verdict.allowed or opts.warn_only else "REFUSED"
        lines.append("%s: %s: %s%s" % (user, state, verdict.why, " (--warn-only)" if opts.warn_only else ""))
    else:
        job = verdict.job
        lines.append("%s: admitted, joins job %s (gid %d, spool %s)" % (user, job.key, job.gid, job.spool))
    return lines


def run(environ, opts, trust, log):
    if environ.get("PAM_TYPE", "") != "account":
        return OK
    return account(environ, opts, trust, log)
