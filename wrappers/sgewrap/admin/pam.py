"""PAM files: the job sshds' own service, the old module line, the node-access rules.

Tight integration of sshd (remote-startup.md, section 3) needs
``pam_sge-qrsh-setup`` in the *auth* stack of the sshd that Grid Engine
starts.  Since version 0.2 that sshd runs as ``sge-sshd`` and so has a PAM
service of its own, :data:`JOB_PAM_FILE` (``/etc/pam.d/sge-sshd``), which
:func:`write_job_stack` writes whole and :func:`remove_job_stack` removes
(only a file it wrote: it starts with :data:`JOB_STACK_MARK`).  The site's
``/etc/pam.d/sshd`` serves ordinary logins and is not touched; a module line
that version 0.1 put at its top (:data:`PAM_LINE`) is found by
:func:`has_line` (``sgewrap check`` flags it) and removed by
:func:`remove_line`.  Every change replaces a file atomically (a temporary
file in the same directory, renamed over it) keeping its mode and owner, and
follows a symlinked file to the real one.  Stdlib only.
"""
import os
import re
import tempfile

from ..methods import JOB_PAM_FILE, JOB_SSHD_NAME
from ..rootside.options import MIN_UID

PAM_FILE = "/etc/pam.d/sshd"
MODULE = "pam_sge-qrsh-setup.so"
PAM_LINE = "auth required " + MODULE
MODULE_SGEWRAP = "pam_sgewrap.so"
JOB_STACK_MARK = "# sgewrap: the PAM service of the sshd that Grid Engine starts for job sessions"
#: what the job stack must not reach, and why (check reports it)
JOB_STACK_FORBIDDEN = {
    "pam_systemd.so": "it moves the session's processes into a systemd user slice, out of the job",
    "pam_limits.so": "it sets limits.conf's limits as root, over the limits Grid Engine gave the job",
    "pam_listfile.so": "a node-access rule there refuses qrsh -inherit on the slave hosts of parallel jobs",
}

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


# --- the job sshds' own PAM service ----------------------------------------------------------


def module_options(wrappers_dir):
    """The node_access options the module lines carry: who besides root owns the spool, resolved
    now from the cell's bootstrap (the module then reads no file under SGE_ROOT, which may be on
    NFS, at session time), else the SGE_ROOT to read it from."""
    import pwd
    from ..rootside import jobspool
    root = jobspool.sge_root_from(os.path.join(wrappers_dir, "node_access"))
    names = []
    for uid in sorted(jobspool.admin_uids(root)) if root else ():
        try:
            names.append(pwd.getpwuid(uid).pw_name)
        except KeyError:
            pass
    if names:
        return ["--admin-user=%s" % n for n in names]
    return ["--sge-root=%s" % root] if root else []


def module_line(kind, service, options=()):
    """A rule for pam_sgewrap.so: ``kind`` (auth, account, session), its ``service`` (job or setup)."""
    return "%-8s required  %s %s" % (kind, MODULE_SGEWRAP, " ".join([service] + list(options)))


def job_stack(wrappers_dir):
    """The text of /etc/pam.d/sge-sshd for the wrappers installed in ``wrappers_dir``."""
    from .pammodule import JOB
    if any(c.isspace() for c in wrappers_dir):
        raise ValueError("the wrappers directory %r holds white space: a PAM line cannot name it" % wrappers_dir)
    options = module_options(wrappers_dir)
    if any(c.isspace() for c in "".join(options)):
        raise ValueError("white space in %s" % " ".join(options))
    return "\n".join((
        JOB_STACK_MARK,
        "# (sge_conf *_daemon \"%s -i\": sshd under the name %s).  Ordinary ssh logins use"
        % (os.path.join(wrappers_dir, JOB_SSHD_NAME), JOB_SSHD_NAME),
        "# /etc/pam.d/sshd, which this does not touch.  Written by \"sgewrap config ssh --tight --apply\",",
        "# removed by \"sgewrap config --restore\".  pam_sgewrap admits the job's owner only, gives the",
        "# session the job's group and environment (setcred) and kills what it leaves (session); it runs",
        "# no program.  Left out on purpose: pam_systemd (it would move job processes into a user slice),",
        "# pam_limits (Grid Engine sets the job's limits), node-access rules (only the job's owner gets in,",
        "# on every host of a parallel job), and any pam_exec line (it would run a root program with the",
        "# session's PAM environment).  pam_sgewrap's auth line follows common-auth: the job's environment",
        "# it loads reaches no other module's setcred.",
        "@include common-auth",
        module_line("auth", JOB, options),
        module_line("account", JOB, options),
        "@include common-account",
        module_line("session", JOB, options),
        "@include common-session-noninteractive",
        "@include common-password",
        ""))


def install_job_stack(wrappers_dir, path=JOB_PAM_FILE):
    """The module in this host's PAM directory (:func:`sgewrap.admin.pammodule.ensure_installed`), then
    the job stack that loads it; True if either changed."""
    from . import pammodule
    _, changed = pammodule.ensure_installed(wrappers_dir)
    return write_job_stack(wrappers_dir, path) or changed


