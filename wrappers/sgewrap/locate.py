"""Find a client or daemon program at run time.

sge_conf values are taken literally (``$SGE_ROOT``/``$ARC`` are not expanded),
so a configuration naming ``$SGE_ROOT/utilbin/lx-amd64/rsh`` needs one local
configuration per architecture.  A candidate written ``utilbin:NAME`` here is
resolved on the host itself: ``$SGE_ROOT/utilbin/<this host's ARC>/NAME``.

ARC is guessed from ``os.uname()`` (what ``$SGE_ROOT/util/arch`` would print on
the common platforms) and checked against the directories that exist; only
when no guess exists is the slow ``util/arch`` script itself run.
"""
import os

from .errors import NO_CLIENT, WrapperError

_MACHINES = {
    "x86_64": "amd64", "amd64": "amd64", "i386": "x86", "i486": "x86", "i586": "x86",
    "i686": "x86", "aarch64": "arm64", "arm64": "arm64", "ppc64le": "ppc64le",
    "ppc64": "ppc64", "s390x": "s390x", "armv7l": "armhf", "riscv64": "riscv64",
}
_SYSTEMS = {"Linux": ("lx", "lx26", "lx24", "ulx"), "Darwin": ("darwin",),
            "SunOS": ("sol",), "FreeBSD": ("fbsd",), "NetBSD": ("nbsd",)}


def arch_guesses():
    """SGE architecture names this host may have, most likely first."""
    u = os.uname()
    machine = _MACHINES.get(u.machine, u.machine)
    guesses = ["%s-%s" % (prefix, machine) for prefix in _SYSTEMS.get(u.sysname, ())]
    if u.sysname == "Darwin" and machine == "amd64":
        guesses.append("darwin-x64")
    return guesses


def sge_arch(sge_root):
    """This host's ARC under ``sge_root``, or None if it cannot be told."""
    utilbin = os.path.join(sge_root, "utilbin")
    for arc in arch_guesses():
        if os.path.isdir(os.path.join(utilbin, arc)):
            return arc
    script = os.path.join(sge_root, "util", "arch")
    if not os.access(script, os.X_OK):
        return None
    import subprocess  # slow path only: an architecture we do not know by name
    try:
        out = subprocess.run([script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             timeout=10, check=True).stdout.decode().strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out or None


def expand(candidate, environ):
    """The path a candidate stands for here, or None (``utilbin:`` without SGE)."""
    if not candidate.startswith("utilbin:"):
        return candidate
    root = environ.get("SGE_ROOT")
    if not root or not os.path.isabs(root):
        return None
    arc = sge_arch(root)
    if arc is None:
        return None
    return os.path.join(root, "utilbin", arc, candidate[len("utilbin:"):])


def is_program(path):
    return os.path.isabs(path) and os.path.isfile(path) and os.access(path, os.X_OK)


def find_program(candidates, environ, what="client"):
    """The first candidate that is an executable file, else WrapperError."""
    tried = []
    for candidate in candidates:
        path = expand(candidate, environ)
        if path is None:
            tried.append(candidate.replace("utilbin:", "$SGE_ROOT/utilbin/$ARC/"))
            continue
        if is_program(path):
            return path
        tried.append(path + (" (not executable)" if os.path.exists(path) else " (missing)"))
    raise WrapperError(NO_CLIENT, "no executable %s program: tried %s" % (what, ", ".join(tried)))
