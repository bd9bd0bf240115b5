"""pam_sgewrap.so, the root side's PAM module: built from ``wrappers/native`` with Debian's toolchain.

The module (C: it lives inside sshd, where no interpreter may start) does
for the job sshd what ``node_access session`` did through pam_exec, and
replaces pam_sge-qrsh-setup in the stacks sgewrap writes
(``wrappers/native/pam_sgewrap.c`` says how).  Its options are rows of
:data:`sgewrap.rootside.nodeaccess.TABLE`: :func:`header` makes them into
``pam_sgewrap_options.h`` at build time, so a default is written once.

Routes: ``make install`` (and ``sgewrap install``) builds it into the
wrappers directory when a compiler and PAM's headers are there (a build
host: ``apt-get install gcc libpam0g-dev``); ``sgewrap config ssh --tight
--apply`` copies that file into each host's PAM module directory (no
execution host needs a compiler); the Debian package ships it there.
Stdlib only.
"""
import filecmp
import glob
import os
import shutil
import subprocess
import tempfile

NAME = "pam_sgewrap.so"
NATIVE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "native")
SOURCE = os.path.join(NATIVE, "pam_sgewrap.c")
#: the job sshd's launcher: a static program (no loader variable acts on it)
LAUNCHER_SOURCE = os.path.join(NATIVE, "sge_sshd.c")
LAUNCHER_FLAGS = ("-static-pie", "-fPIE")
HEADER = "pam_sgewrap_options.h"
#: the module's words for its two services (the first argument in a PAM line)
JOB, SETUP = "job", "setup"
#: node_access options the module reads, and for which of its services (the table's command)
MODULE_OPTIONS = {"--facility": None, "--sge-root": None, "--admin-user": None, "--setup-dir": SETUP,
                  "--fail-open": JOB}
#: hardening (Debian's dpkg-buildflags for a PAM module, plus warnings as errors); $CFLAGS/$LDFLAGS add to them
CFLAGS = ("-O2", "-g", "-fPIC", "-Wall", "-Wextra", "-Werror", "-Wformat", "-Wformat-security",
          "-Wno-unused-parameter", "-D_FORTIFY_SOURCE=2", "-fstack-protector-strong", "-fstack-clash-protection",
          "-fcf-protection", "-fvisibility=default")
LDFLAGS = ("-shared", "-Wl,-z,relro", "-Wl,-z,now", "-Wl,-z,noexecstack", "-Wl,--as-needed")
#: where Debian keeps PAM modules (bookworm and trixie: the same directory once /lib is merged)
PAM_DIRS = ("/usr/lib/*-linux-gnu/security", "/lib/*-linux-gnu/security", "/lib/security", "/lib64/security")


class ModuleError(ValueError):
    pass


def _c_string(text):
    return '"%s"' % text.replace("\\", "\\\\").replace('"', '\\"')


def header():
    """The text of pam_sgewrap_options.h, from node_access's option table."""
    from ..rootside import daemonlog, gidrange, jobspool, nodeaccess
    rows = {o.flag: o for o in nodeaccess.TABLE.options}
    missing = [f for f in MODULE_OPTIONS if f not in rows]
    if missing:
        raise ModuleError("node_access has no option %s that pam_sgewrap reads" % ", ".join(missing))
    out = ["/* Made by sgewrap.admin.pammodule from sgewrap.rootside.nodeaccess.TABLE: do not edit. */",
           "#ifndef PAM_SGEWRAP_OPTIONS_H", "#define PAM_SGEWRAP_OPTIONS_H", "#include <syslog.h>"]
    for flag in MODULE_OPTIONS:
        macro = "SGEWRAP_OPT_" + flag[2:].replace("-", "_").upper()
        out.append("#define %s %s" % (macro, _c_string(flag + ("=" if rows[flag].metavar else ""))))
    facility = rows["--facility"]
    out.append("#define SGEWRAP_DEFAULT_FACILITY_VALUE LOG_%s" % facility.default.upper())
    out.append("static const struct { const char *name; int value; } sgewrap_facilities[] = {")
    out += ["    {%s, LOG_%s}," % (_c_string(name), name.upper()) for name in facility.choices]
    out.append("};")
    out.append("#define SGEWRAP_DEFAULT_SETUP_DIR %s" % _c_string(rows["--setup-dir"].default))
    out.append("#define SGEWRAP_FALLBACK_SGE_ROOT %s" % _c_string(jobspool.FALLBACK_SGE_ROOTS[0]))
    from .. import methods
    for name in ("JOB_SSHD_NAME", "SSHD", "SSHD_SESSION", "PAM_SERVICE_OPTION", "JOB_SSHD_CONFIG"):
        out.append("#define SGEWRAP_%s %s" % (name, _c_string(getattr(methods, name))))
    out.append("#define SGEWRAP_GID_RANGE_FILE %s" % _c_string(gidrange.CACHE))
    out.append("#define SGEWRAP_GID_RANGE_MARK %s" % _c_string(os.path.join(gidrange.MARK_DIR, gidrange.MARK)))
    out.append("#define SGEWRAP_GID_RANGE_MAX %d" % gidrange.MAX_BYTES)
    out.append("#define SGEWRAP_JOB %s" % _c_string(JOB))
    out.append("#define SGEWRAP_SETUP %s" % _c_string(SETUP))
    assert daemonlog.DEFAULT_FACILITY in facility.choices
    out.append("#endif")
    return "\n".join(out) + "\n"