def is_marked(path, mark):
    """True if ``path`` exists and starts with ``mark`` (a file sgewrap owns whole)."""
    try:
        return _read(path).startswith(mark)
    except FileNotFoundError:
        return False


def remove_marked(path, mark):
    """Remove ``path`` if it starts with ``mark``; True if removed."""
    if not is_marked(path, mark):
        return False
    os.unlink(path)
    return True


def is_job_stack(path=JOB_PAM_FILE):
    """True if ``path`` exists and was written by :func:`write_job_stack`."""
    return is_marked(path, JOB_STACK_MARK)


def write_marked(path, text, mark):
    """Write ``text`` (a file sgewrap owns whole, starting with ``mark``) to ``path``, mode 0644, root's;
    True if changed.  A file there that does not start with ``mark`` was not sgewrap's: refused."""
    try:
        old = _read(path)
    except FileNotFoundError:
        old = None
    if old == text:
        return False
    if old is not None and not old.startswith(mark):
        raise OSError("%s exists and was not written by sgewrap: not replaced" % path)
    from ..rootside.frame import write_atomic
    write_atomic(path, text.encode(), 0o644)
    return True


def write_job_stack(wrappers_dir, path=JOB_PAM_FILE):
    """Write the job stack (mode 0644, root's); True if changed.  A file sgewrap did not write is refused."""
    return write_marked(path, job_stack(wrappers_dir), JOB_STACK_MARK)


def remove_job_stack(path=JOB_PAM_FILE):
    """Remove the job stack if sgewrap wrote it; True if removed."""
    return remove_marked(path, JOB_STACK_MARK)


def job_stack_problems(path=JOB_PAM_FILE, pam_dir=None):
    """What is wrong with the job stack here: a list of sentences (empty: fine)."""
    try:
        text = _read(path)
    except OSError as err:
        return ["%s: %s (sgewrap config ssh --tight --apply writes it)" % (path, err.strerror or err)]
    problems = []
    lines = _expanded(text, pam_dir or os.path.dirname(path))
    ours = {_type_of(ln) for ln in lines if _module_of(ln) == MODULE_SGEWRAP and _words(ln)[3:4] == ["job"]}
    if any(_module_of(ln) == "pam_exec.so" and "node_access" in ln for ln in lines) or any(
            is_module_line(ln) for ln in lines):
        problems.append("%s was written by sgewrap 0.2: pam_exec runs node_access (a Python start per session; "
                        "keyboard-interactive logins are not tied) and pam_sge-qrsh-setup honours setup files it "
                        "never checks; re-run 'sgewrap config ssh --tight --apply' (README: Security advisory)" % path)
    elif ours != {"auth", "account", "session"}:
        problems.append("%s lacks pam_sgewrap.so job in its %s stack: sessions are not tied to their job nor "
                        "limited to its owner" % (path, ", ".join(sorted({"auth", "account", "session"} - ours))))
    for module, why in JOB_STACK_FORBIDDEN.items():
        if any(_module_of(ln) == module for ln in lines):
            problems.append("%s reaches %s: %s" % (path, module, why))
    if session_hooks(lines):
        problems.append("%s was written by sgewrap 0.2: it runs node_access as root at session close with the "
                        "session's PAM environment (whatever a module puts there from the user's files reaches "
                        "a root program's loader); re-run 'sgewrap config ssh --tight --apply' (README: Security "
                        "advisory)" % path)
    return problems


def session_hooks(lines):
    """The active session rules that run node_access (sgewrap 0.2 wrote them; 0.2.1 writes none).

    ``pam_exec`` starts its program with the PAM environment, which holds what
    the user set once the session is open (``pam_env user_readenv=1`` reads
    ``~/.pam_environment``): the dynamic loader of a root program started
    there honours the user's ``LD_PRELOAD``, ``LD_AUDIT``... before any
    Python runs."""
    return [ln for ln in lines if _type_of(ln) == "session" and _module_of(ln) == "pam_exec.so"
            and any(os.path.basename(w) == "node_access" for w in ln.split("#", 1)[0].split())]


def _type_of(line):
    match = _RULE.match(line.split("#", 1)[0])
    return match.group("type").lower() if match else None


def _words(line):
    return line.split("#", 1)[0].split()


def _module_of(line):
    match = _RULE.match(line.split("#", 1)[0])
    return os.path.basename(match.group("module")) if match else None


def _expanded(text, pam_dir, depth=0):
    """The rule lines of a PAM file with its @include files inlined."""
    out = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if words[:1] == ["@include"] and len(words) == 2 and depth < 5:
            try:
                out += _expanded(_read(os.path.join(pam_dir, words[1])), pam_dir, depth + 1)
            except OSError:
                pass
        elif words:
            out.append(line)
    return out


# --- node access (node_access prolog/epilog) --------------------------------------------------

NODE_ACCESS_MARK = "# sgewrap node_access: ssh only for users with a job on this host (and system users)"
NODE_ACCESS_USERS = "/run/sgewrap/node-access.users"


