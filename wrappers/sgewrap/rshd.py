"""rshdwrapper: the daemon-side wrapper for tight integration of sshd (and friends).

Paste into ``qlogin_daemon``, ``rlogin_daemon`` and ``rsh_daemon``::

    rsh_daemon  /opt/sge/util/resources/wrappers/rshdwrapper
    rsh_daemon  /opt/sge/util/resources/wrappers/rshdwrapper --facility=daemon /usr/sbin/sshd -i -o LogLevel=ERROR
    rsh_daemon  /opt/sge/util/resources/wrappers/rshdwrapper rshd -l

The shepherd runs it as root, once per session, with the client's TCP
connection on fds 0, 1 and 2, the job's environment and the job's
active_jobs directory as cwd (remote-startup.md, section 2).  It speaks the
protocol of the ``pam_sge-qrsh-setup`` PAM module (section 3):

1. validates the job context: ``SGE_JOB_SPOOL_DIR`` must be an absolute
   path of a directory holding regular files ``addgrpid`` (a decimal gid
   other than 0) and ``environment``, and neither that directory, nor any
   directory above it, nor the two files may be owned by or writable
   (group/other write bits; sticky directories above are fine) for anyone but
   root and the Grid Engine admin user.  The admin user is the
   ``admin_user`` of ``SGE_ROOT/<cell>/common/bootstrap`` (every cell), or
   named with ``--admin-user``.  SGE_ROOT is never taken from the
   environment (the job owner controls it): it is ``--sge-root``, else the
   directory three levels above the installed script
   (``SGE_ROOT/util/resources/wrappers/NAME``, accepted if it holds
   ``utilbin`` or a ``*/common/bootstrap``), else Debian's packaged
   ``/var/lib/gridengine`` if it holds a bootstrap file.  The canonical path (symlinks resolved) is what the PAM
   module gets;
2. removes orphaned setup files (below) and a stale file of its own PID;
3. writes ``SETUP_DIR/sge-qrsh-setup.<own PID>`` holding the spool directory
   and a newline: ``O_CREAT|O_EXCL|O_NOFOLLOW``, mode 0644, owner root, and
   keeps an exclusive ``flock`` on it for its whole life;
4. starts the daemon as its CHILD (the PAM module looks for its parent's
   PID) with ``posix_spawn``, no shell, with a sanitized environment;
5. waits for it, removes its file, logs one info line (job, task, spool
   directory, gid, daemon, exit status) and exits with the daemon's status
   (killed by signal N: 128+N).

Without a job context it writes no setup file, logs why, and still runs the
daemon (a plain ``sshd -i``), unless ``--require-job`` says to refuse.

Signals: SIGTERM, SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2 -- and every
other catchable signal whose default action would end the wrapper (SIGALRM,
SIGVTALRM, SIGPROF, SIGXCPU, SIGIO, SIGPWR, SIGSTKFLT, SIGSYS, the real-time
signals) -- are forwarded to the daemon; the wrapper ends when the daemon
does, so its file is removed on every way out a process can catch.  A signal
that arrives before the daemon is started ends the wrapper with 128+N and the
daemon is not started.  A signal the shepherd left ignored stays ignored (for
the daemon too).  SIGKILL cannot be caught (``qdel`` kills the process
group): the file it leaves behind is an orphan the next run removes.

Orphan cleanup without races: a live wrapper always holds the flock of its
file.  A file ``sge-qrsh-setup.<PID>`` is removed only by a process that
holds its lock (taken with ``LOCK_NB``: a live wrapper's file is skipped at
once), has checked that the name still refers to the locked inode, and has
seen that PID is dead (``kill(PID, 0)`` fails with ESRCH).  A wrapper whose
PID is reused from a dead wrapper removes the stale file by the same protocol
(lock, identity check, unlink) before it creates its own with O_EXCL, so
neither can unlink the other's new file.  Between its O_EXCL create and its
flock a new file may be locked by a cleaner, but its PID is alive then, so
it is kept.  A file whose PID was reused by some unrelated live process is
kept until that process ends (never a wrong removal).

Environment of the daemon: ``PATH`` is fixed
(``/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin``); kept are
``SGE_*``, the job's identification (``JOB_ID``, ``JOB_NAME``, ``QUEUE``,
``HOSTNAME``, ``NHOSTS``, ``NSLOTS``, ``NQUEUES``, ``PE``, ``PE_HOSTFILE``,
``REQUEST``, ``RESTARTED``, ``ENVIRONMENT``, ``ARC``) and ``LANG``,
``LANGUAGE``, ``LC_*``, ``TZ`` unless their value holds a ``/``.  Everything
else (``LD_*``, ``PYTHON*``, ``GCONV_PATH``, ``KRB5_CONFIG``, ``HOME``...)
is dropped: sshd, in.rshd, in.rlogind and telnetd build the session's
environment themselves, and the job's variables reach an ssh session through
the PAM module's ``environment`` file.

Output: nothing is ever written to fds 1 and 2 (they are the client's
connection).  Errors, the reason for a missing job context and the info line
go to syslog (ident ``rshdwrapper``, facility ``--facility``, default
``authpriv``); a missing or failing syslog does not matter, and a syslog that
blocks is given at most 1.2 seconds once, then skipped for the session.  An administrator trying it by
hand sees errors on stderr too, but only when stderr is a terminal (under
the shepherd it is a socket).  ``--help`` prints to stdout, unless stdout is a
socket (then it is refused like a bad option: sge_conf holds it by mistake).

Usage: ``rshdwrapper [OPTIONS] [DAEMON [ARGS...]]`` (options first; ``--opt=VALUE``
is the form that survives the shepherd's splitting on spaces):

  --setup-dir=DIR     where the setup files go (default /var/run; the PAM
                      module reads /var/run: other values are for tests).
                      Must be owned by the wrapper's user (root) and not
                      group/other writable.
  --facility=NAME     syslog facility: authpriv (default), auth, daemon,
                      user, local0 ... local7
  --require-job       refuse (exit 72, daemon not started) without a usable
                      job context or when the setup file cannot be written
  --sge-root=DIR      SGE_ROOT, instead of the one derived from the script's path
  --admin-user=NAME   one more trusted owner of the spool tree (repeatable)
  --help              this text
  --                  ends the options

DAEMON: an absolute path of an executable file, or a short name resolved at
run time: ``sshd`` (/usr/sbin/sshd), ``rshd``, ``rlogind``, ``telnetd``
(``$SGE_ROOT/utilbin/$ARC/NAME`` where it exists, else Debian's
/usr/sbin/in.rshd, /usr/sbin/in.rlogind, /usr/sbin/telnetd).  Default:
``/usr/sbin/sshd -i``.

Exit codes: the daemon's (killed by signal N: 128+N), or the wrapper's own:

  64  bad option, or DAEMON neither absolute nor a known short name
  69  the daemon program is missing or not executable
  70  internal error (a bug: please report)
  71  the daemon could not be started (posix_spawn failed)
  72  --require-job: no usable job context, or no setup file
"""
import errno
import fcntl
import os
import stat
import sys

