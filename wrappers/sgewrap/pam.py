"""The ``pam_sge-qrsh-setup`` line in sshd's PAM stack: find it, add it, remove it.

Tight integration of sshd (remote-startup.md, section 3) needs the module in
the *auth* stack of ``/etc/pam.d/sshd``: its ``pam_sm_setcred`` adds the job's
additional group id.  ``add_line`` puts :data:`PAM_LINE` at the very top, the
way Grid Engine's documentation asks, and ``remove_line`` takes every active
auth line of the module out again.  Both replace the file atomically (a
temporary file in the same directory, renamed over it) keeping its mode and
owner, and follow a symlinked ``/etc/pam.d/sshd`` to the real file.  Stdlib
only.
"""
import os
import re
import tempfile

PAM_FILE = "/etc/pam.d/sshd"
MODULE = "pam_sge-qrsh-setup.so"
PAM_LINE = "auth required " + MODULE

# TYPE CONTROL MODULE-PATH [ARGS]: TYPE may start with "-" (ignore a missing
# module), CONTROL may be a bracketed list with spaces in it.
_RULE = re.compile(r"^\s*-?(?P<type>[A-Za-z]+)\s+(?:\[[^\]]*\]|\S+)\s+(?P<module>\S+)")


def is_module_line(line):
    """True if ``line`` is an active (uncommented) auth rule loading the module."""
    text = line.split("#", 1)[0]
    match = _RULE.match(text)
    return bool(match and match.group("type").lower() == "auth"
                and os.path.basename(match.group("module")) == MODULE)


def _read(path):
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        return f.read()


def has_line(path=PAM_FILE):
    """True if the PAM file has an active auth line for pam_sge-qrsh-setup."""
    return any(is_module_line(line) for line in _read(path).splitlines())


def _replace(path, text):
    """Atomically replace ``path`` (a symlink's target) with ``text``, same mode and owner."""
    real = os.path.realpath(path)
    st = os.stat(real)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(real), prefix=".%s.sgewrap-" % os.path.basename(real))
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape", newline="") as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), st.st_mode & 0o7777)
            if (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
                os.fchown(f.fileno(), st.st_uid, st.st_gid)
            os.fsync(f.fileno())
        os.replace(tmp, real)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def add_line(path=PAM_FILE):
    """Put :data:`PAM_LINE` at the top of the file unless an active one is there; True if changed."""
    text = _read(path)
    if any(is_module_line(line) for line in text.splitlines()):
        return False
    end = text.find("\n")
    newline = "\r\n" if end > 0 and text[end - 1] == "\r" else "\n"
    _replace(path, PAM_LINE + newline + text)
    return True


def remove_line(path=PAM_FILE):
    """Remove every active auth line of the module; True if changed."""
    text = _read(path)
    lines = text.splitlines(True)
    kept = [line for line in lines if not is_module_line(line)]
    if len(kept) == len(lines):
        return False
    _replace(path, "".join(kept))
    return True