def node_access_lines(users_file=NODE_ACCESS_USERS, min_uid=MIN_UID):
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


def add_node_access(path=PAM_FILE, users_file=NODE_ACCESS_USERS, min_uid=MIN_UID):
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


# --- adopt (node_access adopt) in the site's sshd ---------------------------------------------

ADOPT_MARK = "# sgewrap adopt: an ssh login joins the user's job on this host (node_access adopt), or is refused"
ADOPT_END = "# sgewrap adopt: end"


def adopt_lines(wrappers_dir, options=()):
    """The adopt block: the module (for setcred), the hook in the account stack.  Users below the
    hook's ``--ignore-below-uid`` skip it (the same bound in the pam_succeed_if line)."""
    from ..errors import WrapperError
    from ..rootside.nodeaccess import TABLE
    hook = os.path.join(wrappers_dir, "node_access")
    if any(c.isspace() for c in hook) or any(c.isspace() for c in options):
        raise ValueError("white space in %r or the options: pam_exec cannot run it" % hook)
    try:
        values, _ = TABLE.parse(list(options))
    except WrapperError as err:
        raise ValueError("node_access adopt %s: %s" % (" ".join(options), err))
    from .pammodule import SETUP
    setup = [o for o in options if o.startswith("--setup-dir=")]
    return [ADOPT_MARK,
            module_line("auth", SETUP, setup),
            module_line("session", SETUP, setup),
            "account [success=1 default=ignore] pam_succeed_if.so quiet uid < %d" % values.ignore_below_uid,
            "account required pam_exec.so quiet stdout %s %sadopt" % (hook, "".join(o + " " for o in options)),
            ADOPT_END]


def has_adopt(path=PAM_FILE):
    return ADOPT_MARK in _read(path).splitlines()


def add_adopt(wrappers_dir, options=(), path=PAM_FILE):
    """The adopt block at the top of the file (replacing one there); True if changed."""
    text = _read(path)
    lines = text.splitlines(True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    block = "".join(line + newline for line in adopt_lines(wrappers_dir, options))
    rest = "".join(_without_adopt(lines))
    if block + rest == text:
        return False
    _replace(path, block + rest)
    return True


def remove_adopt(path=PAM_FILE):
    lines = _read(path).splitlines(True)
    kept = _without_adopt(lines)
    if len(kept) == len(lines):
        return False
    _replace(path, "".join(kept))
    return True


def _without_adopt(lines):
    kept, inside = [], False
    for line in lines:
        bare = line.rstrip("\r\n")
        if bare == ADOPT_MARK:
            inside = True
        elif inside and bare == ADOPT_END:
            inside = False
        elif not inside:
            kept.append(line)
    return kept


def _adopt_block(path):
    """The lines of the adopt block (empty without one)."""
    lines = _read(path).splitlines()
    if ADOPT_MARK not in lines:
        return []
    block = lines[lines.index(ADOPT_MARK):]
    return block[:block.index(ADOPT_END)] if ADOPT_END in block else block


def _adopt_hooks(block):
    """The words of the block's pam_exec rules that run node_access adopt."""
    return [line.split() for line in block if "pam_exec.so" in line and line.rstrip().endswith("adopt")]


def adopt_hook(path=PAM_FILE):
    """The program the adopt block's account rule runs (an absolute path), or None."""
    for words in _adopt_hooks(_adopt_block(path)):
        if words[:1] == ["account"]:
            return next((w for w in words if w.startswith("/")), None)
    return None


def adopt_problems(path=PAM_FILE):
    """What is wrong with this host's adopt block: sentences (empty: fine, or no block)."""
    block = _adopt_block(path)
    if not block:
        return []
    problems = []
    if any(is_module_line(line) for line in block):
        problems.append("%s: the adopt block was written by sgewrap 0.2: pam_sge-qrsh-setup honours a setup file "
                        "without checking it was written for the login that reads it (a stale one hands a job's "
                        "group and environment to the next login with its PID); re-run 'sgewrap node-access "
                        "--adopt --apply' (README: Security advisory)" % path)
    elif not any(_module_of(line) == MODULE_SGEWRAP and _type_of(line) == "auth" for line in block):
        problems.append("%s runs node_access adopt without '%s': logins are admitted but not tied to "
                        "their job" % (path, module_line("auth", "setup").split(None, 1)[1]))
    hooks = _adopt_hooks(block)
    if not any(words[:1] == ["account"] for words in hooks):
        problems.append("%s has the adopt block but no 'node_access adopt' account rule: nobody is refused "
                        "or tied" % path)
    for words in hooks:
        program = next((w for w in words if w.startswith("/")), None)
        if program and not os.path.isfile(program):
            problems.append("%s runs %s, which is missing: every login from uid 1000 up is refused" % (path, program))
    if session_hooks(block):
        problems.append("%s: the adopt block was written by sgewrap 0.2: it runs node_access as root at session "
                        "close with the user's PAM environment (~/.pam_environment: LD_PRELOAD... gives every "
                        "user it admits root); re-run 'sgewrap node-access --adopt --apply' (README: Security "
                        "advisory)" % path)
    return problems