try:
    import _signal as signal   # the C module: ``signal`` would import enum (~3 ms on every session)
except ImportError:            # pragma: no cover -- not CPython
    import signal

from . import daemonlog, jobspool, locate
from .daemonlog import clean
from .errors import EXEC_FAILED, INTERNAL, NO_CLIENT, NO_JOB, USAGE, WrapperError
from .jobspool import NoJob, Trust, sge_root_from  # noqa: F401 -- part of this module's surface

NAME = "rshdwrapper"
DEFAULT_DAEMON = ("/usr/sbin/sshd", "-i")
DEFAULT_SETUP_DIR = "/var/run"
SETUP_PREFIX = "sge-qrsh-setup."
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: short daemon names -> candidates, first executable one wins (utilbin:NAME = $SGE_ROOT/utilbin/$ARC/NAME)
SHORT_NAMES = {
    "sshd": ("/usr/sbin/sshd",),
    "rshd": ("utilbin:rshd", "/usr/sbin/in.rshd"),
    "rlogind": ("utilbin:rlogind", "/usr/sbin/in.rlogind"),
    "telnetd": ("utilbin:telnetd", "/usr/sbin/telnetd"),
}

#: pam_sge-qrsh-setup reads the spool dir into a 1024-byte buffer and appends "/environment"
MAX_SPOOL_BYTES = 1024 - len("/environment") - 1

