"""qssh: ssh into a running job by its number, and the ``ProxyCommand`` that makes ``ssh JOB.job`` do it.

Three ways it runs, all as the user, stdlib only::

    qssh [--host HOST] JOB[.TASK] [ssh options] [command]     a user's command: runs ssh
    qssh --proxy NAME                                          ssh's ProxyCommand for a job name (%n)
    qssh --known-hosts NAME SEARCHED                           ssh's KnownHostsCommand for it (%n %H)

A job name (:func:`parse_name`) ends in ``.job``: ``JOB.job``, ``JOB.TASK.job``, ``HOST.JOB.job``,
``HOST.JOB.TASK.job``.  The proxy looks the job up (:func:`lookup`: ``qstat -j`` for its owner,
``qstat -g t`` for the state and host of each task), binds a socket to a free port, connects to
the node's sshd, records ``qssh_ADDRESS_PORT=TASK@HOST`` on the job (``qalter -ac``) and only
then relays ssh's bytes; at exit it removes the record (``qalter -dc``).  The node's adopt hook
(``node_access adopt``, :mod:`sgewrap.rootside.adopt`) matches the connection's peer address and
port with the record and joins that task.  A job that is not the user's, not running, suspended,
finished or unknown is refused with one line ``qssh: error: ...`` on stderr.
"""
import os
import sys

from .errors import BAD_HOST, EXEC_FAILED, NO_CLIENT, USAGE, WrapperError, run_cli

NAME = "qssh"
SUFFIX = ".job"
#: the context variable a connection is recorded under: PREFIX + ADDRESS + "_" + PORT
RECORD_PREFIX = "qssh_"
SSH = "/usr/bin/ssh"
SSH_PORT = 22
#: how long one qstat or qalter may take (seconds), and connecting to the node
QUERY_TIMEOUT, CONNECT_TIMEOUT = 10.0, 15.0
#: refused: exit status (ssh's own failures are 255; this is qssh's)
REFUSED = 1
USAGE_TEXT = """usage: qssh [--host HOST] JOB[.TASK] [ssh options] [command]
       qssh --proxy NAME                 (ssh's ProxyCommand: ssh JOB.job)
       qssh --known-hosts NAME SEARCHED  (ssh's KnownHostsCommand)

ssh into running job JOB (task TASK of an array job; with --host, the task of a parallel job
running on HOST): the session joins the job on its host (its group, its environment), through the
node's sshd and node_access adopt.  ssh options and the command are ssh's own.  Job names for ssh,
scp, rsync, VS Code (sgewrap job-ssh sets them up): JOB.job, JOB.TASK.job, HOST.JOB.job,
HOST.JOB.TASK.job.  Options of qssh itself come first:

  --host HOST       the host of a parallel job whose task to join (default: the master task's)
  --sge-root DIR    Grid Engine's root when SGE_ROOT is not set (SGE_CELL: default)
  --dry-run         print the ssh command and run nothing

Exit status: ssh's; 1 refused (not your job, not running, suspended, finished, unknown);
64 usage; 67 not a job name; 69 qstat, qalter or ssh missing.
"""


class Refused(WrapperError):
    """The job cannot be reached; the message says why (one line)."""

    def __init__(self, message):
        super().__init__(REFUSED, message)


class Target:
    """The job, task and host a name stands for; ``task`` and ``host`` may be None (not named)."""

    __slots__ = ("job", "task", "host")

    def __init__(self, job, task=None, host=None):
        self.job, self.task, self.host = job, task, host

    def __eq__(self, other):
        return (self.job, self.task, self.host) == (other.job, other.task, other.host)

    def __repr__(self):
        return "Target(%r, %r, %r)" % (self.job, self.task, self.host)


def _number(label):
    return label.isdigit() and label.isascii() and len(label) <= 10 and int(label) > 0


def _host_ok(host):
    labels = host.split(".")
    return all(labels) and len(host) <= 253 and not labels[-1].isdigit() and all(
        len(x) <= 63 and x[0] != "-" and all(c.isalnum() and c.isascii() or c in "-_" for c in x) for x in labels)


