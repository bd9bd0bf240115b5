"""A job's spool directory, read by root-run code that cannot trust the job's environment.

``rshdwrapper`` (the daemon side of a session) and ``node_access`` (the queue's
prolog and epilog) run as root with an environment the job's owner controls.
What they learn about the job comes from ``$SGE_JOB_SPOOL_DIR`` (execd sets
it; a user's ``qsub -v`` of it was overridden in a test here) only after the
directory, every directory above it and each file read there have been found
to belong to root or the Grid Engine admin user and to be writable by no one
else: a spool directory a user made himself tells nothing.

The admin user is the ``admin_user`` of ``SGE_ROOT/<cell>/common/bootstrap``
(every cell), or one named by the caller.  SGE_ROOT is never taken from the
environment: the caller passes it (``--sge-root``) or it is derived from the
installed script's path (``SGE_ROOT/util/resources/wrappers/NAME``), else
Debian's packaged ``/var/lib/gridengine``.  Stdlib only.
"""
import os
import stat

from .frame import Cannot

#: SGE_ROOT of the distribution packages (Debian, Ubuntu), used when the script is not
#: installed below an SGE_ROOT (e.g. a scratch install) and no --sge-root is given
FALLBACK_SGE_ROOTS = ("/var/lib/gridengine",)


class NoJob(Cannot):
    """No usable job context; the message says why."""


# --- SGE_ROOT, the admin user ------------------------------------------------------------


def bootstrap_files(sge_root):
    try:
        cells = sorted(os.listdir(sge_root))
    except OSError:
        return []
    return [p for p in (os.path.join(sge_root, c, "common", "bootstrap") for c in cells) if os.path.isfile(p)]


def looks_like_sge_root(path):
    return os.path.isdir(os.path.join(path, "utilbin")) or bool(bootstrap_files(path))


def sge_root_from(script, fallbacks=FALLBACK_SGE_ROOTS):
    """SGE_ROOT for a script installed as SGE_ROOT/util/resources/wrappers/NAME, else a packaged one, else None."""
    if script and os.path.isabs(script):
        for path in (os.path.normpath(script), os.path.realpath(script)):
            wrappers = os.path.dirname(path)
            resources = os.path.dirname(wrappers)
            util = os.path.dirname(resources)
            root = os.path.dirname(util)
            if ((os.path.basename(wrappers), os.path.basename(resources), os.path.basename(util))
                    == ("wrappers", "resources", "util") and looks_like_sge_root(root)):
                return root
    for root in fallbacks:
        if bootstrap_files(root):
            return root
    return None


def admin_uids(sge_root, names=(), log=None):
    """uids of the Grid Engine admin user(s): each cell's bootstrap admin_user, and ``names``."""
    import pwd
    uids = set()
    for name in names:
        try:
            uids.add(pwd.getpwnam(name).pw_uid)
        except KeyError:
            if log:
                log("warning", "--admin-user %s: no such user" % name)
    for path in bootstrap_files(sge_root) if sge_root else ():
        try:
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode) or st.st_mode & 0o022:
                raise OSError("not a regular file writable only by its owner")
            with open(path, encoding="utf-8", errors="replace") as f:
                words = [line.split() for line in f]
            admin = next((w[1] for w in words if len(w) >= 2 and w[0] == "admin_user"), None)
            if admin is None or admin.lower() == "none":
                continue
            uid = pwd.getpwnam(admin).pw_uid
            if st.st_uid not in (0, uid):
                raise OSError("owned by uid %d, neither root nor its admin_user %s" % (st.st_uid, admin))
            uids.add(uid)
        except (OSError, KeyError) as err:
            if log:
                log("warning", "ignoring %s: %s" % (path, err))
    return uids


# --- the spool tree -----------------------------------------------------------------------


