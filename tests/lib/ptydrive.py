"""Drive an interactive program through a real pseudo-terminal (qlogin, qrsh without a command)."""
import os
import pty
import pwd
import select
import time

from . import TEST_USER, wait_until


class PtySession:
    def __init__(self, argv, env=None, rows=24, cols=120):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # child: the program, with the pty as its controlling terminal
            try:
                os.execvpe(argv[0], argv, env if env is not None else os.environ)
            finally:
                os._exit(127)
        self.buffer = b""
        self.status = None

    def send(self, text):
        os.write(self.fd, text.encode() if isinstance(text, str) else text)

    def expect(self, needle, timeout=30):
        """Read until ``needle`` (str) appears; returns everything read so far."""
        needle = needle.encode()
        deadline = time.monotonic() + timeout
        while needle not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("%r not seen; got %r" % (needle, self.buffer[-2000:]))
            ready, _, _ = select.select([self.fd], [], [], min(left, 0.5))
            if ready:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:   # EIO: the other side closed
                    chunk = b""
                if not chunk:
                    raise EOFError("%r not seen before EOF; got %r" % (needle, self.buffer[-2000:]))
                self.buffer += chunk
        return self.buffer.decode(errors="replace")

    def wait(self, timeout=30):
        """The exit code of the program (128+N if killed by signal N)."""
        deadline = time.monotonic() + timeout
        while True:
            try:   # keep draining so the program never blocks on a full pty
                if select.select([self.fd], [], [], 0.1)[0]:
                    self.buffer += os.read(self.fd, 65536)
            except OSError:
                pass
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError("program did not exit; output %r" % self.buffer[-2000:])
        os.close(self.fd)
        self.status = os.waitstatus_to_exitcode(status)
        return self.status if self.status >= 0 else 128 - self.status

    def kill(self):
        try:
            os.kill(self.pid, 9)
            os.waitpid(self.pid, 0)
        except OSError:
            pass


def user_pty(argv, env=None, user=TEST_USER):
    """``argv`` run as ``user`` (runuser, no shell) in a :class:`PtySession`; ``env``: its
    environment (by default a login's, without Grid Engine's variables)."""
    if env is None:
        pw = pwd.getpwnam(user)
        env = {"HOME": pw.pw_dir, "USER": user, "LOGNAME": user, "PATH": "/usr/bin:/bin",
               "TERM": "xterm", "LANG": "C.UTF-8"}
    return PtySession(["/usr/sbin/runuser", "-u", user, "--"] + list(argv), env=env)


class Tmux:
    """A program in a tmux window (its own server socket): type into it, read its screen, resize it.

    For what a pty alone cannot show: the window size a remote ``stty size``
    sees after a resize, job control keys, a user's login shell.
    """

    def __init__(self, argv, name="sgewrap", cols=100, rows=30, env=None):
        import subprocess
        self.socket = "sgewrap-test-%d-%s" % (os.getpid(), name)
        self.target = name
        self._run = lambda *a: subprocess.run(["tmux", "-L", self.socket] + list(a), capture_output=True,
                                              text=True, env=env)
        proc = self._run("new-session", "-d", "-s", name, "-x", str(cols), "-y", str(rows),
                         " ".join(_quote(a) for a in argv))
        if proc.returncode != 0:
            raise RuntimeError("tmux: %s" % proc.stderr)
        self._run("set-option", "-t", name, "remain-on-exit", "on")
        self._seen = 0

    def type(self, text, enter=True):
        self._run("send-keys", "-t", self.target, "-l", text)
        if enter:
            self._run("send-keys", "-t", self.target, "Enter")

    def key(self, name):
        """A key by tmux's name: C-z, C-c, Enter."""
        self._run("send-keys", "-t", self.target, name)

    def screen(self):
        return self._run("capture-pane", "-p", "-J", "-S", "-2000", "-t", self.target).stdout

    def expect(self, needle, timeout=60, after=None):
        """Wait until ``needle`` shows on the screen (in the part after ``after``, if given)."""
        def shown():
            text = self.screen()
            part = text.rsplit(after, 1)[-1] if after and after in text else ("" if after else text)
            return text if needle in part else None
        text = wait_until(shown, timeout, 0.05)
        if text is None:
            raise TimeoutError("%r not seen on the screen:\n%s" % (needle, self.screen()[-3000:]))
        return text

    def type_and_wait(self, text, needle, timeout=90):
        """Type ``text`` and wait until ``needle`` shows once more than before; the screen."""
        before = self.screen().count(needle)
        self.type(text)

        def again():
            screen = self.screen()
            return screen if screen.count(needle) > before else None
        screen = wait_until(again, timeout, 0.05)
        if screen is None:
            raise TimeoutError("%r not seen again on the screen:\n%s" % (needle, self.screen()[-3000:]))
        return screen

    def foreground(self):
        """The name of the program in the foreground of the window (the shell, or what it runs)."""
        return self._run("display-message", "-p", "-t", self.target, "#{pane_current_command}").stdout.strip()

    def wait_foreground(self, name, timeout=60):
        if not wait_until(lambda: self.foreground() == name, timeout, 0.05):
            raise TimeoutError("%s still runs in the foreground, not %s:\n%s" % (
                self.foreground(), name, self.screen()[-2000:]))

    def resize(self, cols, rows):
        self._run("resize-window", "-t", self.target, "-x", str(cols), "-y", str(rows))

    def close(self):
        self._run("kill-server")


def _quote(word):
    import shlex
    return shlex.quote(word)