def parse_name(name):
    """The :class:`Target` of a job name ``[HOST.]JOB[.TASK].job``; WrapperError (BAD_HOST) for anything else.
    A host name never ends in a numeric label, so the numbers at the end are the job's (and task's)."""
    if not name.lower().endswith(SUFFIX) or len(name) > 300:
        raise WrapperError(BAD_HOST, "%r is not a job name (JOB.job, JOB.TASK.job, HOST.JOB.job)" % name[:80])
    labels = name[:-len(SUFFIX)].split(".")
    numbers = []
    while labels and _number(labels[-1]) and len(numbers) < 2:
        numbers.insert(0, labels.pop())
    host = ".".join(labels) or None
    if not numbers or (host is not None and not _host_ok(host)):
        raise WrapperError(BAD_HOST, "%r is not a job name (JOB.job, JOB.TASK.job, HOST.JOB.job)" % name[:80])
    return Target(numbers[0], numbers[1] if len(numbers) > 1 else None, host.lower() if host else None)


def parse_job(word, host=None):
    """The Target of qssh's own ``JOB[.TASK]`` argument (and ``--host``)."""
    job, _, task = word.partition(".")
    if not _number(job) or (task and not _number(task)) or (host is not None and not _host_ok(host)):
        raise WrapperError(BAD_HOST, "%r is not JOB or JOB.TASK (with --host, a host name)" % word[:80])
    return Target(job, task or None, host.lower() if host else None)


def sge_program(name, environ):
    """Grid Engine's client ``name``: $SGE_ROOT/bin/ARC/NAME, else from PATH."""
    from . import locate
    root = environ.get("SGE_ROOT")
    if root and os.path.isabs(root):
        for arc in locate.arch_guesses():
            path = os.path.join(root, "bin", arc, name)
            if locate.is_program(path):
                return path
    for directory in environ.get("PATH", "/usr/bin:/bin").split(":"):
        path = os.path.join(directory, name)
        if os.path.isabs(path) and locate.is_program(path):
            return path
    raise WrapperError(NO_CLIENT, "%s not found in $SGE_ROOT/bin nor in PATH (is SGE_ROOT set?)" % name)


