"""The safety layer the root-run programs share (``rshdwrapper``, ``node_access``).

They run as root with an environment and files the job's owner controls,
and with fds 1 and 2 that belong to someone else (the client's connection,
the job's output files, sshd's PAM conversation).  So, once, here:

- :func:`main`: the one preamble and the one exit: an isolated interpreter
  or nothing (:func:`require_isolated`), nothing ever written to fds 1/2,
  every failure logged and turned into an exit code, never a traceback;
- (the options: :mod:`sgewrap.rootside.options`, a table per program);
- :func:`private_dir`: a directory only root may change, checked without
  following a symlink (``lstat``: a link could be swapped after the check);
- :func:`write_atomic`: a file replaced whole (temporary file created with
  ``O_EXCL|O_NOFOLLOW``, fsync, rename), so a reader sees the old or the new
  content, never a part;
- :func:`pam_exec_environ`: the environment of a ``pam_exec`` hook with
  pam_exec's own items told from the PAM environment's;
- :func:`read_as_user`: a few bytes of a user's own file, read by a child
  that is the user (never root: a root-squashed NFS home refuses root) and
  given a hard time bound (NFS, FUSE).

Stdlib only; imports nothing it does not need.
"""
import os
import stat
import sys

from . import daemonlog
from ..errors import INTERNAL, WrapperError


class Cannot(Exception):
    """The root side cannot do what it was asked, for a reason it states (every such exception is
    one): the program logs the message and exits with its documented code, or refuses."""


class UnsafeError(Cannot):
    """A directory or file is not what root may rely on; the message says why."""


class _Discard:
    """sys.stdout/sys.stderr replacement: fds 1 and 2 are someone else's."""

    def write(self, text):
        return len(text)

    def flush(self):
        pass

    def fileno(self):
        import errno
        raise OSError(errno.EBADF, "discarded")


def require_isolated(log):
    """Re-execute the running script isolated (``python3 -I``) unless it already is.

    An interpreter that is not isolated imported ``site`` with the caller's
    ``PYTHONPATH``, ``PYTHONHOME``, user site-packages: as root that is the
    job owner's code, and it has run (``sitecustomize``, ``usercustomize``,
    ``.pth`` files) before this line does.  So this is no defence against a
    program started that way (``python3 SCRIPT`` in a prolog, a console script
    of another installer): the installers write ``-I`` into every shebang,
    and ``sgewrap check`` and ``sgewrap node-access --apply`` flag a root-run
    entry that names an interpreter without it.  What this does is keep the
    program's own later imports off the caller's paths.  Returns only when
    isolated.
    """
    if sys.flags.isolated:
        return
    exe, script = sys.executable, sys.argv[0] if sys.argv else ""
    if os.path.isabs(exe or "") and os.path.isabs(script) and os.path.isfile(script):
        # silently: logging would import syslog, and a planted syslog.py on PYTHONPATH would run
        os.execv(exe, [exe, "-I", script] + sys.argv[1:])
    raise WrapperError(INTERNAL, "refusing to run as root without an isolated interpreter (python -I): %r"
                       % script)


def main(name, run, argv=None):
    """The root programs' entry: isolated, ``run(argv, log)`` -> exit code, one exit, never a traceback."""
    log = daemonlog.Log(name)
    try:
        require_isolated(log)
        sys.stdout = sys.stderr = _Discard()
        code = run(sys.argv[1:] if argv is None else argv, log)
    except WrapperError as err:
        log("err", str(err))
        code = err.code
    except KeyboardInterrupt:
        code = 130
    except BaseException as err:   # noqa: B902 -- never a traceback on someone else's fds
        if isinstance(err, SystemExit):
            raise
        try:
            log("err", "internal error: %s: %s" % (type(err).__name__, err))
        except BaseException:
            pass
        code = INTERNAL
    sys.exit(code)


