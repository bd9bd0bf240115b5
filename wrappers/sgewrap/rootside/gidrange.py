"""This host's Grid Engine ``gid_range``, for the close-time reaper that kills by a job's group id.

A tight session's close kills every process that carries its task's group
id, the ``addgrpid`` of its spool directory.  That file is root's or the
admin user's, but nothing else says the number is a job's: 100 (``users``)
or a site group would kill every process of that group on the host.  execd
only ever hands out ids of ``gid_range``, so the reaper kills only inside it.

Where the range comes from: never from ``qconf`` (a session's close must not
wait on qmaster, which may be slow, far or down), but from a cache that
``sgewrap config ... --apply`` and ``sgewrap node-access ... --apply`` write
from ``qconf -sconf``: :data:`CACHE`, ``/var/lib/sgewrap/gid_range``.  It is
persistent state, like the configuration it copies: a file in ``/run`` would
be gone after every reboot and the check silently off until the next
``--apply``.  Root's, mode 0644, in a directory of root's that nobody else may
write, replaced whole (:func:`sgewrap.rootside.frame.write_atomic`).  One
line per configuration that sets ``gid_range``, its value as ``qconf -sconf``
shows it (``m-n`` and ``m`` items, comma-separated)::

    # sgewrap: gid_range of each Grid Engine configuration (qconf -sconf), for the session reaper
    global 20000-20100
    node2 65600-65799

A host's range is the line of its local configuration (its name, or the same
name up to the first dot), else the global one: the same file is right on
every host, and on hosts that share one file system.

What the reaper does (:func:`reapable`): a gid inside the range is reaped; one
outside is not (logged); with no cache at all (a host set up before this
check, or never ``--apply``'d) it reaps as before and says so once per boot
(a marker in ``/run/sgewrap``); a cache root cannot rely on (not root's,
writable by others, malformed, no line for this host) reaps nothing (logged):
a broken cache is the administrator's to mend, an unchecked kill is what this
prevents.  pam_sgewrap.so reads the same file the same way (its parser is
tested against :func:`gid_in_range`).  ``sgewrap check`` says when the cache is
missing or differs from the configurations.  Stdlib only.
"""
import errno
import os
import stat

from . import frame

CACHE = "/var/lib/sgewrap/gid_range"
#: where "no cache" is remembered as said (emptied at boot)
MARK_DIR = "/run/sgewrap"
MARK = "gid_range.unknown"
GLOBAL = b"global"
MAX_BYTES = 1 << 20
HEADER = "# sgewrap: gid_range of each Grid Engine configuration (qconf -sconf), for the session reaper\n"

IN, OUT, NONE, BROKEN = "in", "out", "none", "broken"


class Unusable(frame.Cannot):
    """The cache is there but root cannot rely on it; the message says why."""


def parse_ranges(value):
    """[(low, high)...] of a gid_range value (bytes: ``m-n`` and ``m`` items, comma-separated, each id
    1..2^31-1, low <= high), or None if it is not one."""
    ranges = []
    for item in value.split(b","):
        low, dash, high = item.partition(b"-")
        if not dash:
            high = low
        if not (low.isdigit() and high.isdigit() and len(low) <= 10 and len(high) <= 10):
            return None
        low, high = int(low), int(high)
        if not 0 < low <= high <= 0x7fffffff:
            return None
        ranges.append((low, high))
    return ranges


def _short(name):
    return name.split(b".", 1)[0]


def line_for(data, host):
    """The gid_range value (bytes) that applies to ``host`` in the cache's ``data``: the first line
    of its configuration, else the first ``global`` line; None if neither is there."""
    host = _short(os.fsencode(host))
    found = None
    for line in data.split(b"\n"):
        words = line.split()
        if len(words) != 2 or line.startswith(b"#"):
            continue
        if host and _short(words[0]) == host:
            return words[1]
        if words[0] == GLOBAL and found is None:
            found = words[1]
    return found


