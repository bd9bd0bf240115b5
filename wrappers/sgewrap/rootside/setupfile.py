"""The setup files of ``pam_sge-qrsh-setup``: written, removed and swept by root only.

The PAM module, in sshd's ``pam_setcred``, opens
``/var/run/sge-qrsh-setup.<getppid()>``, takes its first line as a job spool
directory, adds that directory's ``addgrpid`` to the session's groups and
loads its ``environment``.  The process whose PID names the file is the
*parent* of the sshd process that sets the session's groups: for a job sshd
(``sge-sshd -i``) and for an ordinary ssh login alike, that is sshd's
per-connection privileged process (the monitor), and the hook that writes the
file is its child (``pam_exec``).  With the file named after that parent the
module finds it through ``getppid()`` at any PID; its grandparent lookup
(``ps`` parsed with ``%5d``) is never needed, which is what broke tight
integration on hosts with PIDs above 99999.

The protocol (every step under one lock, ``SETUP_DIR/.sgewrap-setup.lock``,
mode 0600: only root can open it, so no user can hold it):

- A file is ``SPOOL\\n`` followed by ``sgewrap PID START\\n``: the PID and the
  start time (clock ticks since boot, /proc/PID/stat) of the process it
  belongs to.  Mode 0600, owner root: no user can open, lock or read it.
- It is *live* while that very process runs as root (same PID, same start
  time, real uid 0).  A file without the second line (Grid Engine's Perl
  ``rshd-wrapper`` writes those) is live while its PID runs as root.
- ``create`` sweeps every file that is not live, then creates its own with
  ``O_CREAT|O_EXCL|O_NOFOLLOW`` (a stale file of a reused PID was just swept).
- ``release`` removes a file only if it belongs to the process named (PID
  and start time): its session's watcher calls it once that process has
  exited (:func:`sgewrap.rootside.session.watch`).
- Nothing waits on anything a user can touch: the directory must belong to
  root and be writable by nobody else, and the lock is taken with a bounded
  wait (its holders are this code, for microseconds).

A file outlives its session only when its watcher is killed too; then it is
not live and the next session on the host sweeps it.  Stdlib only.
"""
import errno
import fcntl
import os
import time

from . import frame, procs

SETUP_DIR = "/var/run"
PREFIX = "sge-qrsh-setup."
LOCK = ".sgewrap-setup.lock"
#: the module reads the spool directory into 1024 bytes and appends "/environment"
MAX_SPOOL_BYTES = 1024 - len("/environment") - 1
LOCK_WAIT = 5.0


class SetupError(frame.Cannot):
    """A setup file cannot be written or the directory is unsafe; the message says why."""


def path_of(setup_dir, pid):
    return os.path.join(setup_dir, PREFIX + str(pid))


class _Locked:
    """``with _Locked(setup_dir):`` the directory checked and its lock held."""

    def __init__(self, setup_dir):
        self.dir = setup_dir
        self.fd = None

    def __enter__(self):
        try:
            frame.private_dir(self.dir, follow=True)
        except frame.UnsafeError as err:
            raise SetupError(str(err))
        try:
            self.fd = os.open(os.path.join(self.dir, LOCK),
                              os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o600)
        except OSError as err:
            raise SetupError("lock %s: %s" % (os.path.join(self.dir, LOCK), err.strerror))
        st = os.fstat(self.fd)
        if st.st_uid != os.geteuid() or st.st_mode & 0o077:
            os.close(self.fd)
            raise SetupError("lock %s must be uid %d's and mode 0600 (uid %d, mode %o)"
                             % (os.path.join(self.dir, LOCK), os.geteuid(), st.st_uid, st.st_mode & 0o777))
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(self.fd)
                    raise SetupError("lock %s held for more than %gs" % (os.path.join(self.dir, LOCK), LOCK_WAIT))
                time.sleep(0.002)

    def __exit__(self, *exc):
        os.close(self.fd)


