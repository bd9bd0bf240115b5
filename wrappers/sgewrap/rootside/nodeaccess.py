"""node_access: who may come into an execution host, and into which job.

Two jobs, one program (both run as root, with nothing trusted from the
caller's environment):

- ``node_access session``: the ``pam_exec`` hook of the job sshds' own PAM
  service (``/etc/pam.d/sge-sshd``): admits only the job's owner and ties
  the session to the job (sgewrap.rootside.session says how);
- ``node_access adopt``: the ``pam_exec`` hook of the site's sshd that lets a
  user in only where a job of theirs runs and makes the login part of that
  job (sgewrap.rootside.adopt says how);
- ``node_access prolog|epilog|repair|list``: the queue's prolog and epilog
  that keep sshd's list of users with a job on the host (below).

ssh to an execution host only for the owners of jobs running there:

remote_startup(5), RESTRICTING ACCESS: with the builtin method users need no
ssh access to execution hosts at all; to let them in for debugging only where
they have a running job, sshd's PAM stack consults a list that the queue's
prolog adds to and its epilog removes from.  This is that prolog and epilog::

    qconf -mattr queue prolog "root@/opt/sge/util/resources/wrappers/node_access prolog" all.q
    qconf -mattr queue epilog "root@/opt/sge/util/resources/wrappers/node_access epilog" all.q

and in /etc/pam.d/sshd, before the other account lines (``sgewrap node-access``
prints and adds them)::

    account [success=1 default=ignore] pam_succeed_if.so quiet uid < 1000
    account required pam_listfile.so item=user sense=allow file=/run/sgewrap/node-access.users onerr=fail

Files, in ``--dir`` (default /run/sgewrap: emptied at boot, when no job runs):

  node-access.users   the users allowed, one a line: what pam_listfile reads
  node-access.jobs    one line per job on this host: ``run|end KEY USER SPOOLDIR``
  node-access.lock    the flock every change holds

Reference counting: the jobs file holds one line per job (KEY is its spool
directory's name, ``JOB.TASK``, unique on the host while the job is active);
a user is allowed while at least one of their jobs is ``run``.  Two jobs of
one user: the first epilog leaves the user in.  Every change takes the lock,
reads the jobs file, changes it, and writes both files anew (a temporary
file, fsync, rename over): a reader sees the old list or the new one, never a
part.  Each change also forgets the jobs whose spool directory is gone (a
missed epilog heals at the next prolog or epilog on the host).

What a job is comes only from its spool directory (``$SGE_JOB_SPOOL_DIR``,
validated like rshdwrapper does: owned by root or the Grid Engine admin user
up to /, writable by no one else) and the shepherd's ``config`` file in it
(``job_owner``): a user's ``qsub -v`` cannot name someone else.

``repair`` rebuilds the list from the jobs running on this host: the spool
directories in execd's ``active_jobs`` (``--active-jobs=DIR``, repeatable;
default Debian's /var/spool/gridengine/execd/HOST/active_jobs; and wherever
recorded jobs live) that a running shepherd works in, less those whose
epilog already ran; a shepherd is recognised by its real uid and executable,
never by its process name (sgewrap.rootside.procs).  ``list`` shows the state.

Exit status of ``session``: 0 admits the session, 1 refuses it (pam_exec
fails the account stack).  Of the others: 0, also when the list could not be
changed (logged to syslog):
a prolog or epilog that fails puts the queue in error state, which is worse
than a user without debug access (``repair`` or the next prolog/epilog mends
the list).  64 for bad usage, 70 for an internal error.  Nothing is written to
stdout or stderr (they are the job's output files) but by ``list``, ``--help``
and errors when stderr is a terminal.
"""
import errno
import fcntl
import os
import stat
import sys

from . import frame, jobspool, options
from ..errors import USAGE, WrapperError
from .frame import UnsafeError as AccessError
from .options import Option
from .setupfile import SETUP_DIR

NAME = "node_access"
DEFAULT_DIR = "/run/sgewrap"
USERS = "node-access.users"
JOBS = "node-access.jobs"
LOCK = "node-access.lock"
COMMANDS = ("prolog", "epilog", "repair", "list", "session", "adopt")
#: the commands pam_exec runs (the others are a queue's prolog and epilog, and the administrator's)
HOOKS = ("session", "adopt")

