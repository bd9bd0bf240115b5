"""Put the qlogin/qrsh front in place of Grid Engine's own names, and take it out again.

Where: Grid Engine's binary directory for this host, ``$SGE_ROOT/bin/$ARC``
(symbolic links resolved: Debian's is /usr/lib/gridengine), the directory of
the ``qsh`` binary whose ``qlogin`` and ``qrsh`` names select its mode.
Every way users reach the client ends there: ``/usr/bin/qlogin`` (Debian's
wrapper script execs it), ``$SGE_ROOT/bin/$ARC`` first on PATH after
``settings.sh``, an absolute path in a script, any shell.  A file a package
owns is moved aside with ``dpkg-divert --rename`` (so package upgrades keep
the front and ``dpkg -S`` still tells the truth), any other is renamed to
``NAME.sgewrap-orig``; removing the front puts each back the same way.
"""
import os

from plumbum import cli

from .. import locate
from . import front
from ..rootside.frame import write_atomic
from .common import UNREADABLE, AdminError, Command, run

ORIG = ".sgewrap-orig"


def client_dir(sge_root):
    """The directory holding this host's Grid Engine clients (qsh, qlogin, qrsh)."""
    bindir = os.path.join(sge_root, "bin")
    arcs = [a for a in locate.arch_guesses() if os.path.isfile(os.path.join(bindir, a, "qsh"))]
    if not arcs:
        raise AdminError("no Grid Engine client (qsh) in %s/<arch> for this host" % bindir)
    return os.path.realpath(os.path.join(bindir, arcs[0]))


def is_front(path):
    try:
        with open(path, "rb") as f:
            f.readline()
            return f.readline().decode("utf-8", "replace").startswith(front.MARK)
    except (OSError, IsADirectoryError):
        return False


def state(directory):
    """{name: True if the front is in place}."""
    return {name: is_front(os.path.join(directory, name)) for name in front.NAMES}


def _owned_by_a_package(path):
    if not os.path.exists("/usr/bin/dpkg-query"):
        return False
    return run(["/usr/bin/dpkg-query", "-S", path], retcode=None)[0] == 0


def _diverted(path):
    if not os.path.exists("/usr/bin/dpkg-divert"):
        return False
    return run(["/usr/bin/dpkg-divert", "--truename", path])[1].strip() != path


def install(directory, report=print, delegate=False):
    """The front for every name (idempotent; ``delegate``: see :func:`front.script`); True if anything
    changed."""
    real = os.path.join(directory, "qsh")
    changed = False
    for name in front.NAMES:
        path = os.path.join(directory, name)
        text = front.script(name, real, delegate).encode()
        if is_front(path):
            with open(path, "rb") as f:
                if f.read() == text:
                    continue
        elif os.path.lexists(path):
            if _owned_by_a_package(path) and not _diverted(path):
                run(["/usr/bin/dpkg-divert", "--quiet", "--local", "--rename", "--divert", path + ORIG,
                     "--add", path])
            elif not os.path.lexists(path + ORIG):
                os.rename(path, path + ORIG)
        write_atomic(path, text, 0o755)
        report("front: %s now adds -pty no to logins%s (Grid Engine's is kept as %s)" % (
            path, " and keeps KRB5CCNAME out of qrsh -V (--gssapi-delegate)" if delegate else "", path + ORIG))
        changed = True
    return changed


def remove(directory, report=print):
    """Grid Engine's own names back; True if anything changed."""
    changed = False
    for name in front.NAMES:
        path = os.path.join(directory, name)
        if not is_front(path):
            continue
        os.unlink(path)
        if _diverted(path):
            run(["/usr/bin/dpkg-divert", "--quiet", "--local", "--rename", "--remove", path])
        elif os.path.lexists(path + ORIG):
            os.rename(path + ORIG, path)
        report("front: %s is Grid Engine's own again" % path)
        changed = True
    return changed


def sge_root_here(value=None):
    """--sge-root, else $SGE_ROOT, else the root this sgewrap is installed below."""
    import sys
    from ..rootside.jobspool import sge_root_from
    value = value or os.environ.get("SGE_ROOT", "") or sge_root_from(os.path.abspath(sys.argv[0] or "")) or ""
    if not value or not os.path.isabs(value):
        raise AdminError("give --sge-root DIR (or set SGE_ROOT)", UNREADABLE)
    return value


def delegates(values):
    """Whether the entries ``values`` ({key: value}) pass Kerberos tickets on (--gssapi-delegate)."""
    from . import sgeconf
    return any("--gssapi-delegate" in sgeconf.words(v) for k, v in values.items() if k.endswith("_command") and v)


def apply_here(wrapped, sge_root=None, report=print, delegate=False):
    """The front in place on this host when logins are wrapped, Grid Engine's own names when not.
    Without a Grid Engine client here (an execution-only host): a note, nothing changed."""
    try:
        directory = client_dir(sge_root_here(sge_root))
    except AdminError as err:
        report("note: no qlogin/qrsh front on this host: %s" % err)
        return False
    return install(directory, report, delegate) if wrapped else remove(directory, report)


class Front(Command, cli.Application):
    """Show, install or remove the qlogin/qrsh front on this (submit) host

    Grid Engine 8.1.9 kills wrapped qlogin and qrsh-without-command sessions
    as they start unless they run with -pty no.  The front, in place of the
    qlogin and qrsh names in $SGE_ROOT/bin/$ARC, adds -pty no where the user
    gave no -pty; where the global configuration delegates Kerberos tickets
    (config ssh --gssapi-delegate) it also keeps KRB5CCNAME out of qrsh -V's
    job environment.  sgewrap config --apply installs it on the host it runs
    on; run this on every other submit host.  Exit 0.
    """

    sge_root = cli.SwitchAttr("--sge-root", str, argname="DIR", help="Grid Engine root (default: $SGE_ROOT)")
    do_install = cli.Flag("--install", help="put the front in place", excludes=["--remove"])
    do_remove = cli.Flag("--remove", help="put Grid Engine's own qlogin and qrsh back")

    def main(self):
        directory = client_dir(sge_root_here(self.sge_root))
        if self.do_install:
            from .common import qconf_show
            from . import sgeconf
            try:        # as the global configuration asks (config ssh --gssapi-delegate)
                delegate = delegates(sgeconf.parse(qconf_show("global"), "global").as_dict())
            except AdminError as err:
                print("note: the global configuration was not read (%s): the front keeps KRB5CCNAME as it is"
                      % err)
                delegate = False
            install(directory, delegate=delegate) or print("front: already in place in %s" % directory)
        elif self.do_remove:
            remove(directory) or print("front: not installed in %s" % directory)
        for name, there in sorted(state(directory).items()):
            print("%s: %s" % (os.path.join(directory, name), "front (adds -pty no)" if there else "Grid Engine's own"))
        return 0
