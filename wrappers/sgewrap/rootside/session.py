"""``node_access session``: tie each job sshd session to its job (a ``pam_exec`` hook).

Grid Engine's shepherd starts ``sge-sshd -i`` (the real sshd under a name of
its own, so it uses the PAM service ``/etc/pam.d/sge-sshd``, never the site's
``/etc/pam.d/sshd``).  That service, written by ``sgewrap config ssh --tight
--apply``, runs this hook in its account stack::

    auth     required  pam_sge-qrsh-setup.so
    account  required  pam_exec.so quiet /W/node_access session

The plan, for ``PAM_TYPE=account`` (pam_exec runs us as root, as a child of
sshd's privileged per-connection process, the *monitor*):

1. the connection: our parent is the monitor M (its PID and start time);
2. the job: M's parent must be a shepherd (:mod:`sgewrap.rootside.procs`: real uid
   0, executable ``sge_shepherd`` owned by root), whose working directory is
   the task's spool directory, trusted only as :mod:`sgewrap.rootside.jobspool` says;
3. the user: ``PAM_USER`` (set by PAM from the authenticated user, not by
   the client) must be the job's owner (``job_owner`` of the spool's
   ``config``): another user who reaches the shepherd's port is refused;
4. the tie: ``sge-qrsh-setup.M`` names the spool directory
   (:mod:`sgewrap.rootside.setupfile`); the module then adds the job's group and
   environment in the session's own process, found through ``getppid()``;
5. the end: a watcher (:func:`watch`), forked from this hook, waits for M
   to exit; then the file of M is removed and every process still carrying
   the task's group is killed: the session was the whole task (a ``qrsh
   -inherit``, ``qrsh`` or ``qlogin``), so what it left behind would run on
   outside Grid Engine.  Measured: ``qdel`` of a job whose task runs a
   command in a process group of its own (GNU parallel's remote worker does
   ``setpgrp``) left that command running, because the shepherd of a task
   started through ``qrsh_starter`` signals only its process group at the
   first kill and skips its own group kill (``shepherd.c``: ``is_qrsh``).

Any step that fails refuses the session (exit 1: pam_exec fails, the
account stack fails, sshd closes the connection) and logs why: a session
that would run outside its job never starts.  ``--fail-open`` lets it start
untied instead (logged) -- except for step 3: a user who is not the job's
owner is refused whatever the options say.

Why a watcher and no ``close_session`` line: pam_exec starts its program
with the PAM environment, and once the session is open that holds whatever
the session's modules put there from the user's files (in the site's stack,
``pam_env user_readenv=1`` reads ``~/.pam_environment``).  A root program
started then is the user's: the dynamic loader honours ``LD_PRELOAD`` before
any Python runs.  (The job's own ``environment`` is loaded by
pam_sge-qrsh-setup in the session's process only, measured: it never reached
0.2's close hook.)  At ``account`` time the PAM environment holds nothing of
the user's yet, and the watcher is a fork of this already running process:
nothing is loaded again.  A ``close_session`` call (a stack written by 0.2)
does nothing.
"""
import os

from . import gidrange, jobspool, procs, setupfile
from .frame import Cannot

OK, REFUSE = 0, 1


class Refused(Cannot):
    """The session cannot be tied to its job; the message says why."""


class WrongUser(Refused):
    """The user is not the job's owner: refused whatever ``--fail-open`` says."""


def monitor():
    """(PID, Stat) of sshd's monitor: our parent, or its parent when ours is the ``[pam]`` child of a
    keyboard-interactive login (:func:`sgewrap.rootside.procs.connection_monitor`)."""
    found = procs.connection_monitor(os.getppid())
    if found is None or procs.real_uid(found[0]) != 0:
        raise Refused("parent %d is not a root process" % os.getppid())
    return found


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
        raise WrongUser("user %r is not %s, the owner of job %s: refused" % (user[:64], job.owner, job.key))
    try:
        tie(pid, st.start, job.spool, setup_dir, log, reap=job.gid)
    except setupfile.SetupError as err:
        raise Refused(str(err))
    log("info", "job %s: session of %s tied to the job (gid %d, sshd %d)" % (job.key, user, job.gid, pid))


