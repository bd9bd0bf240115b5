"""Logging for root-run, daemon-side programs: syslog, never fds 1 and 2.

For ``rshdwrapper`` fds 1 and 2 are the client's connection (one stray byte
breaks the SSH banner exchange); for ``node_access`` they are the job's
output files.  So messages go to syslog only, and to stderr as well when it
is a terminal (an administrator trying a program by hand).  Logging never
fails and never hangs: a syslog daemon that does not read would block
send(2), so each message gets at most LOG_TIMEOUT seconds (an interval timer
interrupts it; glibc then drops the message) and after one such timeout the
logger stops trying.  A program with its own SIGALRM handler lets it call
:func:`own_alarm` first: True means the alarm was the logger's.
"""
import os

try:
    import _signal as signal   # the C module: ``signal`` would import enum (~3 ms at every start)
except ImportError:            # pragma: no cover -- not CPython
    import signal

LOG_TIMEOUT = 1.0
FACILITIES = ("authpriv", "auth", "daemon", "user") + tuple("local%d" % i for i in range(8))
DEFAULT_FACILITY = FACILITIES[0]

_guarding = []     #: the Log whose send the current alarm guards (0 or 1 element)


def clean(text, limit=300):
    """``text`` made safe for one log line: no control characters, bounded length."""
    text = "".join(c if " " <= c != "\x7f" else "?" for c in str(text))
    return text if len(text) <= limit else text[:limit] + "..."


def own_alarm():
    """Called for a SIGALRM: True (and noted) if it is the guard of a blocked syslog send."""
    if _guarding:
        _guarding[0].alarmed = True
        return True
    return False


def _on_alarm(signum, frame):
    own_alarm()


class Log:
    """``log(priority, message)``: syslog as ``ident``; never fails, never hangs."""

    def __init__(self, ident, facility=DEFAULT_FACILITY):
        self.ident = ident
        self.facility = facility
        self._open = False
        self.alarmed = False      # the guard fired: syslog blocks
        self.broken = False
        self.to_tty = False
        try:
            self.to_tty = os.isatty(2)
        except OSError:
            pass

    def _send(self, priority, message):
        import syslog
        if not self._open:
            syslog.openlog(self.ident, syslog.LOG_PID, getattr(syslog, "LOG_" + self.facility.upper()))
            self._open = True
        if self.broken:
            return
        previous = signal.getsignal(signal.SIGALRM)
        own_handler = previous in (None, signal.SIG_DFL, signal.SIG_IGN)   # else it calls own_alarm()
        if own_handler:
            signal.signal(signal.SIGALRM, _on_alarm)
        _guarding.append(self)
        try:
            signal.setitimer(signal.ITIMER_REAL, LOG_TIMEOUT, LOG_TIMEOUT / 5)
            syslog.syslog(getattr(syslog, "LOG_" + priority.upper()), message)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            _guarding.remove(self)
            if self.alarmed:    # syslog hangs: do not wait for it again
                self.broken = True
            if own_handler:
                signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)

    def detached(self):
        """The process closed its fds (a forked watcher): connect to syslog anew, write no terminal."""
        if self._open:
            import syslog
            syslog.closelog()
            self._open = False
        self.to_tty = False

    def __call__(self, priority, message):
        message = clean(message, 900)
        try:
            self._send(priority, message)
        except Exception:
            pass
        if self.to_tty and priority in ("err", "warning"):
            try:
                os.write(2, ("%s: %s: %s\n" % (self.ident, "error" if priority == "err" else priority,
                                               message)).encode("utf-8", "replace"))
            except OSError:
                pass