#: what pam_exec appends to the PAM environment for its program (pam_exec.c), in this order
PAM_EXEC_ITEMS = ("PAM_RHOST", "PAM_RUSER", "PAM_SERVICE", "PAM_TTY", "PAM_USER", "PAM_TYPE")
#: the items a hook decides by
PAM_DECIDING = ("PAM_TYPE", "PAM_USER")


def exec_environ(path="/proc/self/environ"):
    """The environment this process was started with: (name, value) pairs in their order, a name
    given twice kept twice (``os.environ`` keeps only the first)."""
    with open(path, "rb") as f:
        data = f.read()
    pairs = []
    for entry in data.split(b"\0"):
        name, eq, value = entry.partition(b"=")
        if eq and name:
            pairs.append((os.fsdecode(name), os.fsdecode(value)))
    return pairs


def pam_exec_environ(pairs):
    """(environ, twice) for a hook that ``pam_exec`` started.

    pam_exec passes the PAM environment first and appends its own items after
    it, so what the user put into the PAM environment (``~/.pam_environment``
    through ``pam_env user_readenv=1``, the job's ``environment`` through
    pam_sge-qrsh-setup) comes first: each of :data:`PAM_EXEC_ITEMS` is taken
    from its last occurrence.  ``twice``: the items of :data:`PAM_DECIDING`
    given more than once -- someone tried to pass for pam_exec, and the hook
    refuses."""
    environ, seen, twice = {}, set(), []
    for name, value in pairs:
        if name in seen and name in PAM_DECIDING and name not in twice:
            twice.append(name)
        seen.add(name)
        if name in PAM_EXEC_ITEMS or name not in environ:
            environ[name] = value
    return environ, twice


def private_dir(path, create=False, follow=False):
    """``path`` is a directory of the caller's (root's) that nobody else may write; else UnsafeError.

    Checked with lstat: a symbolic link is refused, not followed (whoever could
    replace its target could then plant files) -- unless ``follow``, for a
    path fixed elsewhere (pam_sge-qrsh-setup opens ``/var/run/...``, and
    Debian makes /var/run a link to /run): then the link and the directory
    holding it must be the caller's too, and the target is checked the same way.
    ``create`` makes it (0755).
    """
    if follow and os.path.islink(path):
        parent = os.path.dirname(os.path.abspath(path))
        private_dir(parent, follow=True)
        if os.lstat(path).st_uid != os.geteuid():
            raise UnsafeError("%s is a symbolic link owned by uid %d" % (path, os.lstat(path).st_uid))
        return private_dir(os.path.realpath(path), create, follow=True)
    if create:
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            pass
        except OSError as err:
            raise UnsafeError("cannot create %s: %s" % (path, err.strerror))
    try:
        st = os.lstat(path)
    except OSError as err:
        raise UnsafeError("%s: %s" % (path, err.strerror))
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeError("%s is not a directory%s" % (path, " (a symbolic link)" if stat.S_ISLNK(st.st_mode) else ""))
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise UnsafeError("%s must be owned by uid %d and not group/other writable (uid %d, mode %o)"
                          % (path, os.geteuid(), st.st_uid, stat.S_IMODE(st.st_mode)))


def write_all(fd, data):
    while data:
        data = data[os.write(fd, data):]


def write_atomic(path, data, mode=0o644):
    """Replace ``path`` with ``data`` (bytes): a new file (O_EXCL|O_NOFOLLOW, ``mode``), fsync, rename over."""
    directory, base = os.path.split(path)
    for attempt in range(100):
        tmp = os.path.join(directory, ".%s.%d.%d" % (base, os.getpid(), attempt))
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
            break
        except FileExistsError:
            continue
    else:
        raise UnsafeError("cannot create a temporary file next to %s" % path)
    try:
        os.fchmod(fd, mode)
        write_all(fd, data)
        os.fsync(fd)
        os.close(fd)
        fd = None
        os.replace(tmp, path)
    except BaseException:
        if fd is not None:
            os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


#: what :func:`read_as_user` answers
READ, MISSING, UNREADABLE = "read", "missing", "unreadable"


