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


# --- node access (node_access prolog/epilog) --------------------------------------------------

NODE_ACCESS_MARK = "# sgewrap node_access: ssh only for users with a job on this host (and system users)"
NODE_ACCESS_USERS = "/run/sgewrap/node-access.users"


def node_access_lines(users_file=NODE_ACCESS_USERS, min_uid=1000):
    """The account rules: users below ``min_uid`` pass, everyone else must be in ``users_file``."""
    return [NODE_ACCESS_MARK,
            "account [success=1 default=ignore] pam_succeed_if.so quiet uid < %d" % min_uid,
            "account required pam_listfile.so item=user sense=allow file=%s onerr=fail" % users_file]


def _is_node_access_rule(line):
    text = line.split("#", 1)[0]
    match = _RULE.match(text)
    return bool(match and match.group("type").lower() == "account"
                and os.path.basename(match.group("module")) == "pam_listfile.so" and "node-access" in text)


def has_node_access(path=PAM_FILE):
    """True if the file has an active pam_listfile account rule reading a node-access list."""
    return any(_is_node_access_rule(line) for line in _read(path).splitlines())


def add_node_access(path=PAM_FILE, users_file=NODE_ACCESS_USERS, min_uid=1000):
    """Put the node-access rules before the first account rule (or @include common-account); True if changed."""
    text = _read(path)
    lines = text.splitlines(True)
    if any(_is_node_access_rule(line) for line in lines):
        return False
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    at = next((i for i, line in enumerate(lines)
               if line.split("#", 1)[0].split()[:1] in (["account"], ["-account"])
               or line.split("#", 1)[0].split()[:2] == ["@include", "common-account"]), len(lines))
    if at == len(lines) and lines and not lines[-1].endswith("\n"):
        lines[-1] += newline
    block = [line + newline for line in node_access_lines(users_file, min_uid)]
    _replace(path, "".join(lines[:at] + block + lines[at:]))
    return True


def remove_node_access(path=PAM_FILE):
    """Remove the block :func:`add_node_access` added; True if changed."""
    lines = _read(path).splitlines(True)
    kept, i = [], 0
    while i < len(lines):
        if lines[i].rstrip("\r\n") == NODE_ACCESS_MARK and i + 2 < len(lines) \
                and "pam_succeed_if.so" in lines[i + 1] and _is_node_access_rule(lines[i + 2]):
            i += 3
            continue
        kept.append(lines[i])
        i += 1
    if len(kept) == len(lines):
        return False
    _replace(path, "".join(kept))
    return True
