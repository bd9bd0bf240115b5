"""Install the wrappers into ``SGE_ROOT/util/resources/wrappers`` (and remove them).

One implementation behind both ``make install`` and ``sgewrap install``.
Stdlib only, so it runs before anything is installed.

Layout (``DEST`` = ``SGE_ROOT/util/resources/wrappers``)::

    DEST/NAME                     each entry point, shebang ``#!DEST/sgewrap.venv/bin/python3 -I``
    DEST/sgewrap.venv/            a virtual environment of the chosen python: sgewrap,
                                  plumbum and shellingham in its site-packages, compiled
    DEST/sgewrap.manifest         what was installed, and what it displaced
    DEST/NAME.sgewrap-orig        a file of the same name that was there before (Grid
                                  Engine ships a qlogin_wrapper), put back by uninstall
    DEST/sge-sshd                 the job sshd's launcher (static, built here when gcc and
                                  libpam0g-dev are): starts sshd under the job PAM service
                                  /etc/pam.d/sge-sshd on OpenSSH 9.2 and 9.8+ alike; else a
                                  symbolic link to /usr/sbin/sshd (right on OpenSSH 9.2 only)
    DEST/pam_sgewrap.so           the PAM module, built here when gcc and libpam0g-dev are
                                  (sgewrap config ssh --tight --apply copies it into each
                                  host's PAM directory: no execution host needs a compiler)

Everything is root-owned (when run as root) and not group/world writable: the
daemon side runs these files as root.  Installing twice changes nothing.
"""
import compileall
import os
import shutil
import stat
import subprocess
import sys
import tempfile

from ..methods import JOB_SSHD_NAME, LINKS, PROGRAMS   # links beside the entry points; the programs

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # .../wrappers
PACKAGE = os.path.join(SRC, "sgewrap")
VENV = "sgewrap.venv"
MANIFEST = "sgewrap.manifest"
ORIG = ".sgewrap-orig"
DEPENDENCIES = ("plumbum", "shellingham")
DEFAULT_PYTHON = "/usr/bin/python3"


class InstallError(Exception):
    pass


#: scripts made at install time because their name is taken by the package
#: directory in the source tree (wrappers/sgewrap/): name -> module with main()
GENERATED = {name: p.module for name, p in PROGRAMS.items() if p.runs_as == "admin"}


def entry_point_names():
    """The drop-in scripts: every program of the registry."""
    return sorted(PROGRAMS)


def script_body(name):
    """The text of entry point ``name`` after its shebang line: wrappers/NAME in a source tree, else made
    from the registry (a pip-installed sgewrap has no wrappers/ directory)."""
    from ..methods import ROOT_ENTRY_POINTS, USER_PROGRAMS
    if name in GENERATED:
        return '"""%s: the administrator\'s command; --help says more."""\nfrom %s import main\n\nmain()\n' % (
            name, GENERATED[name])
    try:
        with open(os.path.join(SRC, name)) as f:
            return "".join(f.read().splitlines(True)[1:])
    except FileNotFoundError:
        pass
    modules = dict(ROOT_ENTRY_POINTS, **USER_PROGRAMS)
    if name in modules:
        return '"""%s: --help says more."""\nfrom %s import main\n\nmain()\n' % (name, modules[name])
    return '"""%s: --help says more."""\nfrom sgewrap.client import main\n\nmain(%r)\n' % (name, name)


def destination(sge_root):
    return os.path.join(os.path.abspath(sge_root), "util", "resources", "wrappers")


def _read_manifest(dest):
    """{kind: [name...]} recorded in ``dest``'s manifest: ``script`` (entry points and links, relative
    to ``dest``), ``displaced`` (files kept as NAME.sgewrap-orig), ``man`` (pages, relative to SGE_ROOT)."""
    found = {"script": [], "displaced": [], "man": []}
    try:
        with open(os.path.join(dest, MANIFEST)) as f:
            for line in f:
                kind, _, name = line.rstrip("\n").partition(" ")
                found["displaced" if kind == "displaced" else "man" if kind == "man" else "script"].append(name)
    except FileNotFoundError:
        pass
    return found


def _prune(directory, top):
    """Remove ``directory`` and its parents up to (not including) ``top`` while they are empty."""
    while directory != top and directory.startswith(top + os.sep) and os.path.isdir(directory) \
            and not os.listdir(directory):
        os.rmdir(directory)
        directory = os.path.dirname(directory)