#: job variables the daemon keeps (besides SGE_*, locale, TZ)
KEEP_NAMES = frozenset(("JOB_ID", "JOB_NAME", "QUEUE", "HOSTNAME", "NHOSTS", "NSLOTS", "NQUEUES", "PE",
                        "PE_HOSTFILE", "REQUEST", "RESTARTED", "ENVIRONMENT", "ARC"))
LOCALE_NAMES = frozenset(("LANG", "LANGUAGE", "TZ"))

FACILITIES = daemonlog.FACILITIES

#: forwarded to the daemon: the six the issue names, then every other catchable
#: signal whose default action ends a process (synchronous faults excepted)
FORWARDED = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
ALSO_FORWARDED = tuple(getattr(signal, n) for n in ("SIGALRM", "SIGVTALRM", "SIGPROF", "SIGXCPU", "SIGIO",
                                                    "SIGPWR", "SIGSTKFLT", "SIGSYS") if hasattr(signal, n)) \
    + tuple(range(signal.SIGRTMIN, signal.SIGRTMAX + 1) if hasattr(signal, "SIGRTMIN") else ())
#: Python ignores these itself: the daemon gets them back at their default
PYTHON_IGNORED = tuple(getattr(signal, n) for n in ("SIGPIPE", "SIGXFSZ") if hasattr(signal, n))


class SetupError(Exception):
    """The setup file cannot be written; the message says why."""


# --- output -----------------------------------------------------------------------------


class _Discard:
    """sys.stdout/sys.stderr replacement: fds 1 and 2 are the client's connection."""

    def write(self, text):
        return len(text)

    def flush(self):
        pass

    def fileno(self):
        raise OSError(errno.EBADF, "discarded")


# --- options ----------------------------------------------------------------------------


class Options:
    __slots__ = ("setup_dir", "facility", "require_job", "sge_root", "admin_users", "help", "daemon")

    def __init__(self):
        self.setup_dir = DEFAULT_SETUP_DIR
        self.facility = "authpriv"
        self.require_job = False
        self.sge_root = None
        self.admin_users = []
        self.help = False
        self.daemon = []


_VALUED = ("--setup-dir", "--facility", "--sge-root", "--admin-user")


def parse_args(argv):
    """The wrapper's options (first) and the daemon's argv (the rest)."""
    opts = Options()
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            i += 1
            break
        if not word.startswith("--"):
            break
        flag, eq, value = word.partition("=")
        i += 1
        if flag in ("--require-job", "--help"):
            if eq:
                raise WrapperError(USAGE, "option %s takes no value" % flag)
            if flag == "--help":
                opts.help = True
            else:
                opts.require_job = True
            continue
        if flag not in _VALUED:
            raise WrapperError(USAGE, "unknown option %s (see --help)" % clean(flag, 60))
        if not eq:
            if i >= len(argv):
                raise WrapperError(USAGE, "option %s needs a value" % flag)
            value = argv[i]
            i += 1
        if flag == "--facility":
            if value not in FACILITIES:
                raise WrapperError(USAGE, "--facility must be one of %s, got %r" % (", ".join(FACILITIES), value))
            opts.facility = value
        elif flag == "--admin-user":
            if not value:
                raise WrapperError(USAGE, "--admin-user needs a user name")
            opts.admin_users.append(value)
        else:
            if not os.path.isabs(value):
                raise WrapperError(USAGE, "%s needs an absolute path, got %r" % (flag, value))
            if flag == "--setup-dir":
                opts.setup_dir = value
            else:
                opts.sge_root = value
    opts.daemon = list(argv[i:])
    return opts