class Trust:
    """Who may own the spool tree: root, the wrapper's own user, the admin user(s) (looked up lazily)."""

    def __init__(self, sge_root=None, admin_users=(), log=None):
        self.base = {0, os.geteuid()}
        self.sge_root = sge_root
        self.admin_users = admin_users
        self.log = log
        self._admins = None

    def __contains__(self, uid):
        if uid in self.base:
            return True
        if self._admins is None:
            self._admins = admin_uids(self.sge_root, self.admin_users, self.log)
        return uid in self._admins

    def describe(self):
        if self._admins is None:
            self._admins = admin_uids(self.sge_root, self.admin_users, self.log)
        known = ", ".join("uid %d" % u for u in sorted(self._admins)) or (
            "none known: SGE_ROOT %s" % (self.sge_root or "unknown (give --sge-root or --admin-user)"))
        return "root or the Grid Engine admin user (%s)" % known


def check_owned(path, st, trust, what):
    if st.st_uid not in trust:
        raise NoJob("%s %s is owned by uid %d, not %s" % (what, path, st.st_uid, trust.describe()))


def read_small(path, limit=64):
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        return os.read(fd, limit + 1)
    finally:
        os.close(fd)


def spool_dir(environ, trust, max_bytes=None, too_long="too long"):
    """The canonical ``$SGE_JOB_SPOOL_DIR`` if the tree up to it is trusted, else NoJob saying why."""
    value = environ.get("SGE_JOB_SPOOL_DIR")
    if not value:
        raise NoJob("SGE_JOB_SPOOL_DIR is not set")
    if not os.path.isabs(value):
        raise NoJob("SGE_JOB_SPOOL_DIR %r is not absolute" % value)
    if any(c < " " or c == "\x7f" for c in value):
        raise NoJob("SGE_JOB_SPOOL_DIR %r holds control characters" % value)
    spool = os.path.realpath(value)
    if any(c < " " or c == "\x7f" for c in spool):
        raise NoJob("SGE_JOB_SPOOL_DIR %r resolves to a path with control characters" % value)
    try:
        if max_bytes is not None and len(os.fsencode(spool)) > max_bytes:
            raise NoJob("SGE_JOB_SPOOL_DIR %r is %s (%d bytes)" % (value, too_long, max_bytes))
    except UnicodeError:
        raise NoJob("SGE_JOB_SPOOL_DIR %r cannot be encoded" % value)
    try:
        st = os.lstat(spool)
    except OSError as err:
        raise NoJob("SGE_JOB_SPOOL_DIR %s: %s" % (spool, err.strerror))
    if not stat.S_ISDIR(st.st_mode):
        raise NoJob("SGE_JOB_SPOOL_DIR %s is not a directory" % spool)
    check_owned(spool, st, trust, "job spool directory")
    if st.st_mode & 0o022:
        raise NoJob("job spool directory %s is writable by group or others (mode %o)"
                    % (spool, stat.S_IMODE(st.st_mode)))
    parent = spool
    while parent != "/":
        parent = os.path.dirname(parent)
        try:
            pst = os.lstat(parent)
        except OSError as err:
            raise NoJob("%s: %s" % (parent, err.strerror))
        if not stat.S_ISDIR(pst.st_mode):
            raise NoJob("%s above the job spool directory is not a directory" % parent)
        check_owned(parent, pst, trust, "directory")
        if pst.st_mode & 0o022 and not pst.st_mode & stat.S_ISVTX:
            raise NoJob("directory %s above the job spool directory is writable by group or others (mode %o)"
                        % (parent, stat.S_IMODE(pst.st_mode)))
    return spool


def trusted_file(spool, name, trust):
    """``spool/name`` if it is a regular file of a trusted owner that no one else may write; else NoJob."""
    path = os.path.join(spool, name)
    try:
        fst = os.lstat(path)
    except OSError as err:
        raise NoJob("%s: %s" % (path, err.strerror))
    if not stat.S_ISREG(fst.st_mode):
        raise NoJob("%s is not a regular file" % path)
    check_owned(path, fst, trust, "file")
    if fst.st_mode & 0o022:
        raise NoJob("%s is writable by group or others (mode %o)" % (path, stat.S_IMODE(fst.st_mode)))
    return path


#: the config keys that decide whose a job is and which task: each must appear once
DECISIVE = ("job_owner", "job_id", "pe_task_id")