#: the rendered man pages of the source tree (make man), installed to SGE_ROOT/man/manN
MAN_SOURCE = os.path.join(SRC, "man")


def _install_man(sge_root, old, report):
    """Copy the man pages into SGE_ROOT/man/manN (Grid Engine's MANPATH); their paths relative to
    SGE_ROOT.  A page of that name that is not ours stays."""
    done = []
    if not os.path.isdir(MAN_SOURCE):
        return done
    for name in sorted(os.listdir(MAN_SOURCE)):
        section = name.rsplit(".", 1)[-1]
        if not section.isdigit():
            continue
        rel = os.path.join("man", "man" + section, name)
        path = os.path.join(sge_root, rel)
        if os.path.lexists(path) and rel not in old:
            report("kept %s: not sgewrap's (its page is not installed)" % path)
            continue
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        with open(os.path.join(MAN_SOURCE, name), "rb") as f:
            if _write_atomic(path, f.read(), 0o644):
                report("installed %s" % path)
        done.append(rel)
    return done


def _write_atomic(path, data, mode):
    """Replace ``path`` with ``data`` unless it already holds it; True if written."""
    try:
        with open(path, "rb") as f:
            if f.read() == data and stat.S_IMODE(os.stat(path).st_mode) == mode:
                return False
    except FileNotFoundError:
        pass
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".sgewrap-")
    try:
        os.write(fd, data)
        os.fchmod(fd, mode)
        if os.geteuid() == 0:
            os.fchown(fd, 0, 0)
        os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return True


