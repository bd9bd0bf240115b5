"""rshdwrapper: start a session's daemon as root with nothing of the job owner's in its way.

Paste into ``qlogin_daemon``, ``rlogin_daemon`` and ``rsh_daemon`` for the
legacy daemons (or an sshd that needs options)::

    rsh_daemon  /opt/sge/util/resources/wrappers/rshdwrapper rshd -l
    rsh_daemon  /opt/sge/util/resources/wrappers/rshdwrapper --facility=daemon /usr/sbin/sshd -i -o LogLevel=ERROR

For ssh with tight integration ``sgewrap config ssh --tight`` pastes
``WRAPPERS/sge-sshd -i`` instead: sshd itself, started under the name
``sge-sshd`` (a symbolic link), which is all this wrapper would do for it
(on OpenSSH 9.8 and later ``--apply`` adds ``-o PamServiceName=sge-sshd``
in that host's local configuration).

The shepherd runs it as root, once per session, with the client's TCP
connection on fds 0, 1 and 2, the job's environment, the job's spool
directory as cwd (remote-startup.md, section 2).  The plan:

1. read the options and resolve the daemon (absolute path, or a short name);
2. sshd: run it under the name ``sge-sshd``, so that OpenSSH up to 9.7 uses
   the PAM service ``/etc/pam.d/sge-sshd``, whose ``node_access session``
   hook ties the session to its job (groups, environment, owner only); on
   OpenSSH 9.8 and later (``/usr/lib/openssh/sshd-session`` exists), which
   takes the service from ``PamServiceName`` instead of the name, also with
   ``-o PamServiceName=sge-sshd`` before the daemon's own arguments (9.2
   refuses that option, so it is added only there); if that service does
   not exist, refuse (exit 72: the session would escape its job);
3. replace itself with the daemon (``execve``, same PID: nothing of the
   wrapper stays resident), in a sanitized environment.

Environment of the daemon: ``PATH`` is fixed
(``/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin``); kept are
``SGE_*``, the job's identification (``JOB_ID``, ``JOB_NAME``, ``QUEUE``,
``HOSTNAME``, ``NHOSTS``, ``NSLOTS``, ``NQUEUES``, ``PE``, ``PE_HOSTFILE``,
``REQUEST``, ``RESTARTED``, ``ENVIRONMENT``, ``ARC``) and ``LANG``,
``LANGUAGE``, ``LC_*``, ``TZ`` unless their value holds a ``/``.  Everything
else (``LD_*``, ``PYTHON*``, ``GCONV_PATH``, ``KRB5_CONFIG``, ``HOME``...)
is dropped.  (The dynamic loader reads ``LD_PRELOAD`` before any Python runs;
Grid Engine 8.1.9 passes only ``SGE_*`` job variables to a daemon.)

Output: nothing is ever written to fds 1 and 2 (they are the client's
connection).  Errors go to syslog (ident ``rshdwrapper``, facility
``--facility``, default ``authpriv``), and to stderr only when it is a
terminal (an administrator trying it by hand).  ``--help`` prints to stdout,
unless stdout is a socket (then it is refused like a bad option).

Options come first (``--opt=VALUE`` is the form that survives the
shepherd's splitting on spaces; ``--`` ends them); ``--help`` lists them.
``--setup-dir``, ``--require-job`` and ``--admin-user`` of version 0.1 are
accepted and ignored: the ``node_access session`` hook writes the setup file
now, and always refuses a session it cannot tie to its job.

DAEMON: an absolute path of an executable file, or a short name resolved at
run time: ``sshd`` (/usr/sbin/sshd), ``rshd``, ``rlogind``, ``telnetd``
(``$SGE_ROOT/utilbin/$ARC/NAME`` where it exists, else Debian's
/usr/sbin/in.rshd, /usr/sbin/in.rlogind, /usr/sbin/telnetd).  Default:
``/usr/sbin/sshd -i``.

Exit codes: the daemon's (it replaces the wrapper), or the wrapper's own:

  64  bad option, or DAEMON neither absolute nor a known short name
  69  the daemon program is missing or not executable
  70  internal error (a bug: please report)
  71  the daemon could not be started (execve failed)
  72  sshd without its job PAM service (/etc/pam.d/sge-sshd): refused
"""
import os
import stat

from . import frame, jobspool, options
from .. import locate
from ..errors import EXEC_FAILED, NO_CLIENT, NO_JOB, USAGE, WrapperError
from ..methods import JOB_SSHD_NAME, JOB_PAM_FILE, daemons, job_pam_service_options, sshd_uses_pam_service_name

NAME = "rshdwrapper"
DEFAULT_DAEMON = ("/usr/sbin/sshd", "-i")
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: job variables the daemon keeps (besides SGE_*, locale, TZ)
KEEP_NAMES = frozenset(("JOB_ID", "JOB_NAME", "QUEUE", "HOSTNAME", "NHOSTS", "NSLOTS", "NQUEUES", "PE",
                        "PE_HOSTFILE", "REQUEST", "RESTARTED", "ENVIRONMENT", "ARC"))