def job_config(spool, trust, limit=1 << 20):
    """``spool/config`` (the shepherd's copy of the job's settings) as a dict; NoJob if untrusted."""
    path = trusted_file(spool, "config", trust)
    try:
        data = read_small(path, limit)
    except OSError as err:
        raise NoJob("%s: %s" % (path, err.strerror))
    if len(data) > limit:
        raise NoJob("%s is larger than %d bytes" % (path, limit))
    values, twice = {}, set()
    for line in data.decode("utf-8", "replace").split("\n"):
        key, eq, value = line.partition("=")
        if eq and key in values:
            if values[key] != value:         # the same again is fine: execd writes pe_task_id twice
                twice.add(key)
        elif eq:
            values[key] = value
    decisive = twice & set(DECISIVE)
    if decisive:
        # execd writes user-given paths (qsub -o ...) before job_owner; a newline in one would add a
        # second job_owner that Grid Engine's own reader (the last wins) and ours (the first) disagree on
        raise NoJob("%s gives %s two values" % (path, ", ".join(sorted(decisive))))
    return values


# --- this host's execd spool ----------------------------------------------------------------

#: where Debian's execd keeps the active jobs of host %s
DEFAULT_ACTIVE_JOBS = "/var/spool/gridengine/execd/%s/active_jobs"


def active_jobs_dirs(given=()):
    """The ``active_jobs`` directories of this host: those ``given``, else Debian's."""
    return list(given) or [DEFAULT_ACTIVE_JOBS % os.uname().nodename]


# --- a job, as root may know it --------------------------------------------------------------

_USER_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@")


def valid_user(name):
    return bool(name) and len(name) <= 64 and name[0] != "-" and _USER_CHARS.issuperset(name)


class Job:
    """One job task (or parallel task) on this host, read from its trusted spool directory.

    ``key``: ``JOB.TASK`` (the spool directory's name), or ``JOB.TASK/PETASK``
    for a parallel task (``active_jobs/JOB.TASK/PETASK``); unique on the host
    while the task runs.
    """

    __slots__ = ("spool", "key", "job_id", "owner", "gid", "shepherd")

    def __init__(self, spool, key, job_id, owner, gid, shepherd=None):
        self.spool, self.key, self.job_id, self.owner, self.gid = spool, key, job_id, owner, gid
        self.shepherd = shepherd        #: (PID, start) of the task's shepherd, where it was found

    def __repr__(self):
        return "Job(%r, %r, owner=%r, gid=%r)" % (self.key, self.spool, self.owner, self.gid)


def read_gid(spool, trust):
    """The job's additional group id (``addgrpid``): a decimal above 0; NoJob otherwise."""
    path = trusted_file(spool, "addgrpid", trust)
    try:
        data = read_small(path)
    except OSError as err:
        raise NoJob("%s: %s" % (path, err.strerror))
    text = data.strip()
    if not (text.isdigit() and len(text) <= 10 and 0 < int(text) <= 0x7fffffff):
        raise NoJob("%s holds %r, not a group id above 0" % (path, data[:20]))
    return int(text)


def read_job(spool, trust, max_bytes=None, gid=True):
    """The :class:`Job` whose spool directory is ``spool``; NoJob saying why it is not one.

    ``gid``: the job's group too (and its ``environment`` must be trusted): what a
    session is tied to; without, only who owns which job (node access).
    """
    spool = spool_dir({"SGE_JOB_SPOOL_DIR": spool}, trust, max_bytes=max_bytes)
    if gid:
        trusted_file(spool, "environment", trust)
    config = job_config(spool, trust)
    owner = config.get("job_owner", "")
    if not valid_user(owner):
        raise NoJob("%s/config: job_owner %r is not a user name" % (spool, owner[:40]))
    job_id = config.get("job_id", "")
    name, parent = os.path.basename(spool), os.path.basename(os.path.dirname(spool))
    if job_id.isdigit() and name.split(".")[0] == job_id:
        key = name
    elif job_id.isdigit() and parent.split(".")[0] == job_id and config.get("pe_task_id") == name:
        key = parent + "/" + name
    else:
        raise NoJob("%s: not the spool directory of job %r" % (spool, job_id[:20]))
    if any(c.isspace() for c in spool):
        raise NoJob("%s: a spool directory with white space" % spool)
    return Job(spool, key, job_id, owner, read_gid(spool, trust) if gid else None)