def _read_as(pw, path, out, limit):
    """The child of :func:`read_as_user`: become the user, read, answer on ``out``; never returns."""
    try:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):         # pam_exec reads the hook's stdout until EOF: a stuck child must not hold it
            os.dup2(null, fd)
        os.closerange(3, out)
        os.closerange(out + 1, 65536)
        try:
            groups = os.getgrouplist(pw.pw_name, pw.pw_gid)
        except OSError:
            groups = [pw.pw_gid]
        if (os.geteuid(), os.getegid()) != (pw.pw_uid, pw.pw_gid):
            os.setgroups(groups)
            os.setgid(pw.pw_gid)
            os.setuid(pw.pw_uid)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            answer = MISSING.encode() + b"\n"
        except OSError as err:
            import errno
            answer = b"%s\n%s" % (UNREADABLE.encode(), b"a symbolic link" if err.errno == errno.ELOOP
                                  else os.fsencode(err.strerror or str(err)))
        else:
            st = os.fstat(fd)
            data = os.read(fd, limit + 1) if stat.S_ISREG(st.st_mode) else b""
            if not stat.S_ISREG(st.st_mode):
                answer = b"%s\nnot a regular file" % UNREADABLE.encode()
            elif st.st_uid != pw.pw_uid:
                answer = b"%s\nnot the user's (owned by uid %d)" % (UNREADABLE.encode(), st.st_uid)
            elif len(data) > limit:
                answer = b"%s\nlonger than %d bytes" % (UNREADABLE.encode(), limit)
            else:
                answer = READ.encode() + b"\n" + data
        write_all(out, answer)
    except BaseException as err:       # noqa: B902 -- a fork never returns into the hook
        try:
            write_all(out, b"%s\n%s" % (UNREADABLE.encode(), type(err).__name__.encode()))
        except BaseException:          # noqa: B902
            pass
    finally:
        os._exit(0)


def read_as_user(pw, path, timeout, limit=64):
    """(status, value) of the small file ``path`` of the user ``pw`` (a passwd entry), read as that user:
    (READ, its bytes), (MISSING, b"") when there is no such file, or (UNREADABLE, why) when it is
    there but cannot be read in ``timeout`` seconds (a user may write at most ``limit`` bytes there).

    A forked child sets the user's groups, gid and uid, then opens the file O_NOFOLLOW|O_NONBLOCK
    (no link followed, no FIFO waited on) and passes it back over a pipe.  So what root may read is
    never the question (a root-squashed NFS home refuses root, and a file the user cannot read is
    not read for them), and a home on a stalled NFS or FUSE mount stalls only the child: it is
    killed at the time bound and not waited for (a process stuck in the kernel dies when the call
    returns).  The child holds no fd but the pipe and /dev/null, and is the user's: the user can
    stop or kill it, which only makes the answer UNREADABLE."""
    import select
    import time
    r, w = os.pipe()
    try:
        child = os.fork()
    except OSError as err:
        os.close(r)
        os.close(w)
        return UNREADABLE, "cannot fork: %s" % err.strerror
    if child == 0:
        os.close(r)
        _read_as(pw, path, w, limit)
    os.close(w)
    data, deadline = b"", time.monotonic() + timeout
    try:
        while len(data) <= limit + 64:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                data = None
                break
            chunk = os.read(r, 4096)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(r)
        _end_child(child)
    if data is None:
        return UNREADABLE, "not read within %g s" % timeout
    status, _, value = data.partition(b"\n")
    if status == READ.encode():
        return READ, value
    if status == MISSING.encode():
        return MISSING, b""
    return UNREADABLE, value.decode("utf-8", "replace") if status == UNREADABLE.encode() else "no answer"


def _end_child(pid):
    """Reap the child ``pid`` if it is done, else kill it; never wait for one stuck in the kernel."""
    import signal
    import time
    for attempt in range(20):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        if attempt == 0:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.005)