LOCALE_NAMES = frozenset(("LANG", "LANGUAGE", "TZ"))
#: rshdwrapper's options (the parser and --help read this)
TABLE = options.Table(NAME, (
    options.HELP,
    options.FACILITY,
    options.Option("--sge-root", "SGE_ROOT for the short names, instead of the one derived from the program's "
                   "path", metavar="DIR", path=True),
    options.Option("--setup-dir", "(0.1; ignored)", metavar="DIR", path=True, shown=False),
    options.Option("--require-job", "(0.1; ignored)", shown=False),
    options.Option("--admin-user", "(0.1; ignored)", metavar="NAME", repeat=True, shown=False),
))


def usage():
    text = "usage: rshdwrapper [OPTIONS] [DAEMON [ARGS...]]\n\nOptions:\n" + \
        TABLE.help(extra=[("--", "ends the options")])
    if __doc__:    # (python -OO)
        text += "\n" + __doc__.split("DAEMON: ", 1)[1].replace("``", "").join(("DAEMON: ", ""))
    return text


def resolve_daemon(words, sge_root):
    """The daemon's argv with an absolute, executable program first."""
    words = list(words) or list(DEFAULT_DAEMON)
    first = words[0]
    known = daemons()
    if first in known:
        environ = {"SGE_ROOT": sge_root} if sge_root else {}
        program = locate.find_program(known[first], environ, what="daemon")
    elif os.path.isabs(first):
        if not locate.is_program(first):
            raise WrapperError(NO_CLIENT, "daemon %s is %s" % (
                first, "not an executable file" if os.path.exists(first) else "missing"))
        program = first
    else:
        raise WrapperError(USAGE, "daemon %r is neither an absolute path nor one of %s"
                           % (first, ", ".join(sorted(known))))
    return [program] + words[1:]


def is_sshd(program):
    return os.path.basename(os.path.realpath(program)) == "sshd"


def job_argv0(program, pam_file=JOB_PAM_FILE):
    """sshd's argv[0]: ``sge-sshd`` (its PAM service then is the job's); refused without that service."""
    if not is_sshd(program):
        return program
    try:
        st = os.stat(pam_file)
    except OSError:
        st = None
    if st is None or not stat.S_ISREG(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
        raise WrapperError(NO_JOB, "%s is missing (or not root's alone): sshd would run without the job's PAM "
                                   "service and the session would escape its job; run sgewrap config ssh --tight "
                                   "--apply" % pam_file)
    return JOB_SSHD_NAME


def daemon_argv(daemon, pam_file=JOB_PAM_FILE, root="/"):
    """The daemon's argv: sshd as ``sge-sshd``, and where sshd takes its PAM service from
    ``PamServiceName`` (OpenSSH 9.8 and later, under ``root``) with that option selecting the job's
    service first (sshd keeps the first value it is given); other daemons as they are."""
    argv0 = job_argv0(daemon[0], pam_file)
    if argv0 == JOB_SSHD_NAME and sshd_uses_pam_service_name(root):
        return [argv0] + job_pam_service_options() + list(daemon[1:])
    return [argv0] + list(daemon[1:])


def daemon_environment(environ):
    """The job's environment without anything that steers a root process; fixed PATH."""
    env = {}
    for name, value in environ.items():
        if name.startswith("SGE_") or name in KEEP_NAMES:
            env[name] = value
        elif (name in LOCALE_NAMES or name.startswith("LC_")) and "/" not in value:
            env[name] = value
    env["PATH"] = SAFE_PATH
    return env


def run(argv, log, environ=None, script=None, pam_file=JOB_PAM_FILE, execve=os.execve, root="/"):
    """Everything rshdwrapper does short of the exec; returns an exit code if it cannot exec.
    ``root``: where to look for this host's sshd (tests point it at a fake tree)."""
    environ = os.environ if environ is None else environ
    opts, daemon_words = TABLE.parse(argv)
    log.facility = opts.facility
    if opts.help:
        try:
            if stat.S_ISSOCK(os.fstat(1).st_mode):
                log("err", "--help refused: stdout is a socket (the client's connection); run it by hand")
                return USAGE
            os.write(1, usage().encode())
        except OSError:
            pass
        return 0
    import sys
    sge_root = opts.sge_root or jobspool.sge_root_from(script if script is not None else sys.argv[0])
    daemon = resolve_daemon(daemon_words, sge_root)
    words = daemon_argv(daemon, pam_file, root)
    try:
        execve(daemon[0], words, daemon_environment(environ))
    except OSError as err:
        log("err", "cannot start %s: %s" % (daemon[0], err.strerror or err))
        return EXEC_FAILED
    return 0     # only a test's execve returns


def main(argv=None):
    """Entry point of rshdwrapper: becomes the daemon, or exits; never writes to fds 1/2 (but --help)."""
    frame.main(NAME, run, argv)
