"""Drive an interactive program through a real pseudo-terminal (qlogin, qrsh without a command)."""
import os
import pty
import select
import time


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