#: every option of node_access, its default and help: the parser, --help (and so the man page),
#: sgewrap node-access --adopt-option and the PAM lines sgewrap writes read this
TABLE = options.Table(NAME, (
    options.HELP,
    Option("--dir", "the access list's directory", metavar="DIR", default=DEFAULT_DIR, path=True,
           commands=("prolog", "epilog", "repair", "list")),
    options.FACILITY,
    options.SGE_ROOT,
    options.ADMIN_USER,
    Option("--active-jobs", "execd's active_jobs directory of this host (default: Debian's "
           "/var/spool/gridengine/execd/HOST/active_jobs)", metavar="DIR", path=True, repeat=True,
           commands=("repair", "adopt")),
    Option("--setup-dir", "pam_sge-qrsh-setup's directory", metavar="DIR", default=SETUP_DIR, path=True,
           commands=HOOKS),
    Option("--fail-open", "a session that cannot be tied to its job is admitted untied (another user who "
           "reaches the port is refused all the same)", commands=("session",)),
    Option("--action-no-jobs", "a login of a user without a job here", metavar="ACTION", choices=("deny", "allow"),
           default="deny", commands=("adopt",)),
    Option("--action-adopt-failure", "a login whose job cannot be joined (or has no task here yet)",
           metavar="ACTION", choices=("deny", "allow"), default="deny", commands=("adopt",)),
    Option("--warn-only", "refuse nobody: tie where possible, log what would have been refused",
           commands=("adopt",)),
    Option("--ignore-below-uid", "users below this uid are admitted untied", metavar="N", number=True,
           default=options.MIN_UID, commands=("adopt",)),
    Option("--admin-group", "its members are admitted untied", metavar="GROUP", repeat=True, commands=("adopt",)),
    Option("--job-records", "a connection qssh recorded (ssh JOB.job) joins exactly the task it names; costs "
           "two qstat calls per login, and a login qmaster cannot answer for follows --action-adopt-failure",
           commands=("adopt",)),
), commands=COMMANDS, anywhere=True)


def parse_args(argv):
    """(Values, command); ``values.help``: nothing else was checked."""
    values, rest = TABLE.parse(argv)
    if values.help:
        return values, None
    if len(rest) != 1 or rest[0] not in COMMANDS:
        raise WrapperError(USAGE, "expected one of %s, got %s" % (
            ", ".join(COMMANDS), " ".join(repr(w) for w in rest) or "nothing"))
    return values, rest[0]


def usage():
    return "usage: node_access [OPTIONS] %s\n\nOptions (a command in brackets: only it reads the option):\n" \
        % "|".join(COMMANDS) + TABLE.help() + "\n" + (__doc__ or "")


# --- the state ------------------------------------------------------------------------------


class Entry:
    __slots__ = ("state", "key", "user", "spool")

    def __init__(self, state, key, user, spool):
        self.state, self.key, self.user, self.spool = state, key, user, spool

    def line(self):
        return "%s %s %s %s\n" % (self.state, self.key, self.user, self.spool)


valid_user = jobspool.valid_user


def valid_word(word):
    return bool(word) and not any(c.isspace() or c < " " or c == "\x7f" for c in word)