def ask(argv, environ, timeout=QUERY_TIMEOUT):
    """(exit status, stdout, stderr) of a Grid Engine client, bounded in time."""
    import subprocess
    try:
        proc = subprocess.run([sge_program(argv[0], environ)] + argv[1:], env=environ, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Refused("%s did not answer within %g s" % (" ".join(argv[:2]), timeout))
    except OSError as err:
        raise WrapperError(EXEC_FAILED, "cannot run %s: %s" % (argv[0], err.strerror or err))
    return proc.returncode, proc.stdout, proc.stderr


def job_fields(text):
    """{field: value} of one job's ``qstat -j`` text (the first job in it)."""
    fields = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and name and not name.startswith(" ") and name.strip() not in fields:
            fields[name.strip()] = value.strip()
    return fields


class Task:
    """One line of ``qstat -g t``: a task (or a parallel job's slot) of a job on a host."""

    __slots__ = ("job", "task", "state", "host", "master")

    def __init__(self, job, task, state, host, master):
        self.job, self.task, self.state, self.host, self.master = job, task, state, host, master


def task_lines(text):
    """The Tasks of ``qstat -g t [-u USER]`` output (pending ones have no host)."""
    found = []
    for line in text.splitlines():
        f = line.split()
        if len(f) < 7 or not f[0].isdigit():
            continue
        if len(f) >= 9 and "@" in f[7] and f[8] in ("MASTER", "SLAVE"):
            found.append(Task(f[0], f[9] if len(f) > 9 else None, f[4], f[7].split("@", 1)[1], f[8] == "MASTER"))
        else:
            found.append(Task(f[0], f[-1] if len(f) > 8 else None, f[4], None, False))
    return found


def _same_host(a, b):
    a, b = a.lower(), b.lower()
    return a == b or a.split(".")[0] == b.split(".")[0] and ("." not in a or "." not in b)


def _state_refusal(job, state):
    if "d" in state:
        return "job %s is being deleted" % job
    if any(c in state for c in "sST"):
        return "job %s is suspended (state %s)" % (job, state)
    if "E" in state:
        return "job %s is in error state (%s)" % (job, state)
    if state != "r":
        return "job %s is not running yet (state %s)" % (job, state)
    return None


def choose(target, owner, me, tasks):
    """(task number, host) the target stands for, from the job's owner and its ``qstat -g t`` lines;
    Refused with the reason otherwise."""
    job = target.job
    if owner != me:
        raise Refused("job %s is not yours (it is %s's)" % (job, owner))
    mine = [t for t in tasks if t.job == job]
    if not mine:
        raise Refused("job %s is not running" % job)
    if target.task:
        mine = [t for t in mine if (t.task or "1") == target.task]
        if not mine:
            raise Refused("job %s has no task %s running" % (job, target.task))
    numbers = sorted({t.task or "1" for t in mine}, key=int)
    if len(numbers) > 1:
        running = [t.task for t in mine if t.state == "r" and t.host]
        raise Refused("job %s is an array job: name a task, %s.TASK.job (running: %s)"
                      % (job, job, ", ".join(sorted(set(running), key=int)) or "none"))
    with_host = [t for t in mine if t.host]
    if not with_host:
        raise Refused(_state_refusal(job, mine[0].state) or "job %s is not running" % job)
    if target.host:
        here = [t for t in with_host if _same_host(t.host, target.host)]
        if not here:
            raise Refused("job %s%s does not run on %s (it runs on %s)" % (
                job, "." + target.task if target.task else "", target.host,
                ", ".join(sorted({t.host for t in with_host}))))
        chosen = here[0]
    else:
        chosen = ([t for t in with_host if t.master] or with_host)[0]
    master = [t for t in with_host if t.master and t.task == chosen.task]
    why = _state_refusal(job, (master[0] if master else chosen).state)    # a slave host's line may say t
    if why:
        raise Refused(why)
    return numbers[0], chosen.host


def lookup(target, me, environ):
    """(task number, host) of ``target``, a running task of ``me``'s; Refused otherwise."""
    rc, out, err = ask(["qstat", "-j", target.job], environ)
    fields = job_fields(out)
    if rc != 0 or "owner" not in fields or fields.get("job_number") != target.job:
        if "do not exist" in out + err:
            raise Refused("job %s %s" % (target.job, "has finished" if finished(target.job, environ)
                                         else "is unknown (no such job, or it finished long ago)"))
        raise Refused("qstat -j %s failed: %s" % (target.job, (err or out).strip().splitlines()[:1]))
    rc, out, err = ask(["qstat", "-g", "t", "-u", me], environ)
    if rc != 0:
        raise Refused("qstat -g t failed: %s" % (err or out).strip()[:200])
    return choose(target, fields["owner"], me, task_lines(out))


def finished(job, environ):
    """True if Grid Engine's accounting knows job ``job`` (it ran and ended)."""
    try:
        rc, out, _ = ask(["qacct", "-j", job], environ, timeout=5.0)
    except WrapperError:
        return False
    return rc == 0 and "jobnumber" in out


def record_name(address, port):
    """The context variable naming a connection from ``address``:``port``."""
    return "%s%s_%d" % (RECORD_PREFIX, canonical_address(address), port)


def canonical_address(address):
    """An address as the node's kernel shows a peer: IPv4 dotted (an IPv4-mapped IPv6 one too), IPv6 compressed."""
    import ipaddress
    ip = ipaddress.ip_address(address.split("%")[0])
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return str(ip)


def connect(host, port=SSH_PORT):
    """A socket connected to host:port from a port bound first (so it is this socket's alone)."""
    import socket
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as err:
        raise Refused("cannot resolve %s: %s" % (host, err))
    last = None
    for family, kind, proto, _, address in infos:
        s = socket.socket(family, kind, proto)
        try:
            s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
            s.settimeout(CONNECT_TIMEOUT)
            s.connect(address)
            s.settimeout(None)
            return s
        except OSError as err:
            last = err
            s.close()
    raise Refused("cannot connect to %s port %d: %s" % (host, port, last))


def relay(sock):
    """Copy stdin to the socket and the socket to stdout until the node closes (or stdin ends and the
    node closes)."""
    import select
    import socket
    fds = [0, sock.fileno()]
    while sock.fileno() in fds:
        ready = select.select(fds, [], [])[0]
        for fd in ready:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            if fd == 0:
                if not data:
                    fds.remove(0)
                    try:
                        sock.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                else:
                    sock.sendall(data)
            else:
                if not data:
                    fds.remove(fd)
                    break
                view = memoryview(data)
                while view:
                    view = view[os.write(1, view):]


def proxy(name, environ, me):
    """ssh's ProxyCommand for a job name: look up, connect, record, relay, forget."""
    import signal
    target = parse_name(name)
    task, host = lookup(target, me, environ)
    sock = connect(host)
    note = _note_path(name, environ)        # the ssh above us, now: once it is gone, getppid() is another
    address, port = sock.getsockname()[:2]
    variable = record_name(address, port)
    rc, out, err = ask(["qalter", "-ac", "%s=%s@%s" % (variable, task, host), target.job], environ)
    if rc != 0:
        raise Refused("cannot record this connection on job %s: %s" % (target.job, (err or out).strip()[:200]))
    remember_host(note, host)

    def stop(signum, frame):
        raise SystemExit(0)
    for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGPIPE):
        signal.signal(sig, stop)
    try:
        relay(sock)
    except (OSError, SystemExit):
        pass
    finally:
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        sock.close()
        try:
            ask(["qalter", "-dc", variable, target.job], environ)
        except WrapperError:
            pass
        forget_host(note)
    return 0