def _read(path):
    """(spool, pid, start, reap) of a setup file; pid/start None when it has no sgewrap line, reap
    the group id its session's close kills what is left of (None: none); None if gone."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as err:
        if err.errno == errno.ELOOP:
            return ("", None, None)        # a symlink: never ours, never followed
        raise
    try:
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    lines = data.decode("utf-8", "replace").split("\n")
    words = lines[1].split() if len(lines) > 1 else []
    reap = lines[2].split() if len(lines) > 2 else []
    reap = int(reap[1]) if len(reap) == 2 and reap[0] == "reap" and reap[1].isdigit() else None
    if len(words) == 3 and words[0] == "sgewrap" and words[1].isdigit() and words[2].isdigit():
        return lines[0], int(words[1]), int(words[2]), reap
    return lines[0], None, None, None


def _live(name, record):
    tail = name[len(PREFIX):]
    if not (tail.isascii() and tail.isdigit()):
        return True               # not a setup file the module would ever open: not ours to judge
    pid = int(tail)
    if record[1] is not None:
        return record[1] == pid and procs.alive_as(pid, record[2])
    return procs.stat_of(pid) is not None and procs.real_uid(pid) == 0


def _sweep(setup_dir, log=None):
    removed = []
    with os.scandir(setup_dir) as entries:
        names = [e.name for e in entries if e.name.startswith(PREFIX)]
    for name in names:
        path = os.path.join(setup_dir, name)
        try:
            record = _read(path)
            if record is None or _live(name, record):
                continue
            os.unlink(path)
            removed.append(name)
        except OSError as err:
            if log:
                log("warning", "sweeping %s: %s" % (path, err.strerror or err))
    if removed and log:
        log("info", "swept %d stale setup file%s: %s"
            % (len(removed), "" if len(removed) == 1 else "s", " ".join(sorted(removed))))
    return removed


def sweep(setup_dir=SETUP_DIR, log=None):
    """Remove every setup file that is not live; the names removed."""
    with _Locked(setup_dir):
        return _sweep(setup_dir, log)


def create(pid, spool, setup_dir=SETUP_DIR, log=None, reap=None, shepherd=None):
    """Write the setup file of the running process ``pid`` naming ``spool``; its path.  ``reap``: a
    job group id whose processes the session's close kills (a line ``reap GID``); ``shepherd``:
    (PID, start) of the task's shepherd (a line ``shepherd PID START``, which pam_sgewrap's watcher
    of an adopted login waits for)."""
    if "\n" in spool or len(os.fsencode(spool)) > MAX_SPOOL_BYTES:
        raise SetupError("spool directory %r is longer than pam_sge-qrsh-setup reads or holds a newline" % spool)
    st = procs.stat_of(pid)
    if st is None:
        raise SetupError("process %d is gone" % pid)
    path = path_of(setup_dir, pid)
    data = os.fsencode(spool) + b"\nsgewrap %d %d\n" % (pid, st.start) + (b"reap %d\n" % reap if reap else b"") \
        + (b"shepherd %d %d\n" % tuple(shepherd) if shepherd else b"")
    with _Locked(setup_dir):
        _sweep(setup_dir, log)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            # live: this very process has a file already (a second hook call of one connection)
            if _read(path)[:3] == (spool, pid, st.start):
                return path
            raise SetupError("%s exists and belongs to a live process" % path)
        except OSError as err:
            raise SetupError("cannot create %s: %s" % (path, err.strerror))
        try:
            os.fchmod(fd, 0o600)
            if os.geteuid() == 0:
                os.fchown(fd, 0, 0)
            frame.write_all(fd, data)
        except BaseException:
            os.unlink(path)
            raise
        finally:
            os.close(fd)
    return path


def release(pid, start, setup_dir=SETUP_DIR):
    """Remove the setup file of the process ``pid`` that started at ``start`` (clock ticks), running
    or not (the watcher of a session calls this once its monitor has exited); what it held, (spool,
    pid, start, reap gid or None), or None if there was no file of that very process."""
    path = path_of(setup_dir, pid)
    with _Locked(setup_dir):
        record = _read(path)
        if record is None or record[1:3] != (pid, start):
            return None
        os.unlink(path)
        return record
