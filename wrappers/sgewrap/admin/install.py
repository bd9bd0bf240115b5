"""``sgewrap install`` / ``sgewrap uninstall``: :mod:`sgewrap.admin.installer`, the code behind ``make install`` too."""
import os
import subprocess

from plumbum import cli

from . import installer as implementation
from .common import AdminError, Command


def _sge_root(value):
    if not value:
        value = os.environ.get("SGE_ROOT", "")
    if not value:
        raise AdminError("give --sge-root DIR (or set SGE_ROOT)", 2)
    return os.path.abspath(value)


class Install(Command, cli.Application):
    """Install the wrappers into SGE_ROOT/util/resources/wrappers

    What make install does (the same code), reporting each file written.
    """

    sge_root = cli.SwitchAttr("--sge-root", str, argname="DIR", help="Grid Engine root (default: $SGE_ROOT)")
    python = cli.SwitchAttr("--python", str, argname="PATH", default=implementation.DEFAULT_PYTHON,
                            help="the python of the wrappers' virtual environment (absolute path)")
    dry_run = cli.Flag("--dry-run", help="say what would be written, write nothing")
    no_deps = cli.Flag("--no-deps", help="do not pip-install plumbum and shellingham into the environment")

    def main(self):
        try:
            implementation.install(_sge_root(self.sge_root), self.python, dry_run=self.dry_run,
                                   with_deps=not self.no_deps, report=print)
        except implementation.InstallError as err:
            raise AdminError(str(err))
        except subprocess.CalledProcessError as err:
            raise AdminError("'%s' failed with exit status %d" % (" ".join(map(str, err.cmd)), err.returncode))
        except OSError as err:
            raise AdminError("%s%s" % (err.strerror or err, ": " + err.filename if err.filename else ""))
        return 0


class Uninstall(Command, cli.Application):
    """Remove exactly what install put under SGE_ROOT

    and put back the files it displaced (what make uninstall does).
    """

    sge_root = cli.SwitchAttr("--sge-root", str, argname="DIR", help="Grid Engine root (default: $SGE_ROOT)")
    dry_run = cli.Flag("--dry-run", help="say what would be removed, remove nothing")

    def main(self):
        try:
            implementation.uninstall(_sge_root(self.sge_root), dry_run=self.dry_run, report=print)
        except OSError as err:
            raise AdminError("%s%s" % (err.strerror or err, ": " + err.filename if err.filename else ""))
        return 0