def usage():
    if not __doc__:    # python -OO
        return "usage: rshdwrapper [OPTIONS] [DAEMON [ARGS...]]\n"
    return "usage: " + __doc__.split("Usage: ", 1)[1].replace("``", "")


# --- the job context --------------------------------------------------------------------


class JobContext:
    __slots__ = ("spool", "gid")

    def __init__(self, spool, gid):
        self.spool = spool
        self.gid = gid


def job_context(environ, trust):
    """The validated job context, or NoJob saying why there is none."""
    spool = jobspool.spool_dir(environ, trust, max_bytes=MAX_SPOOL_BYTES,
                               too_long="longer than pam_sge-qrsh-setup takes")
    for name in ("addgrpid", "environment"):
        jobspool.trusted_file(spool, name, trust)
    try:
        data = jobspool.read_small(os.path.join(spool, "addgrpid"))
    except OSError as err:
        raise NoJob("%s/addgrpid: %s" % (spool, err.strerror))
    text = data.strip()
    if not (text.isdigit() and len(text) <= 10 and 0 < int(text) <= 0x7fffffff):
        raise NoJob("%s/addgrpid holds %r, not a group id above 0" % (spool, data[:20]))
    return JobContext(spool, int(text))


# --- setup files and orphans ------------------------------------------------------------


def setup_path(setup_dir, pid):
    return os.path.join(setup_dir, SETUP_PREFIX + str(pid))


def check_setup_dir(setup_dir):
    """The setup directory must be ours (root's) and not group/other writable."""
    try:
        st = os.stat(setup_dir)
    except OSError as err:
        raise SetupError("setup directory %s: %s" % (setup_dir, err.strerror))
    if not stat.S_ISDIR(st.st_mode):
        raise SetupError("setup directory %s is not a directory" % setup_dir)
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise SetupError("setup directory %s must be owned by uid %d and not group/other writable (uid %d, mode %o)"
                         % (setup_dir, os.geteuid(), st.st_uid, stat.S_IMODE(st.st_mode)))


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):
        return False      # beyond any pid: nobody's
    return True