def tie(pid, start, spool, setup_dir, log, reap=None, shepherd=None):
    """Tie the session of the monitor ``pid`` (started at ``start``) to the task in ``spool``: its
    setup file, and a watcher that ends it (:func:`watch`).  Nothing is left behind when either
    cannot be made: SetupError says which.  ``shepherd``: (PID, start) of the task's shepherd, for
    pam_sgewrap's watcher of an adopted login (its leftovers die when the task ends)."""
    try:
        setupfile.create(pid, spool, setup_dir, log, reap=reap, shepherd=shepherd)
    except (OSError, setupfile.SetupError) as err:
        raise setupfile.SetupError("cannot write the setup file: %s" % err)
    try:
        watch(pid, start, setup_dir, log)
    except OSError as err:
        ended(pid, start, setup_dir, log)
        raise setupfile.SetupError("cannot watch sshd %d for the session's end: %s" % (pid, err.strerror or err))


def ended(pid, start, setup_dir, log):
    """The monitor ``pid`` (started at ``start``) is gone: its setup file goes, and if the file says
    so (a job sshd's session, which is a whole task of its job: ``reap GID``), every process still
    carrying the task's group is killed: the task is over for Grid Engine, and what it left running
    would escape it -- if the group id is one of this host's ``gid_range``
    (:func:`sgewrap.rootside.gidrange.reapable`).  The file is root's (0600, made under the root-only
    lock): nothing is read again from the spool here, and an adopted login (no ``reap`` line) never
    kills its job."""
    try:
        record = setupfile.release(pid, start, setup_dir)
    except (OSError, setupfile.SetupError) as err:
        log("warning", "end of sshd %d: %s" % (pid, err))
        return
    if record is None or record[3] is None:
        return
    gid = record[3]
    if not gidrange.reapable(gid, log, "session of sshd %d" % pid):
        return
    left = procs.kill_group(gid)
    if left:
        log("notice", "session of sshd %d closed: killed %d process(es) left in its task (gid %d): %s"
            % (pid, len(left), gid, " ".join(map(str, left[:20]))))


def watch(pid, start, setup_dir, log):
    """Leave behind a root process that calls :func:`ended` once the monitor ``pid`` has exited.

    It is a fork of this hook (double fork: pam_exec waits for its child only), in a session of its
    own and with no supplementary groups (the shepherd's process-group kill and Grid Engine's group
    kill pass it by; it never kills itself), with fds 0-2 on /dev/null (pam_exec reads the hook's
    stdout until EOF), no other fd but the pidfd, and / as its directory.  It waits on a pidfd of
    the monitor, opened before the fork and checked against ``start`` (the PID cannot have been
    reused in between)."""
    import select
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None                      # no pidfd (an old kernel): poll /proc instead
    if not procs.alive_as(pid, start):
        if pidfd is not None:
            os.close(pidfd)
        raise OSError("sshd %d is gone" % pid)
    child = os.fork()
    if child:
        if pidfd is not None:
            os.close(pidfd)
        os.waitpid(child, 0)
        return
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        os.setgroups([])
        os.chdir("/")
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        for fd in map(int, os.listdir("/proc/self/fd")):     # (pam_exec leaves none; a test runner would)
            if fd > 2 and fd != pidfd:
                try:
                    os.close(fd)
                except OSError:
                    pass
        log.detached()
        if pidfd is not None:
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            while not poller.poll():
                pass
        else:
            import time
            while procs.alive_as(pid, start):
                time.sleep(0.5)
        ended(pid, start, setup_dir, log)
    except BaseException as err:          # noqa: B902 -- a fork never returns into the hook
        try:
            log("err", "watcher of sshd %d: %s: %s" % (pid, type(err).__name__, err))
        except BaseException:             # noqa: B902
            pass
    finally:
        os._exit(0)


def run(environ, trust, setup_dir, fail_open, log):
    """The hook's exit code for pam_exec: 0 admits, 1 refuses."""
    kind = environ.get("PAM_TYPE", "")
    if kind != "account":
        return OK
    try:
        account(environ, trust, setup_dir, log)
    except Refused as why:
        if fail_open and not isinstance(why, WrongUser):
            log("warning", "session of %s NOT tied to a job (--fail-open): %s"
                % (environ.get("PAM_USER", "?")[:64], why))
            return OK
        log("err", "session of %s refused: %s" % (environ.get("PAM_USER", "?")[:64], why))
        return REFUSE
    return OK