def _note_path(name, environ):
    """Where the proxy of the ssh process above us leaves the host of ``name`` for its KnownHostsCommand."""
    from .methods.ssh import control_dir
    directory = control_dir(environ)
    if directory is None:
        return None
    return os.path.join(directory, "qssh-host.%d.%s" % (os.getppid(), name.lower()))


def remember_host(path, host):
    if path:
        try:
            fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            os.write(fd, host.encode())
            os.close(fd)
            os.rename(path + ".tmp", path)
        except OSError:
            pass


def forget_host(path):
    if path:
        try:
            os.unlink(path)
        except OSError:
            pass


def known_host(name, environ, me):
    """The node whose host key stands for job name ``name``: the one the proxy of this ssh connected to,
    else the one named in it, else looked up."""
    path = _note_path(name, environ)
    if path:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                host = os.read(fd, 300).decode("ascii", "replace")
            finally:
                os.close(fd)
            if _host_ok(host):
                return host
        except OSError:
            pass
    target = parse_name(name)
    return target.host or lookup(target, me, environ)[1]


KNOWN_HOSTS_FILES = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2", "/etc/ssh/ssh_known_hosts",
                     "/etc/ssh/ssh_known_hosts2")


def known_hosts(name, searched, environ, me):
    """Print the node's known-hosts entries as entries of ``searched`` (ssh's %H): ssh checks the node's
    key under the node's own name, and never writes an entry per job."""
    import subprocess
    host = known_host(name, environ, me)
    lines = []
    for path in KNOWN_HOSTS_FILES:
        path = os.path.expanduser(path)
        if not os.path.isfile(path):
            continue
        for query in (host, host.split(".")[0]):
            out = subprocess.run(["/usr/bin/ssh-keygen", "-F", query, "-f", path], capture_output=True,
                                 text=True, stdin=subprocess.DEVNULL, timeout=QUERY_TIMEOUT).stdout
            for line in out.splitlines():
                words = line.split()
                if not words or line.startswith("#"):
                    continue
                marker = [words.pop(0)] if words[0].startswith("@") else []
                if len(words) >= 3:
                    lines.append(" ".join(marker + [searched] + words[1:]))
            if lines:
                break
    sys.stdout.write("".join(line + "\n" for line in dict.fromkeys(lines)))
    return 0


