"""The one exception type, and the exit code of every kind of failure.

A wrapper that cannot do its job prints one line ``NAME: error: MESSAGE`` on
stderr (the daemon side logs it to syslog instead) and exits with the code of
its kind.  The codes are a documented contract (README.rst, ``--help``); they
sit above the range a remote command or ssh itself (255) normally uses.
"""

USAGE = 64          #: a wrapper option is unknown, lacks its value, or is malformed
CONVENTION = 65     #: SGE's arguments do not match the slot's calling convention
BAD_PORT = 66       #: PORT is not a decimal number 1-65535
BAD_HOST = 67       #: HOST is empty, looks like an option, or has unsafe characters
NO_CLIENT = 69      #: the client (or daemon) program is missing or not executable
EXEC_FAILED = 71    #: the operating system refused to start the program
NO_JOB = 72         #: rshdwrapper: sshd would run without the job PAM service
INTERNAL = 70       #: a bug: an unexpected exception (reported, never a traceback)

#: code -> what it means, in the order README.rst and --help list them
EXIT_CODES = (
    (USAGE, "bad wrapper option"),
    (CONVENTION, "arguments do not match what SGE appends for this slot"),
    (BAD_PORT, "PORT is not a decimal number 1-65535"),
    (BAD_HOST, "HOST is empty, starts with '-' or holds unsafe characters"),
    (NO_CLIENT, "client/daemon program missing or not executable"),
    (INTERNAL, "internal error (a bug: please report)"),
    (EXEC_FAILED, "exec of the program failed"),
    (NO_JOB, "rshdwrapper: sshd without its job PAM service (/etc/pam.d/sge-sshd)"),
)


def run_cli(name, body):
    """The user programs' one error policy: ``body()`` execs, or returns an exit code; a
    :class:`WrapperError` becomes the line ``NAME: error: MESSAGE`` on stderr and its code, any
    other exception ``NAME: error: internal error: ...`` and :data:`INTERNAL` -- never a
    traceback.  Never returns."""
    import sys
    try:
        code = body()
    except WrapperError as err:
        sys.stderr.write("%s: error: %s\n" % (name, err))
        code = err.code
    except Exception as err:  # never a traceback on a user's or an administrator's terminal
        sys.stderr.write("%s: error: internal error: %s: %s\n" % (name, type(err).__name__, err))
        code = INTERNAL
    sys.exit(code or 0)


class WrapperError(Exception):
    """A wrapper cannot do its job; ``code`` is the exit status to use."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
