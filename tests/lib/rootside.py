"""Helpers of the root-side tests: a job stack lent for a test, and a re-forking chain that proves
itself alive."""
import contextlib
import os
import time

from . import host_lock

#: a chain that forks and exits every 300 microseconds; one process of it in 200 touches the file
#: argv[1] (a /proc scan cannot tell whether it lives: its PID changes faster than a scan reads)
REFORKER = ("import os, sys, time\n"
            "os.setsid()\n"
            "n = 0\n"
            "while True:\n"
            "    time.sleep(0.0003)\n"
            "    n += 1\n"
            "    if n % 200 == 0:\n"
            "        os.utime(sys.argv[1])\n"
            "    if os.fork():\n"
            "        os._exit(0)\n")


def beating(path, within=1.0):
    """True while the chain touches ``path`` (its mtime is less than ``within`` seconds old)."""
    try:
        return time.time() - os.stat(path).st_mtime < within
    except OSError:
        return False


@contextlib.contextmanager
def lent_job_stack(installed, change=None):
    """/etc/pam.d/sge-sshd as ``--apply`` writes it for ``installed`` (its module in the PAM directory),
    ``change``d if given (text -> text), under the host lock; put back byte for byte afterwards."""
    from sgewrap.admin import pam
    with host_lock():
        try:
            with open(pam.JOB_PAM_FILE) as f:
                before = f.read()
        except FileNotFoundError:
            before = None
        if before is not None and not before.startswith(pam.JOB_STACK_MARK):
            os.unlink(pam.JOB_PAM_FILE)
        pam.install_job_stack(installed)
        if change:
            with open(pam.JOB_PAM_FILE, "w") as f:
                f.write(change(pam.job_stack(installed)))
        try:
            yield installed
        finally:
            if before is None:
                os.unlink(pam.JOB_PAM_FILE)
            else:
                with open(pam.JOB_PAM_FILE, "w") as f:
                    f.write(before)


class Log:
    """A root program's log that records (priority, message) pairs instead of writing to syslog."""

    def __init__(self):
        self.lines = []
        self.facility = None

    def detached(self):
        pass

    def __call__(self, priority, message):
        self.lines.append((priority, message))

    def text(self):
        return "\n".join(m for _, m in self.lines)