def build_argv(out, include_dir, cc="cc", extra_cflags=(), extra_ldflags=(), source=SOURCE):
    ours = [f for f in CFLAGS if not (f.startswith("-D_FORTIFY_SOURCE")
                                      and any(e.startswith("-D_FORTIFY_SOURCE") for e in extra_cflags))]
    maps = ["-ffile-prefix-map=%s=." % include_dir, "-ffile-prefix-map=%s=." % os.path.dirname(source)]
    link = list(LDFLAGS) + list(extra_ldflags) + ["-lpam"]
    if source == LAUNCHER_SOURCE:       # a static-pie program, not a shared module
        ours = [f for f in ours if f != "-fPIC"] + list(LAUNCHER_FLAGS)
        link = [f for f in LDFLAGS if f != "-shared"] + [f for f in extra_ldflags if "pie" not in f]
    return [cc] + ours + list(extra_cflags) + maps + ["-I", include_dir, "-o", out, source] + link


def can_build(cc="cc"):
    """Why the module cannot be built here (no compiler, no PAM headers), or None."""
    if shutil.which(cc) is None:
        return "no C compiler (%s): apt-get install gcc libpam0g-dev" % cc
    if not os.path.exists("/usr/include/security/pam_modules.h"):
        return "no PAM headers: apt-get install libpam0g-dev"
    if not os.path.exists(SOURCE):
        return "no source %s (a pip-installed sgewrap: build the module from the source tree or the package)" % SOURCE
    return None


def build(out, cc="cc", source=SOURCE, mode=0o644):
    """Compile the module (or with ``source`` :data:`LAUNCHER_SOURCE`, the launcher) into ``out`` (the
    header made in a temporary directory) unless the same is there; True if ``out`` changed.
    ModuleError says why it cannot be built."""
    why = can_build(cc)
    if why:
        raise ModuleError(why)
    flags = os.environ.get("CFLAGS", "").split()
    ldflags = os.environ.get("LDFLAGS", "").split()
    with tempfile.TemporaryDirectory(prefix="sgewrap-pam.") as tmp:
        with open(os.path.join(tmp, HEADER), "w") as f:
            f.write(header())
        target = os.path.join(tmp, NAME)
        proc = subprocess.run(build_argv(target, tmp, cc, flags, ldflags, source), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        if proc.returncode:
            raise ModuleError("cc failed:\n" + proc.stdout[-3000:])
        if os.path.isfile(out) and not os.path.islink(out) and filecmp.cmp(target, out, shallow=False):
            return False
        tmp_out = out + ".sgewrap-new"
        shutil.copyfile(target, tmp_out)
        os.chmod(tmp_out, mode)
        if os.geteuid() == 0:
            os.chown(tmp_out, 0, 0)
        os.replace(tmp_out, out)
    return True


def pam_dir():
    """This host's PAM module directory: where pam_unix.so is."""
    for pattern in PAM_DIRS:
        for directory in sorted(glob.glob(pattern)):
            if os.path.exists(os.path.join(directory, "pam_unix.so")):
                return os.path.realpath(directory)
    raise ModuleError("no PAM module directory with pam_unix.so here (%s)" % ", ".join(PAM_DIRS))


def installed(directory=None):
    """The module's path in this host's PAM directory, or None."""
    try:
        path = os.path.join(directory or pam_dir(), NAME)
    except ModuleError:
        return None
    return path if os.path.isfile(path) else None


def ensure_installed(wrappers_dir, directory=None):
    """Put ``wrappers_dir``'s built module into the PAM directory (root's, 0644) unless the same is
    there; (path, changed).  A module already there (the Debian package's) is kept when the wrappers
    directory has none.  ModuleError says how to get one when there is neither."""
    directory = directory or pam_dir()
    target = os.path.join(directory, NAME)
    built = os.path.join(wrappers_dir, NAME)
    if not os.path.isfile(built):
        if os.path.isfile(target):
            return target, False
        raise ModuleError("%s is not installed and %s has none: install the sgewrap package, or run 'make install "
                          "SGE_ROOT=...' on a host with gcc and libpam0g-dev (it builds %s into the wrappers "
                          "directory, from where --apply copies it)" % (target, wrappers_dir, NAME))
    if os.path.isfile(target) and filecmp.cmp(built, target, shallow=False):
        return target, False
    tmp = target + ".sgewrap-new"
    shutil.copyfile(built, tmp)
    os.chmod(tmp, 0o644)
    if os.geteuid() == 0:
        os.chown(tmp, 0, 0)
    os.replace(tmp, target)
    return target, True


def main(argv=None):
    """``python3 -m sgewrap.admin.pammodule header|build OUT|build-launcher OUT``: the header, or the module
    or the job sshd's launcher built into OUT."""
    import sys
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["header"]:
        sys.stdout.write(header())
        return 0
    if len(args) == 2 and args[0] in ("build", "build-launcher"):
        try:
            if args[0] == "build":
                build(args[1])
            else:
                build(args[1], source=LAUNCHER_SOURCE, mode=0o755)
        except ModuleError as err:
            sys.stderr.write("pammodule: %s\n" % err)
            return 1
        return 0
    sys.stderr.write("usage: python3 -m sgewrap.admin.pammodule header | build OUT | build-launcher OUT\n")
    return 64


if __name__ == "__main__":
    raise SystemExit(main())
