"""``sgewrap``: the administrator's command (install, config, check, selftest, explain).

Not on the hot path: it may import plumbum.  Every subcommand lives in its own
module and is imported only when it runs.  A subcommand that cannot do its
job raises :class:`AdminError`; :func:`main` turns it into one line
``sgewrap: error: MESSAGE`` on stderr and its exit code, never a traceback.

Exit codes: 0 done (``check``: consistent; ``selftest``: every method
passed), 1 the job failed (``check``: inconsistent; ``selftest``: a method
failed; a command failed), 2 a configuration could not be read or a usage
error, 70 internal error (a bug), 130 interrupted; ``explain`` exits with
the code the wrapper itself would exit with.
"""
import sys

from plumbum import cli

from .. import __version__
from .common import FAILED, INTERNAL, INTERRUPTED, AdminError, Command

__all__ = ["AdminError", "Sgewrap", "main"]


class Sgewrap(Command, cli.Application):
    """Remote-startup wrappers for Grid Engine: install them, configure sge_conf, check and test it."""

    PROGNAME = "sgewrap"
    VERSION = __version__

    def main(self, *args):
        if args:
            raise AdminError("unknown command %r (see sgewrap --help)" % args[0], 2)
        if not self.nested_command:
            self.help()
            return 2


Sgewrap.subcommand("install", "sgewrap.admin.install.Install")
Sgewrap.subcommand("uninstall", "sgewrap.admin.install.Uninstall")
Sgewrap.subcommand("config", "sgewrap.admin.config.Config")
Sgewrap.subcommand("check", "sgewrap.admin.check.Check")
Sgewrap.subcommand("selftest", "sgewrap.admin.selftest.Selftest")
Sgewrap.subcommand("explain", "sgewrap.admin.explain.Explain")
Sgewrap.subcommand("node-access", "sgewrap.admin.access.NodeAccess")
Sgewrap.subcommand("front", "sgewrap.admin.fronts.Front")
Sgewrap.subcommand("facts", "sgewrap.admin.facts.Facts")
Sgewrap.subcommand("job-ssh", "sgewrap.admin.jobssh.JobSsh")


def main(argv=None):
    """Console entry point: never returns."""
    argv = list(sys.argv if argv is None else ["sgewrap"] + list(argv))
    try:
        _, code = Sgewrap.run(argv, exit=False)
    except AdminError as err:
        sys.stdout.flush()
        sys.stderr.write("sgewrap: error: %s\n" % err)
        code = err.code
    except KeyboardInterrupt:
        sys.stderr.write("sgewrap: interrupted\n")
        code = INTERRUPTED
    except BrokenPipeError:
        code = FAILED
    except Exception as err:  # never a traceback on an administrator's terminal
        sys.stderr.write("sgewrap: error: internal error: %s: %s\n" % (type(err).__name__, err))
        code = INTERNAL
    sys.stdout.flush()
    sys.exit(code if isinstance(code, int) else (0 if code is None else FAILED))