def _site_packages(venv_python):
    out = subprocess.run([venv_python, "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         check=True, stdout=subprocess.PIPE, text=True).stdout.strip()
    return out


def _system_dependencies(python):
    """{name: package directory} of DEPENDENCIES as ``python`` itself imports them (isolated: Debian's
    python3-plumbum and python3-shellingham), or {} if it lacks any.  Taken before pip: an execution
    host often reaches no package index, and the versions are the distribution's."""
    code = "import json, %s; print(json.dumps([m.__path__[0] for m in (%s,)]))" % (
        ", ".join(DEPENDENCIES), ", ".join(DEPENDENCIES))
    proc = subprocess.run([python, "-I", "-c", code], capture_output=True, text=True)
    if proc.returncode:
        return {}
    import json
    paths = json.loads(proc.stdout)
    return dict(zip(DEPENDENCIES, paths)) if all(os.path.isdir(p) for p in paths) else {}


def _tree_identical(a, b):
    import filecmp
    if not os.path.isdir(b):
        return False
    cmp = filecmp.dircmp(a, b, ignore=["__pycache__"])
    if cmp.left_only or cmp.right_only or cmp.diff_files or cmp.funny_files:
        return False
    return all(_tree_identical(os.path.join(a, d), os.path.join(b, d)) for d in cmp.common_dirs)


def _harden(top):
    """root:root and no group/world write below ``top``."""
    for base, dirs, files in os.walk(top):
        for name in [base] + [os.path.join(base, n) for n in dirs + files]:
            st = os.lstat(name)
            if stat.S_ISLNK(st.st_mode):
                continue
            if os.geteuid() == 0 and (st.st_uid or st.st_gid):
                os.chown(name, 0, 0)
            if st.st_mode & 0o022:
                os.chmod(name, stat.S_IMODE(st.st_mode) & ~0o022)


#: where the Debian package puts the sgewrap package: its programs import it from there first
DEBIAN_SITE = "/usr/lib/python3/dist-packages"


def site_first(body, site):
    """``body`` (an entry point's text after its interpreter line) putting ``site`` on ``sys.path`` before
    any other site directory, ahead of its imports.  A system ``python3 -I`` searches
    /usr/local/lib/python3.X/dist-packages before Debian's own site: a sgewrap that pip put there (an
    older one, say) would run instead of the package's, as root.  The standard library stays first."""
    head, newline, rest = body.partition("\n")
    line = ('import sys  # this package\'s sgewrap (%s) before any other site\'s, /usr/local\'s included\n'
            'sys.path.insert(min([i for i, p in enumerate(sys.path) if p.endswith("-packages")] or [len(sys.path)]), '
            '%r)\n' % (site, site))
    if head.startswith('"""') and head.endswith('"""') and len(head) >= 6:
        return head + newline + line + rest
    return line + body


def write_programs(dest, python, site=DEBIAN_SITE, report=print):
    """Only the entry points and links, for a system python that imports sgewrap from its own
    ``site`` (the Debian package: /usr/lib/sgewrap with ``#!/usr/bin/python3 -I``, Debian's site put
    first: :func:`site_first`); the paths written."""
    written = []
    os.makedirs(dest, mode=0o755, exist_ok=True)
    for name in entry_point_names():
        path = os.path.join(dest, name)
        if _write_atomic(path, ("#!%s -I\n" % python + site_first(script_body(name), site)).encode(), 0o755):
            written.append(path)
    for name, target in sorted(LINKS.items()):
        path = os.path.join(dest, name)
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        if os.path.lexists(path):
            os.unlink(path)
        os.symlink(target, path)
        written.append(path)
    for path in written:
        report("wrote %s" % path)
    return written


def install(sge_root, python=DEFAULT_PYTHON, dry_run=False, with_deps=True, report=print):
    """Install every entry point under ``sge_root``; returns the paths written."""
    if not os.path.isabs(python) or not os.access(python, os.X_OK):
        raise InstallError("python must be an absolute path of an executable: %r" % python)
    dest = destination(sge_root)
    venv = os.path.join(dest, VENV)
    venv_python = os.path.join(venv, "bin", "python3")
    shebang = "#!%s -I\n" % venv_python
    if len(shebang) > 127:
        raise InstallError("interpreter path too long for a shebang line (%d > 127): %s" % (len(shebang), venv_python))
    names = entry_point_names()
    if dry_run:
        deps = ", " + ", ".join(DEPENDENCIES) if with_deps else ""
        report("would create %s (venv of %s with sgewrap%s)" % (venv, python, deps))
        for name in names + sorted(LINKS):
            report("would install %s" % os.path.join(dest, name))
        return []
    written = []
    os.makedirs(dest, mode=0o755, exist_ok=True)
    if not os.path.exists(venv_python):
        subprocess.run([python, "-m", "venv", "--without-pip", venv], check=True)
        report("created %s" % venv)
        written.append(venv)
    site = _site_packages(venv_python)
    target = os.path.join(site, "sgewrap")
    if not _tree_identical(PACKAGE, target):
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(PACKAGE, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        report("installed %s" % target)
        written.append(target)
    system = _system_dependencies(python) if with_deps else {}
    if system and any(not _tree_identical(path, os.path.join(site, d)) for d, path in system.items()):
        for name, path in system.items():
            target = os.path.join(site, name)
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(path, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        report("copied %s from %s's own packages into %s" % (", ".join(DEPENDENCIES), python, site))
        written.append(site)
    elif with_deps and not system and any(not os.path.isdir(os.path.join(site, d)) for d in DEPENDENCIES):
        subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "--no-warn-script-location", "--target", site] + list(DEPENDENCIES),
                       check=True, env=dict(os.environ, PIP_ROOT_USER_ACTION="ignore"))
        report("installed %s into %s" % (", ".join(DEPENDENCIES), site))
        written.append(site)
    # compile as root now: the users who run the wrappers cannot write __pycache__
    compileall.compile_dir(site, quiet=2, force=False)
    subprocess.run([venv_python, "-I", "-m", "compileall", "-q", site], check=True,
                   stdout=subprocess.DEVNULL)
    _harden(venv)
    old = _read_manifest(dest)
    old_scripts, displaced = old["script"], old["displaced"]
    for name in names:
        path = os.path.join(dest, name)
        body = (shebang + script_body(name)).encode()
        if os.path.lexists(path) and name not in old_scripts and name not in displaced:
            os.rename(path, path + ORIG)    # Grid Engine's own file of that name
            displaced.append(name)
            report("kept the previous %s as %s" % (path, path + ORIG))
        if _write_atomic(path, body, 0o755):
            report("installed %s" % path)
            written.append(path)
    from . import pammodule
    why = pammodule.can_build()     # None: the C parts (launcher, PAM module) are built here
    for name, target in sorted(LINKS.items()):
        path = os.path.join(dest, name)
        if name == JOB_SSHD_NAME and why is None:
            if pammodule.build(path, source=pammodule.LAUNCHER_SOURCE, mode=0o755):
                report("built %s (the job sshd's launcher)" % path)
                written.append(path)
            continue
        if os.path.islink(path) and os.readlink(path) == target:
            continue
        if os.path.lexists(path) and name not in old_scripts:
            raise InstallError("%s exists and is not sgewrap's: remove it first" % path)
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        tmp = path + ".sgewrap-new"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(target, tmp)
        os.replace(tmp, path)
        report("installed %s -> %s" % (path, target))
        written.append(path)
    names = names + sorted(LINKS)
    module = os.path.join(dest, pammodule.NAME)
    if why is None:
        if pammodule.build(module):
            report("built %s" % module)
            written.append(module)
        names.append(pammodule.NAME)
    elif os.path.exists(module):
        names.append(pammodule.NAME)
        report("kept %s (cannot rebuild it here: %s)" % (module, why))
    else:
        report("note: %s not built (%s); sgewrap config ssh --tight --apply needs it on every execution host"
               % (module, why))
    pages = _install_man(os.path.abspath(sge_root), old["man"], report)
    manifest = "".join("script %s\n" % n for n in names) + "".join("displaced %s\n" % n for n in displaced) \
        + "".join("man %s\n" % p for p in pages)
    _write_atomic(os.path.join(dest, MANIFEST), manifest.encode(), 0o644)
    if not written:
        report("%s: up to date" % dest)
    return written


def uninstall(sge_root, dry_run=False, report=print):
    """Remove exactly what install() put under ``sge_root``; put displaced files back."""
    dest = destination(sge_root)
    manifest = _read_manifest(dest)
    scripts, displaced = manifest["script"], manifest["displaced"]
    if not scripts and not os.path.isdir(os.path.join(dest, VENV)):
        report("%s: nothing of sgewrap installed" % dest)
        return []
    removed = []

    def remove(path, top):
        """Remove ``path`` (reported), then the directories up to ``top`` that install made for it
        and left empty (job-ssh of the links, man/manN of the pages)."""
        if os.path.lexists(path):
            report(("would remove " if dry_run else "removed ") + path)
            if not dry_run:
                os.unlink(path)
            removed.append(path)
        if not dry_run:
            _prune(os.path.dirname(path), top)

    for name in scripts:
        remove(os.path.join(dest, name), dest)
    root = os.path.abspath(sge_root)
    for rel in manifest["man"]:
        remove(os.path.join(root, rel), root)
    for name in displaced:
        path = os.path.join(dest, name)
        if os.path.lexists(path + ORIG):
            report(("would restore " if dry_run else "restored ") + path)
            if not dry_run:
                os.rename(path + ORIG, path)
    for path in (os.path.join(dest, VENV), os.path.join(dest, MANIFEST)):
        if os.path.lexists(path):
            report(("would remove " if dry_run else "removed ") + path)
            if not dry_run:
                shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.unlink(path)
            removed.append(path)
    return removed


def main(argv=None):
    """``python3 -m sgewrap.admin.installer [--uninstall] [--dry-run] [--no-deps] SGE_ROOT [PYTHON]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    flags = {a for a in args if a.startswith("--")}
    rest = [a for a in args if not a.startswith("--")]
    if "--programs-only" in flags:        # python3 -m sgewrap.admin.installer --programs-only DEST PYTHON [SITE]
        if len(rest) not in (2, 3) or not all(os.path.isabs(p) for p in rest[1:]):
            sys.stderr.write("usage: python3 -m sgewrap.admin.installer --programs-only DEST /ABSOLUTE/PYTHON "
                             "[/ABSOLUTE/SITE]\n")
            return 64
        write_programs(rest[0], rest[1], *rest[2:], report=lambda *a: None)
        return 0
    unknown = flags - {"--uninstall", "--dry-run", "--no-deps"}
    if unknown or not 1 <= len(rest) <= 2:
        sys.stderr.write("usage: python3 -m sgewrap.admin.installer [--uninstall] [--dry-run] [--no-deps] "
                         "SGE_ROOT [PYTHON]\n")
        return 64
    try:
        if "--uninstall" in flags:
            uninstall(rest[0], dry_run="--dry-run" in flags)
        else:
            install(rest[0], *(rest[1:]), dry_run="--dry-run" in flags, with_deps="--no-deps" not in flags)
    except (InstallError, OSError, subprocess.CalledProcessError) as err:
        sys.stderr.write("sgewrap install: error: %s\n" % err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
