"""``node_access session``: tie each job sshd session to its job (a ``pam_exec`` hook).

Grid Engine's shepherd starts ``sge-sshd -i`` (the real sshd under a name of
its own, so it uses the PAM service ``/etc/pam.d/sge-sshd``, never the site's
``/etc/pam.d/sshd``).  That service, written by ``sgewrap config ssh --tight
--apply``, runs this hook in its account and session stacks::

    auth     required  pam_sge-qrsh-setup.so
    account  required  pam_exec.so quiet /W/node_access session
    session  optional  pam_exec.so quiet type=close_session /W/node_access session

The plan, for ``PAM_TYPE=account`` (pam_exec runs us as root, as a child of
sshd's privileged per-connection process, the *monitor*):

1. the connection: our parent is the monitor M (its PID and start time);
2. the job: M's parent must be a shepherd (:mod:`sgewrap.procs`: real uid
   0, executable ``sge_shepherd`` owned by root), whose working directory is
   the task's spool directory, trusted only as :mod:`sgewrap.jobspool` says;
3. the user: ``PAM_USER`` (set by PAM from the authenticated user, not by
   the client) must be the job's owner (``job_owner`` of the spool's
   ``config``): another user who reaches the shepherd's port is refused;
4. the tie: ``sge-qrsh-setup.M`` names the spool directory
   (:mod:`sgewrap.setupfile`); the module then adds the job's group and
   environment in the session's own process, found through ``getppid()``.

Any step that fails refuses the session (exit 1: pam_exec fails, the
account stack fails, sshd closes the connection) and logs why: a session
that would run outside its job never starts.  ``--fail-open`` lets it start
untied instead (logged).  For ``PAM_TYPE=close_session`` the file of M is
removed (a killed sshd leaves it to the next sweep), and every process still
carrying the task's group is killed: the session was the whole task (a
``qrsh -inherit``, ``qrsh`` or ``qlogin``), so what it left behind would run
on outside Grid Engine.  Measured: ``qdel`` of a job whose task runs a command
in a process group of its own (GNU parallel's remote worker does ``setpgrp``)
left that command running, because the shepherd of a task started through
``qrsh_starter`` signals only its process group at the first kill and skips
its own group kill (``shepherd.c``: ``is_qrsh``).  Other PAM types: no-op.
"""
import os

from . import jobspool, procs, setupfile

OK, REFUSE = 0, 1


class Refused(Exception):
    """The session cannot be tied to its job; the message says why."""


def monitor():
    """(PID, Stat) of our parent, sshd's monitor."""
    pid = os.getppid()
    st = procs.stat_of(pid)
    if st is None or procs.real_uid(pid) != 0:
        raise Refused("parent %d is not a root process" % pid)
    return pid, st


def job_of(st, trust):
    """The Job of the shepherd that started the monitor described by ``st``."""
    shepherd = st.ppid
    spool = procs.shepherd_spool(shepherd)
    if spool is None:
        raise Refused("sshd %d was not started by a Grid Engine shepherd (its parent %d is %s)"
                      % (st.pid, shepherd, procs.link(shepherd, "exe") or "gone"))
    try:
        job = jobspool.read_job(spool, trust, max_bytes=setupfile.MAX_SPOOL_BYTES)
    except jobspool.NoJob as why:
        raise Refused(str(why))
    again = procs.stat_of(st.pid)
    if again is None or again.ppid != shepherd or procs.shepherd_spool(shepherd) != spool:
        raise Refused("the shepherd of sshd %d changed while it was read" % st.pid)
    return job


def account(environ, trust, setup_dir, log):
    pid, st = monitor()
    user = environ.get("PAM_USER", "")
    job = job_of(st, trust)
    if user != job.owner:
        raise Refused("user %r is not %s, the owner of job %s: refused" % (user[:64], job.owner, job.key))
    try:
        setupfile.create(pid, job.spool, setup_dir, log, reap=job.gid)
    except (OSError, setupfile.SetupError) as err:
        raise Refused("cannot write the setup file: %s" % err)
    log("info", "job %s: session of %s tied to the job (gid %d, sshd %d)" % (job.key, user, job.gid, pid))


def close(setup_dir, log):
    """The session of our parent (the monitor) ends: its setup file goes, and if the file says so
    (a job sshd's session, which is a whole task of its job: ``reap GID``), every process still
    carrying the task's group is killed: the task is over for Grid Engine, and what it left running
    would escape it.  The file is root's (0600, made under the root-only lock): nothing is read
    again from the spool here, and an adopted login (no ``reap`` line) never kills its job."""
    pid = os.getppid()
    try:
        record = setupfile.remove(pid, setup_dir)
    except (OSError, setupfile.SetupError) as err:
        log("warning", "close: %s" % err)
        return
    if record is None or record[3] is None:
        return
    gid = record[3]
    # (sshd's own session process carries the group too; by now it is a zombie, which is skipped)
    left = procs.kill_group(gid)
    if left:
        log("notice", "session of sshd %d closed: killed %d process(es) left in its task (gid %d): %s"
            % (pid, len(left), gid, " ".join(map(str, left[:20]))))


def run(environ, trust, setup_dir, fail_open, log):
    """The hook's exit code for pam_exec: 0 admits, 1 refuses."""
    kind = environ.get("PAM_TYPE", "")
    if kind == "close_session":
        close(setup_dir, log)
        return OK
    if kind != "account":
        return OK
    try:
        account(environ, trust, setup_dir, log)
    except Refused as why:
        if fail_open:
            log("warning", "session of %s NOT tied to a job (--fail-open): %s"
                % (environ.get("PAM_USER", "?")[:64], why))
            return OK
        log("err", "session of %s refused: %s" % (environ.get("PAM_USER", "?")[:64], why))
        return REFUSE
    return OK