def _remove_locked(path, may_remove, wait=0.0):
    """Unlink ``path`` holding its flock, if it still names the locked inode and ``may_remove()``.

    True if removed; False if skipped (locked by a live owner, replaced meanwhile, or
    ``may_remove`` said no); missing: None.  Directories are never touched.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as err:
        if err.errno == errno.ELOOP:      # a symlink: unlinking it touches nothing else
            try:
                if may_remove():
                    os.unlink(path)
                    return True
            except FileNotFoundError:
                return None
            return False
        raise
    try:
        fst = os.fstat(fd)
        if stat.S_ISDIR(fst.st_mode):
            raise SetupError("%s is a directory" % path)
        deadline = None
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if wait <= 0:
                    return False
                import time
                deadline = deadline or time.monotonic() + wait
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.005)
        try:
            lst = os.lstat(path)
        except FileNotFoundError:
            return None
        if (lst.st_dev, lst.st_ino) != (fst.st_dev, fst.st_ino) or not may_remove():
            return False
        os.unlink(path)
        return True
    finally:
        os.close(fd)


def clean_orphans(setup_dir, own_pid=None):
    """Remove ``sge-qrsh-setup.<PID>`` files of dead PIDs that no live wrapper holds; their PIDs."""
    removed = []
    with os.scandir(setup_dir) as entries:
        names = [e.name for e in entries if e.name.startswith(SETUP_PREFIX)]
    for name in names:
        tail = name[len(SETUP_PREFIX):]
        if not (tail.isascii() and tail.isdigit()):
            continue
        pid = int(tail)
        if pid == own_pid or pid_alive(pid):
            continue
        try:
            if _remove_locked(os.path.join(setup_dir, name), lambda: not pid_alive(pid)):
                removed.append(pid)
        except (OSError, SetupError):
            continue
    return removed


def remove_stale(path):
    """Remove a file left under our own name by a dead wrapper whose PID we now have."""
    if _remove_locked(path, lambda: True, wait=1.0) is False:
        raise SetupError("%s exists and is locked by a live process" % path)


def create_setup_file(path, spool):
    """Create the setup file (exclusive, no symlink, 0644, root's) and lock it; its open fd."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.fchmod(fd, 0o644)
        if os.geteuid() == 0:
            os.fchown(fd, 0, 0)
        data = os.fsencode(spool) + b"\n"
        while data:
            data = data[os.write(fd, data):]
    except BaseException:
        try:
            os.unlink(path)
        finally:
            os.close(fd)
        raise
    return fd


def remove_setup_file(path, fd):
    """Remove our own file (we hold its lock: nobody else can have replaced it)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    finally:
        os.close(fd)


# --- the daemon -------------------------------------------------------------------------


def resolve_daemon(words, sge_root):
    """The daemon's argv with an absolute, executable program first."""
    words = list(words) or list(DEFAULT_DAEMON)
    first = words[0]
    if first in SHORT_NAMES:
        environ = {"SGE_ROOT": sge_root} if sge_root else {}
        program = locate.find_program(SHORT_NAMES[first], environ, what="daemon")
    elif os.path.isabs(first):
        if not locate.is_program(first):
            raise WrapperError(NO_CLIENT, "daemon %s is %s" % (
                first, "not an executable file" if os.path.exists(first) else "missing"))
        program = first
    else:
        raise WrapperError(USAGE, "daemon %r is neither an absolute path nor one of %s"
                           % (first, ", ".join(sorted(SHORT_NAMES))))
    return [program] + words[1:]


def daemon_environment(environ):
    """The job's environment without anything that steers a root process; fixed PATH."""
    env = {}
    for name, value in environ.items():
        if name.startswith("SGE_") or name in KEEP_NAMES:
            env[name] = value
        elif (name in LOCALE_NAMES or name.startswith("LC_")) and "/" not in value:
            env[name] = value
    env["PATH"] = SAFE_PATH
    return env


def exit_code(status):
    """The wrapper's exit code for a wait status: the daemon's, or 128+N after signal N."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


class _State:
    child = None
    pending = []
    log = None


def _forward(signum, frame):
    if signum == signal.SIGALRM and daemonlog.own_alarm():
        return
    pid = _State.child
    if pid is None:
        _State.pending.append(signum)
        return
    try:
        os.kill(pid, signum)
    except OSError:
        pass


def install_handlers():
    """Forward every handled signal the shepherd did not leave ignored; the list of them."""
    handled = []
    for sig in FORWARDED + ALSO_FORWARDED:
        try:
            if signal.getsignal(sig) == signal.SIG_IGN:
                continue
            signal.signal(sig, _forward)
            handled.append(sig)
        except (OSError, ValueError, RuntimeError):
            pass
    return handled


def spawn(argv, env, handled):
    return os.posix_spawn(argv[0], argv, env, setsigdef=tuple(handled) + PYTHON_IGNORED)


def wait(pid):
    while True:
        try:
            got, status = os.waitpid(pid, 0)
        except ChildProcessError:
            return 255 << 8
        if got == pid:
            return status


def _sanitized(environ, name):
    value = environ.get(name) or "-"
    return "".join(c if c.isalnum() or c in "._:-" else "?" for c in value[:64])


# --- main -------------------------------------------------------------------------------


def run(argv, environ=None, script=None):
    """Everything rshdwrapper does; returns the exit code."""
    environ = os.environ if environ is None else environ
    log = _State.log = daemonlog.Log(NAME)
    try:
        opts = parse_args(argv)
    except WrapperError as err:
        log("err", str(err))
        return err.code
    log.facility = opts.facility
    if opts.help:
        try:
            if stat.S_ISSOCK(os.fstat(1).st_mode):
                log("err", "--help refused: stdout is a socket (the client's connection); run it by hand")
                return USAGE
            os.write(1, usage().encode())
        except OSError:
            pass
        return 0
    sys.stdout = sys.stderr = _Discard()
    sge_root = opts.sge_root or sge_root_from(script if script is not None else sys.argv[0])
    try:
        daemon = resolve_daemon(opts.daemon, sge_root)
    except WrapperError as err:
        log("err", str(err))
        return err.code
    handled = install_handlers()
    own_pid = os.getpid()
    path, fd, ctx = setup_path(opts.setup_dir, own_pid), None, None
    try:
        try:
            ctx = job_context(environ, Trust(sge_root, opts.admin_users, log))
        except NoJob as why:
            if opts.require_job:
                log("err", "refusing the session (--require-job): no job context: %s" % why)
                return NO_JOB
            log("warning", "no job context, no tight integration: %s" % why)
        try:
            check_setup_dir(opts.setup_dir)
            clean_orphans(opts.setup_dir, own_pid)
            if ctx is not None:
                remove_stale(path)
                fd = create_setup_file(path, ctx.spool)
        except (OSError, SetupError) as err:
            if ctx is not None:
                if opts.require_job:
                    log("err", "refusing the session (--require-job): cannot write %s: %s" % (path, err))
                    return NO_JOB
                log("err", "no tight integration: cannot write %s: %s" % (path, err))
                ctx = None
            else:
                log("warning", "orphan cleanup in %s: %s" % (opts.setup_dir, err))
        if _State.pending:
            log("notice", "signal %d before the daemon started: not starting %s" % (_State.pending[0], daemon[0]))
            return 128 + _State.pending[0]
        try:
            _State.child = spawn(daemon, daemon_environment(environ), handled)
        except OSError as err:
            log("err", "cannot start %s: %s" % (daemon[0], err.strerror or err))
            return EXEC_FAILED
        for sig in _State.pending:
            _forward(sig, None)
        code = exit_code(wait(_State.child))
        if fd is not None:
            remove_setup_file(path, fd)
            fd = None
        if ctx is not None:
            log("info", "session job %s task %s spool %s gid %d daemon %s exit %d" % (
                _sanitized(environ, "JOB_ID"), _sanitized(environ, "SGE_TASK_ID"), ctx.spool, ctx.gid,
                " ".join(daemon), code))
        else:
            log("info", "session without job context daemon %s exit %d" % (" ".join(daemon), code))
        return code
    finally:
        if fd is not None:
            remove_setup_file(path, fd)


def main(argv=None):
    """Entry point of rshdwrapper: never returns, never writes to fds 1/2 (but --help)."""
    try:
        code = run(sys.argv[1:] if argv is None else argv)
    except KeyboardInterrupt:      # SIGINT before our handler was installed
        code = 128 + signal.SIGINT
    except BaseException as err:   # noqa: B902 -- never a traceback on the client's connection
        if isinstance(err, SystemExit):
            raise
        try:
            if _State.log is not None:
                _State.log("err", "internal error: %s: %s" % (type(err).__name__, err))
        except BaseException:
            pass
        code = INTERNAL
        if _State.child is not None:   # the daemon runs: stay its parent until it ends
            try:
                code = exit_code(wait(_State.child))
            except BaseException:
                pass
    sys.stdout = sys.stderr = _Discard()
    sys.exit(code)
