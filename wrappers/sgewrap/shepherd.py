"""A stand-in for sge_shepherd's remote-startup half, on loopback (selftest, tests).

Does what the reference (remote-startup.md, section 2) says the shepherd does
for one session: bind port 0 (here 127.0.0.1 only), accept ONE connection
within a deadline, close the listening socket, put the connection on fds 0,
1 and 2 of the daemon (every other fd closed), and exec the daemon as root
with a job-like environment and cwd.  The client side is then run with the
exact words SGE would append.
"""
import os
import socket
import subprocess
import threading


class Shepherd:
    def __init__(self, daemon_argv, env=None, cwd=None, accept_timeout=60):
        self.daemon_argv = list(daemon_argv)
        self.env = dict(env if env is not None else {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
        self.cwd = cwd
        self.accept_timeout = accept_timeout
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.port = self.listener.getsockname()[1]
        self.daemon = None          # the Popen of the daemon once a client connected
        self.error = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        try:
            self.listener.settimeout(self.accept_timeout)
            conn, _ = self.listener.accept()
            self.listener.close()
            with conn:
                fd = conn.fileno()
                self.daemon = subprocess.Popen(self.daemon_argv, stdin=fd, stdout=fd, stderr=fd,
                                               close_fds=True, env=self.env, cwd=self.cwd)
        except Exception as err:  # reported by wait()
            self.error = err
        finally:
            self._started.set()

    def wait(self, timeout=60):
        """The daemon's exit status (Popen.returncode) once it ended."""
        self._started.wait(timeout)
        if self.daemon is None:
            raise RuntimeError("no daemon started: %r" % (self.error,))
        return self.daemon.wait(timeout)

    def close(self):
        try:
            self.listener.close()
        except OSError:
            pass
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.kill()
            self.daemon.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def as_user(user, argv, **kwargs):
    """argv run as ``user`` (via runuser, no shell), with a clean login-like env."""
    import pwd
    pw = pwd.getpwnam(user)
    env = {"HOME": pw.pw_dir, "USER": user, "LOGNAME": user, "SHELL": pw.pw_shell,
           "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    env.update(kwargs.pop("env", {}))
    return subprocess.run(["/usr/sbin/runuser", "-u", user, "--"] + list(argv), env=env, **kwargs)