def command(argv, environ, me, dry_run=False):
    """qssh [--host HOST] JOB[.TASK] [ssh options] [command]: the ssh argv that reaches the task."""
    host = None
    while argv and argv[0].startswith("--"):
        option = argv.pop(0)
        if option == "--host" and argv:
            host = argv.pop(0)
        elif option.startswith("--host="):
            host = option.split("=", 1)[1]
        elif option == "--":
            break
        else:
            raise WrapperError(USAGE, "unknown option %r (see qssh --help)" % option)
    if not argv:
        raise WrapperError(USAGE, "no job named (see qssh --help)")
    target = parse_job(argv.pop(0), host)
    task, node = lookup(target, me, environ)
    name = "%s%s.%s.%s%s" % ("", node, target.job, task, SUFFIX)
    me_path = os.path.abspath(sys.argv[0]) if os.path.isabs(sys.argv[0]) else NAME
    root = environ.get("SGE_ROOT", "")
    proxy_words = "%s%s --proxy %%n" % (me_path, " --sge-root " + root if root else "")
    ssh = [SSH, "-o", "ProxyCommand=" + proxy_words, "-o", "HostKeyAlias=" + node,
           "-o", "KnownHostsCommand=none", "-o", "UserKnownHostsFile=~/.ssh/known_hosts ~/.ssh/known_hosts2",
           "-o", "GlobalKnownHostsFile=/etc/ssh/ssh_known_hosts /etc/ssh/ssh_known_hosts2",
           "-o", "CheckHostIP=no", "-o", "ControlPath=~/.ssh/sgewrap-%r@" + name]
    options, rest = _split_ssh(argv)
    full = ssh + options + ["--", name] + rest
    if dry_run:
        import shlex
        sys.stdout.write(" ".join(shlex.quote(w) for w in full) + "\n")
        return 0
    try:
        os.execv(SSH, full)
    except OSError as err:
        raise WrapperError(EXEC_FAILED, "cannot run %s: %s" % (SSH, err.strerror or err))


#: ssh's options that take a value (OpenSSH 10.0's getopt string)
SSH_VALUED = set("BbcDEeFIiJLlmOoPpQRSWw")


def _split_ssh(argv):
    """(ssh options, command words) of what follows JOB on qssh's command line (options first)."""
    options = []
    i = 0
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "-":
        word = argv[i]
        i += 1
        if word == "--":
            break
        options.append(word)
        for n, letter in enumerate(word[1:], 1):
            if letter in SSH_VALUED:
                if n == len(word) - 1 and i < len(argv):     # its value is the next word
                    options.append(argv[i])
                    i += 1
                break
    return options, argv[i:]


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["--help"], ["-h"]):
        sys.stdout.write(USAGE_TEXT)
        return

    def body():
        import pwd
        environ = dict(os.environ)
        while argv[:1] and argv[0].startswith("--sge-root"):
            option = argv.pop(0)
            root = option.split("=", 1)[1] if "=" in option else (argv.pop(0) if argv else "")
            if not os.path.isabs(root):
                raise WrapperError(USAGE, "--sge-root takes an absolute directory")
            environ.setdefault("SGE_ROOT", root)
        environ.setdefault("SGE_CELL", "default")
        me = pwd.getpwuid(os.getuid()).pw_name
        if argv[:1] == ["--proxy"] and len(argv) == 2:
            return proxy(argv[1], environ, me)
        if argv[:1] == ["--known-hosts"] and len(argv) == 3:
            return known_hosts(argv[1], argv[2], environ, me)
        if argv[:1] == ["--dry-run"]:
            return command(argv[1:], environ, me, dry_run=True)
        return command(argv, environ, me)

    run_cli(NAME, body)