class State:
    """The jobs file under the lock: ``with State(dir, log) as state: ...`` writes it back."""

    def __init__(self, directory, log):
        self.dir = directory
        self.log = log
        self.entries = {}
        self._lock = None

    def __enter__(self):
        frame.private_dir(self.dir, create=True)
        self._lock = os.open(os.path.join(self.dir, LOCK),
                             os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self.entries = self._read()
        return self

    def __exit__(self, kind, value, tb):
        try:
            if kind is None:
                self.forget_gone()
                self._write()
        finally:
            os.close(self._lock)
            self._lock = None

    def _read(self):
        path = os.path.join(self.dir, JOBS)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return {}
        except OSError as err:
            if err.errno != errno.ELOOP:
                raise AccessError("%s: %s" % (path, err.strerror))
            self.log("err", "%s is a symbolic link: not followed, replaced (node_access repair rebuilds the "
                            "jobs it held)" % path)
            return {}
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise AccessError("%s is not a regular file" % path)
        with os.fdopen(fd, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
        entries = {}
        for number, line in enumerate(lines, 1):
            words = line.split(" ")
            if len(words) != 4 or words[0] not in ("run", "end") or not valid_user(words[2]) \
                    or not all(valid_word(w) for w in words):
                self.log("warning", "%s:%d: ignoring a malformed line" % (path, number))
                continue
            entries[words[1]] = Entry(*words)
        return entries

    def forget_gone(self):
        """Drop the jobs whose spool directory is gone (their epilog was missed, or ran)."""
        for key, entry in list(self.entries.items()):
            if not os.path.isdir(entry.spool):
                if entry.state == "run":
                    self.log("notice", "job %s of %s is gone without an epilog: removed" % (key, entry.user))
                del self.entries[key]

    def users(self):
        return sorted({e.user for e in self.entries.values() if e.state == "run"})

    def _write(self):
        frame.write_atomic(os.path.join(self.dir, JOBS), "".join(e.line() for e in self.entries.values()).encode())
        frame.write_atomic(os.path.join(self.dir, USERS), "".join(u + "\n" for u in self.users()).encode())


# --- the job -------------------------------------------------------------------------------


def this_job(environ, trust):
    """(KEY, USER, SPOOLDIR) of the job whose prolog/epilog this is; NoJob if it cannot be told."""
    return job_in(jobspool.spool_dir(environ, trust), trust)


def job_in(spool, trust):
    job = jobspool.read_job(spool, trust, gid=False)
    if not (valid_word(job.key) and valid_word(job.spool)):
        raise jobspool.NoJob("%s: not the spool directory of job %r" % (spool, job.job_id[:20]))
    return job.key, job.owner, job.spool


def running_spools():
    """The spool directories of the running shepherds: by their real uid and executable, which a
    user cannot fake (a process *named* sge_shepherd can be anyone's)."""
    from . import procs
    return {os.path.realpath(s) for s in procs.shepherds().values()}


def active_jobs_dirs(opts, state):
    """--active-jobs (else Debian's place for this host), and where the recorded jobs live."""
    dirs = jobspool.active_jobs_dirs(opts.active_jobs)
    dirs += sorted({os.path.dirname(e.spool) for e in state.entries.values()})
    seen, out = set(), []
    for d in dirs:
        real = os.path.realpath(d)
        if real not in seen:
            seen.add(real)
            out.append(real)
    return out


# --- commands --------------------------------------------------------------------------------


def prolog(opts, log, trust, environ):
    key, user, spool = this_job(environ, trust)
    with State(opts.dir, log) as state:
        state.entries[key] = Entry("run", key, user, spool)
        log("info", "job %s: %s may log in (%d job%s of theirs here)" % (
            key, user, *_count(state, user)))


def epilog(opts, log, trust, environ):
    key, user, spool = this_job(environ, trust)
    with State(opts.dir, log) as state:
        if key not in state.entries:
            log("notice", "job %s of %s had no prolog entry" % (key, user))
        state.entries[key] = Entry("end", key, user, spool)
        left, s = _count(state, user)
        log("info", "job %s ended: %s %s" % (
            key, user, "may still log in (%d job%s here)" % (left, s) if left else "may no longer log in"))


def _count(state, user):
    n = sum(1 for e in state.entries.values() if e.state == "run" and e.user == user)
    return n, "" if n == 1 else "s"


def repair(opts, log, trust, environ):
    running = running_spools()
    with State(opts.dir, log) as state:
        before = state.users()
        ended = {k for k, e in state.entries.items() if e.state == "end"}
        found = {}
        for directory in active_jobs_dirs(opts, state):
            try:
                names = sorted(os.listdir(directory))
            except OSError as err:
                log("warning", "repair: %s: %s" % (directory, err.strerror))
                continue
            for name in names:
                spool = os.path.join(directory, name)
                try:
                    key, user, spool = job_in(spool, trust)
                except jobspool.NoJob as why:
                    log("notice", "repair: skipping %s: %s" % (spool, why))
                    continue
                if spool in running and key not in ended:
                    found[key] = Entry("run", key, user, spool)
        state.entries = {k: e for k, e in state.entries.items() if e.state == "end"}
        state.entries.update(found)
        after = state.users()
        log("info", "repair: %d running job%s, users %s (were %s)" % (
            len(found), "" if len(found) == 1 else "s", " ".join(after) or "none", " ".join(before) or "none"))


def show(opts, log, trust, environ):
    with State(opts.dir, log) as state:
        lines = ["%s %s %s" % (e.user, e.key, "running" if e.state == "run" else "ended")
                 for e in sorted(state.entries.values(), key=lambda e: (e.user, e.key))]
        users = state.users()
    out = "allowed: %s\n" % (" ".join(users) or "nobody") + "".join(line + "\n" for line in lines)
    os.write(1, out.encode())


def session(opts, log, trust, environ):
    from . import session as hook
    return hook.run(environ, trust, opts.setup_dir, opts.fail_open, log)


def adopt(opts, log, trust, environ):
    from . import adopt as hook
    return hook.run(environ, opts, trust, log)


COMMAND = {"prolog": prolog, "epilog": epilog, "repair": repair, "list": show, "session": session,
           "adopt": adopt}


def run(argv, log, environ=None, script=None):
    """Everything node_access does; the exit code (0 but for bad usage and a refused session).
    ``environ``: a mapping, or (name, value) pairs as the process got them (default: this
    process's own, /proc/self/environ)."""
    opts, command = parse_args(argv)
    if environ is None:
        environ = frame.exec_environ()
    twice = []
    if not hasattr(environ, "get"):
        environ, twice = frame.pam_exec_environ(environ)
    log.facility = opts.facility
    if opts.help:
        try:
            os.write(1, usage().encode())
        except OSError:
            pass
        return 0
    if twice and command in HOOKS:
        log("err", "%s: refused: %s given twice: the PAM environment (a user's ~/.pam_environment, a job's "
                   "environment) tries to pass for pam_exec's own" % (command, " and ".join(twice)))
        return 1
    sge_root = opts.sge_root or jobspool.sge_root_from(script if script is not None else sys.argv[0])
    trust = jobspool.Trust(sge_root, opts.admin_user, log)
    try:
        return COMMAND[command](opts, log, trust, environ) or 0
    except jobspool.NoJob as why:
        log("err", "%s: no usable job context, access list unchanged: %s" % (command, why))
    except (AccessError, OSError) as err:
        detail = err.strerror if isinstance(err, OSError) and err.strerror else err
        log("err", "%s: cannot update the access list in %s: %s" % (command, opts.dir, detail))
    return 0


def main(argv=None):
    """Entry point of node_access: isolated, never a traceback, one exit."""
    frame.main(NAME, run, argv)