def gid_in_range(data, host, gid):
    """True if ``gid`` is inside the range that applies to ``host`` in the cache's ``data``, False if
    outside, None if no line applies or the one that does is malformed."""
    value = line_for(data, host)
    ranges = parse_ranges(value) if value is not None else None
    if ranges is None:
        return None
    return any(low <= gid <= high for low, high in ranges)


def read(path=None):
    """The cache's bytes, or None if there is none; Unusable if root cannot rely on it."""
    path = path or CACHE
    if not os.path.lexists(os.path.dirname(path)):
        return None
    try:
        frame.private_dir(os.path.dirname(path))
    except frame.UnsafeError as err:
        raise Unusable(str(err))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise Unusable("%s: %s" % (path, "a symbolic link" if err.errno == errno.ELOOP else err.strerror))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
            raise Unusable("%s is not a regular file of root's that only root may write (uid %d, mode %o)"
                           % (path, st.st_uid, stat.S_IMODE(st.st_mode)))
        data = os.read(fd, MAX_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_BYTES:
        raise Unusable("%s is larger than %d bytes" % (path, MAX_BYTES))
    return data


def this_host():
    return os.uname().nodename


def verdict(gid, path=None, host=None):
    """(IN|OUT|NONE|BROKEN, what the cache says) for the reaper of ``gid`` on ``host`` (this one)."""
    path = path or CACHE
    host = host or this_host()
    try:
        data = read(path)
    except Unusable as err:
        return BROKEN, str(err)
    if data is None:
        return NONE, "no %s" % path
    value = line_for(data, host)
    inside = gid_in_range(data, host, gid)
    if inside is None:
        return BROKEN, "%s has %s for %s" % (
            path, "no line" if value is None else "a malformed line (%r)" % value[:40], host)
    return (IN if inside else OUT), "gid_range %s of %s (%s)" % (value.decode("ascii", "replace"), host, path)


def _first_time(mark_dir):
    """True the first time this is asked since boot (a marker file in ``mark_dir``, root's), and when
    it cannot be told: better said twice than never."""
    try:
        frame.private_dir(mark_dir, create=True)
        fd = os.open(os.path.join(mark_dir, MARK), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o644)
    except FileExistsError:
        return False
    except (OSError, frame.UnsafeError):
        return True
    os.close(fd)
    return True


def reapable(gid, log, what, path=None, host=None, mark_dir=None):
    """Whether the reaper may kill by ``gid`` (for ``what``, a session); says why not, and says once
    per boot that there is no cache to check it against."""
    kind, detail = verdict(gid, path, host)
    if kind == IN:
        return True
    if kind == NONE:
        if _first_time(mark_dir or MARK_DIR):
            log("warning", "%s: job group ids are not checked against gid_range before a session's leftovers are "
                "killed (%s: sgewrap config ... --apply writes it); said once per boot" % (what, detail))
        return True
    if kind == OUT:
        log("warning", "%s: not killing what carries gid %d: outside %s (a stale cache? sgewrap check says; "
            "sgewrap config ... --apply rewrites it)" % (what, gid, detail))
    else:
        log("err", "%s: not killing what carries gid %d: %s (sgewrap config ... --apply rewrites it)"
            % (what, gid, detail))
    return False


def render(values):
    """The cache's text for ``values``, [(configuration name, gid_range value)...] (global first);
    ValueError for a value that is no gid_range or a name with white space."""
    lines = [HEADER]
    for name, value in values:
        if not name or any(c.isspace() for c in name) or parse_ranges(os.fsencode(value or "")) is None:
            raise ValueError("configuration %r: gid_range %r is not a list of group id ranges" % (name, value))
        lines.append("%s %s\n" % (name, value))
    return "".join(lines)


def write(values, path=None):
    """Replace the cache with ``values`` (see :func:`render`): root's, 0644, atomically, in a directory
    made if missing (0755)."""
    path = path or CACHE
    text = render(values)
    frame.private_dir(os.path.dirname(path), create=True)
    frame.write_atomic(path, text.encode())
    return path
