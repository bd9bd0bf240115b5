"""A stand-in for sge_shepherd's remote-startup half, on loopback (selftest, tests).

Does what the reference (remote-startup.md, section 2) says the shepherd does
for one session: bind port 0 (here 127.0.0.1, or the one address it is given), accept ONE connection
within a deadline, close the listening socket, put the connection on fds 0,
1 and 2 of the daemon (every other fd closed), and start the daemon as its
child, as root, with a job-like environment and the job's spool directory as
cwd.  The client side is then run with the exact words SGE would append.

The stand-in is a process of its own whose executable is called
``sge_shepherd`` (a root-owned copy of the system's Python, made once in
:data:`STAND_IN_DIR`): ``node_access session`` recognises a shepherd by its
real uid and executable (:mod:`sgewrap.rootside.procs`), and only root can make such
a process, so the job sshd's PAM hook treats it as the real one.
"""
import json
import os
import shutil
import subprocess

STAND_IN_DIR = "/run/sgewrap-shepherd"
SYSTEM_PYTHON = "/usr/bin/python3"

#: the stand-in's program: argv[1] is a JSON list [daemon argv, env, cwd, accept timeout, address]
_SERVE = r"""
import json, os, socket, sys
argv, env, cwd, timeout, address = json.loads(sys.argv[1])
listener = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM)
listener.bind((address, 0))
listener.listen(1)
os.write(1, b"port %d\n" % listener.getsockname()[1])
listener.settimeout(timeout)
try:
    conn, _ = listener.accept()
except OSError:
    sys.exit(124)
listener.close()
if cwd:
    os.chdir(cwd)
pid = os.fork()
if pid == 0:
    fd = conn.fileno()
    for target in (0, 1, 2):
        os.dup2(fd, target)
    os.closerange(3, 65536)
    try:
        os.execve(argv[0], argv, env)
    finally:
        os._exit(127)
conn.close()
os.write(1, b"daemon %d\n" % pid)
os.close(1)
status = os.waitpid(pid, 0)[1]
code = os.waitstatus_to_exitcode(status)
sys.exit(128 - code if code < 0 else code)
"""


def stand_in_binary():
    """The root-owned ``sge_shepherd`` copy of the system's Python (made once)."""
    path = os.path.join(STAND_IN_DIR, "sge_shepherd")
    if not os.path.exists(path):
        os.makedirs(STAND_IN_DIR, mode=0o755, exist_ok=True)
        tmp = path + ".%d" % os.getpid()
        shutil.copy2(os.path.realpath(SYSTEM_PYTHON), tmp)
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
    return path


class Shepherd:
    """One stand-in shepherd: ``.port`` to connect to, ``.daemon_pid`` once connected, ``.wait()``."""

    def __init__(self, daemon_argv, env=None, cwd=None, accept_timeout=60, address="127.0.0.1"):
        self.daemon_argv = list(daemon_argv)
        env = dict(env if env is not None else {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
        spec = json.dumps([self.daemon_argv, env, cwd, accept_timeout, address])
        self.proc = subprocess.Popen([stand_in_binary(), "-I", "-S", "-c", _SERVE, spec],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, close_fds=True,
                                     env={"PATH": "/usr/bin:/bin"})
        line = self.proc.stdout.readline().split()
        if line[:1] != [b"port"]:
            self.proc.kill()
            raise RuntimeError("the stand-in shepherd did not start")
        self.port = int(line[1])
        self._daemon_pid = None

    @property
    def daemon_pid(self):
        """The daemon's PID once a client connected (waits for it), else None."""
        if self._daemon_pid is None and not self.proc.stdout.closed:
            line = self.proc.stdout.readline().split()
            if line[:1] == [b"daemon"]:
                self._daemon_pid = int(line[1])
        return self._daemon_pid

    @property
    def pid(self):
        return self.proc.pid

    def wait(self, timeout=60):
        """The daemon's exit status (128+N after signal N) once it ended."""
        return self.proc.wait(timeout)

    def close(self):
        if self.proc.poll() is None:
            if self._daemon_pid:
                try:
                    os.kill(self._daemon_pid, 9)
                except OSError:
                    pass
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()

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
