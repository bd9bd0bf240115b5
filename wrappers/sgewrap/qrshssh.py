"""qrsh_ssh: an ssh-compatible front for ``qrsh -inherit``, for tools inside a parallel job that
only know how to call ssh (MPICH's ssh launcher, ``pdsh -R ssh``, GNU parallel ``--sshlogin``,
cluster launchers): their remote processes then start as tasks of the job, accounted and killed
with it, instead of bypassing Grid Engine.

Accepts what those tools pass to ssh::

    qrsh_ssh [-1246AaCfGgKkMNnqsTtVvXxYy] [-B iface] [-b addr] [-c cipher] [-D port] [-E file]
             [-e char] [-F file] [-I lib] [-i file] [-J dest] [-L ...] [-l user] [-m mac] [-O cmd]
             [-o option] [-P tag] [-p port] [-Q query] [-R ...] [-S path] [-W host:port] [-w ...]
             [user@]host [options] [--] [command ...]
    qrsh_ssh host [-l user] [-n] command ...          (the rsh spelling)
    qrsh_ssh --linger [ssh options] ...                (also SGEWRAP_LINGER=1: see LINGER)

Options may follow the host, as OpenSSH reads them, unless ``--`` came before the host.

and runs ``qrsh -inherit [-nostdin] HOST 'COMMAND...'``: the command's words joined with spaces,
as ssh joins them for the remote shell.  ``-n`` becomes ``-nostdin``; the options that only
shape ssh's own connection (cipher, identity, port, verbosity, compression...) are accepted and
have nothing to do; what qrsh -inherit has no counterpart for (a pty, agent and X11 forwarding,
connection sharing, ``-O``) follows the policies in ``POLICIES``.  ``-s sftp`` (scp, sftp) runs
the execution host's SFTP server as the task with no shell of the user's, and qrsh_ssh stays to
drop what a login shell prints before it (``relay``).  ``--linger`` (or ``SGEWRAP_LINGER=1`` in
the environment) keeps the task open while what the command left running in the background runs
(``linger``), for launchers that detach (ipyparallel).  Each command holds one of the job's slot
locks of its host while qrsh runs and waits for a free one (``take_slot``: many at once queue for
the job's slots); a task the execd refuses all the same is tried again (``run_task``).  Refused with one line and an
exit code, never half-started: no parallel job here (no ``PE_HOSTFILE``/``JOB_ID``: 72), a host
the job was not granted (67), another user than the job's owner (``-l``/``user@``: 64), port
forwarding or a proxy (``-L -R -D -W -w -J``, ``-o *Forward``/``ProxyCommand``/``ProxyJump``:
64), a query (``-Q``, ``-G``: 64), going to the background or running nothing (``-f``, ``-N``,
no command: 64).  The exit status is the remote command's (qrsh -inherit's); 255, as ssh's, is
qrsh -inherit's when no exit status came back from the task, and the answer to ``-O``.
"""
import os
import pwd
import re
import sys

from .errors import BAD_HOST, EXEC_FAILED, INTERNAL, NO_CLIENT, NO_JOB, USAGE, WrapperError, run_cli

NAME = "qrsh_ssh"
FLAGS = set("1246AaCfGgKkMNnqsTtVvXxYy")
VALUED = set("BbcDEeFIiJLlmOoPpQRSWw")   # OpenSSH 10.0's getopt string (9.2's -P takes no value)
#: what cannot be honoured through qrsh -inherit
REFUSED_FLAGS = {"f": "going to the background (-f)", "N": "running no command (-N)",
                 "G": "printing the configuration (-G)"}
REFUSED_VALUED = {"L": "port forwarding (-L)", "R": "port forwarding (-R)", "D": "port forwarding (-D)",
                  "W": "stdio forwarding (-W)", "w": "tunnel devices (-w)", "J": "a jump host (-J)",
                  "Q": "a query (-Q)"}
#: ``-o`` keywords whose value decides (lower case): {keyword: {value: what it sets here, or None}};
#: another value is refused.  Every other keyword is accepted and has nothing to do (ControlMaster,
#: ControlPath and ControlPersist too: there is no connection to share).
OPTION_VALUES = {
    "localforward": {}, "remoteforward": {}, "dynamicforward": {},
    "proxycommand": {"none": None}, "proxyjump": {"none": None}, "tunnel": {"no": None},
    "permitlocalcommand": {"no": None}, "remotecommand": {"none": None},
    "forkafterauthentication": {"no": None}, "stdinnull": {"no": None, "yes": "nostdin"},
    "sessiontype": {"default": None, "subsystem": "subsystem"},
}
#: ``-O`` commands OpenSSH knows; qrsh_ssh answers them as ssh does when no master runs
CONTROL_COMMANDS = ("check", "forward", "exit", "stop", "cancel", "proxy")
#: ssh's own failure status (qrsh_ssh's answer to -O, as ssh's)
SSH_FAILED = 255
#: the subsystems (``ssh -s HOST NAME``) qrsh_ssh runs
SUBSYSTEMS = ("sftp",)
#: How a subsystem's server starts on the execution host, through ``qrsh -inherit -noshell`` (argument
#: words kept, no shell of the user's): ``/bin/sh -c SCRIPT sh MARKER SERVER``.  The only shell left is
#: the one sshd (or rshd) runs qrsh_starter with, and its startup files (a ~/.bashrc that echoes) may
#: print before it: qrsh_ssh drops what comes before MARKER's line, then the server speaks alone.  No
#: backslash in it: Son of Grid Engine's qrsh_starter turns the two characters backslash-n of a
#: command into a newline (execd writes a newline that way into the task's environment file).
SUBSYSTEM_SCRIPT = 'echo "$1" && exec "$2"'
#: what the relay keeps of the output before the marker (shown on stderr if no marker comes)
MAX_BEFORE_MARKER = 65536
#: qrsh_ssh's own option that asks for LINGER, and the environment variable that does (for tools whose
#: ssh command can carry no option: pdsh's and Ray's ``ssh`` from PATH); its values that mean yes
LINGER_OPTION = "--linger"
LINGER_VARIABLE = "SGEWRAP_LINGER"
LINGER_YES = ("1", "yes", "true")
#: How a command runs under --linger, through ``qrsh -inherit -noshell`` like a subsystem: ``/bin/sh -c
#: SCRIPT sh MARKER COMMAND``.  It prints MARKER's line (what a login shell printed before is dropped),
#: runs COMMAND through the user's shell as ssh would, prints "MARKER STATUS" on standard output and
#: error (qrsh_ssh returns STATUS to the tool there), then keeps the task (and its session) open while
#: a process of the user carries the task's additional group id, other than this script, its ancestors
#: (qrsh_starter, the session) and its own children (grep, sleep), zombies aside: what COMMAND left in
#: the background, detached or not.  The line is "MARKER STATUS W", W 1 if it stays, 0 if nothing was left (then the
#: task ends at once).  No backslash in it (SUBSYSTEM_SCRIPT says why).
LINGER_SCRIPT = """echo "$1"
"${SHELL:-/bin/sh}" -c "$2"
s=$? w=0
parent() {
    pp=
    while read -r k v r; do [ "$k" = PPid: ] && pp=$v; done 2>/dev/null <"/proc/$1/status"
}
others() {
    grep -lsE "^Groups:.*[[:space:]]$g[[:space:]]" /proc/[0-9]*/status | {
        while read -r f; do
            u= pp= st=
            while read -r k v r; do
                case $k in Uid:) u=$v ;; PPid:) pp=$v ;; State:) st=$v ;; esac
            done 2>/dev/null <"$f"
            p=${f#/proc/} p=${p%/status}
            [ "$u" = "$me" ] && [ "$pp" != $$ ] && [ "$st" != Z ] || continue
            case $up in *" $p "*) continue ;; esac
            exit 0
        done
        exit 1
    }
}
if g=$(cat "$SGE_JOB_SPOOL_DIR/addgrpid" 2>/dev/null) && me=$(id -u); then
    up=" $$ " p=$$
    while parent "$p" && [ -n "$pp" ] && [ "$pp" -gt 1 ]; do up="$up$pp " p=$pp; done
    others && w=1
fi
echo "$1 $s $w"
echo "$1 $s $w" >&2
exec </dev/null >/dev/null 2>&1
[ "$w" = 1 ] || exit "$s"
while others; do sleep 1; done
exit "$s"
"""
#: What --linger does, for --help and the man page
LINGER_HELP = ("--linger (or %s=1 in the job's environment, for tools whose ssh command can carry no option): "
               "for launchers that detach (ipyparallel's nohup ... &).  The command runs under a small /bin/sh "
               "script of the task; when the command exits, qrsh_ssh returns its exit status at once and lets go "
               "of the tool's standard input, output and error, while the task stays open (a child of qrsh_ssh "
               "keeps qrsh running) as long as a process of the user carries the task's additional group id: "
               "what the command left running stays a task of the job, accounted, and ends with qdel or the job. "
               "A command that leaves nothing ends its task at once. Each lingering command holds a slot of "
               "its host." % LINGER_VARIABLE)
#: after the command's status came on standard output: how long qrsh_ssh waits for its line on standard
#: error (all the command's error output is then passed on) before it returns anyway
LINGER_STDERR_WAIT = 5.0

#: Many at once (clush -f 64, parallel -j64): each qrsh -inherit needs a free slot of the job on its
#: host, or its execd refuses the task ("didn't accept task", qrsh exits 1).  qrsh_ssh takes one of the
#: host's slot locks (flock on SLOT_DIR/HOST.I in $TMPDIR, which Grid Engine makes per job and host, so
#: the connections that one host of the job opens are counted together) for as long as its qrsh runs,
#: and waits for a free one: extra connections queue instead of failing.  I counts the slots the job
#: holds on HOST ($PE_HOSTFILE), less the job script's own on the master host (the first line).
SLOT_DIR = "qrsh_ssh-slots"
#: how long (seconds) a waiting qrsh_ssh sleeps between two looks at the locks (a random part of it)
SLOT_POLL = 0.1
#: what qrsh -inherit says when the execd refuses the task (qsh.c, MSG_QSH_EXECUTINGTASKOFJOBFAILED_IS
#: with MSG_GDI_EXECDONHOSTDIDNTACCEPTTASK_S); a slot held outside these locks (another host's
#: qrsh_ssh, MPI's own qrsh -inherit, the job script's slot with job_is_first_task FALSE counted
#: wrong) is waited for this many seconds, then refused with one line (SSH_FAILED)
REFUSED_TASK = re.compile(rb'^error: executing task of job \d+ failed: execution daemon on host "[^"\n]*" '
                          rb"didn't accept task\n$")
REFUSED_PREFIX = b"error: executing task of job "
RETRY_SECONDS = 30.0
#: the tables' words for it (--help, the man page)
SLOTS_HELP = ("Many at once: each command holds one of the job's slots on its host while it runs (Grid Engine "
              "refuses a task beyond them). qrsh_ssh takes one of that host's slots ($PE_HOSTFILE; on the "
              "job's master host one less, the job script's) and waits for a free one, so a tool that opens "
              "more connections than there are slots (clush -f 64, parallel -j64) runs them as slots free up; "
              "the slots are counted per host the connections come from ($TMPDIR/%s). A task Grid Engine "
              "refuses all the same (a slot held by another host's or MPI's own qrsh -inherit) is tried again "
              "for %d s, then refused with one line, exit 255." % (SLOT_DIR, RETRY_SECONDS))

#: What qrsh_ssh does with what qrsh -inherit has no counterpart for: (what, policy; {server} and
#: {variable}: the SFTP server's, methods).  ``--help`` and the man page show them (policies()).
POLICIES = (
    ("host", "any name, alias or address (IPv4, IPv6, [IPv6]) of a host in $PE_HOSTFILE, or of this host "
             "(localhost); qrsh -inherit gets its name in $PE_HOSTFILE"),
    ("user@host, -l user", "the job owner's own name is accepted; another user is refused (64)"),
    ("-s sftp (scp, sftp)", "the execution host's SFTP server (${variable}, default {server}) runs as "
                            "the task through qrsh -inherit -noshell; "
                            "what a login shell prints before it (a ~/.bashrc that echoes) is dropped. "
                            "Another subsystem is refused (64)"),
    ("-t, -tt, -o RequestTTY", "accepted; the command runs without a pseudo-terminal (qrsh -inherit has "
                               "none), as ssh -T would run it"),
    ("-A, -o ForwardAgent", "accepted; no agent is forwarded (as to an sshd with AllowAgentForwarding no)"),
    ("-X, -Y, -o ForwardX11", "accepted; no X11 forwarding (as to an sshd with X11Forwarding no)"),
    ("-M, -S, -o Control*", "accepted and ignored: each command is a task of its own, there is no "
                            "connection to share"),
    ("-O check|exit|...", "answered as ssh answers without a master: 'Control socket connect(PATH): No "
                          "such file or directory' (or 'No ControlPath specified for \"-O\" command'), "
                          "exit 255"),
    ("-o with a value that only disables", "accepted: ClearAllForwardings, PermitLocalCommand=no, "
                                           "RemoteCommand=none, ProxyCommand=none, ForwardAgent=no, "
                                           "ForwardX11=no, RequestTTY=no, SessionType=default"),
)

#: How each tool that only knows ssh is pointed at qrsh_ssh in a job script, and what works: key ->
#: (tool, where it comes from, command line or None if it cannot work, what works and how it is
#: known).  In the command line, {qrsh_ssh} is this program's path, {job_ssh} the directory whose
#: ``ssh`` is this program (methods.JOB_SSH_DIR), {hosts} the job's hosts (comma-separated) and
#: {command} what the tool runs; HOST is another host of the job.  ``qrsh_ssh --help``, the man page
#: and README.rst show them (tools_table); tests/e2e/test_mpi.py and test_qrsh_ssh_tools.py run the
#: ones marked CI across two hosts, tests/unit/test_qrsh_ssh.py replays every tool's argv.
TOOLS = {
    "openmpi": ("Open MPI", "openmpi-bin",
                "mpirun --mca plm_rsh_agent {qrsh_ssh} --mca plm_rsh_disable_qrsh 1 {command}",
                "works: its daemons (orted) start as tasks, ranks on every host (CI)"),
    "mpich": ("MPICH (Hydra)", "mpich", "mpiexec -launcher ssh -launcher-exec {qrsh_ssh} -n $NSLOTS {command}",
              "works: its proxies (hydra_pmi_proxy) start as tasks (CI)"),
    "pdsh": ("pdsh", "pdsh", "PATH={job_ssh}:$PATH pdsh -R ssh -w {hosts} {command}",
             "works: one task per host (CI)"),
    "parallel": ("GNU parallel", "parallel", "parallel --ssh {qrsh_ssh} -S {hosts} --nonall {command}",
                 "works: one task per host (CI); -j64 to a host of 2 slots: all 64 run, queued for its slots "
                 "(CI)"),
    "scp": ("scp", "openssh-client", "scp -S {qrsh_ssh} [-O] [-r] SOURCE HOST:TARGET",
            "works: SFTP (OpenSSH 9's default) and -O, files and directories, both ways, byte for byte (CI); "
            "OpenSSH 10's from a Debian 13 host too (CI)"),
    "sftp": ("sftp", "openssh-client", "sftp -S {qrsh_ssh} [-b BATCHFILE] HOST",
             "works: the SFTP subsystem, whatever ~/.bashrc prints, batch (-b) and typed at a terminal (CI); "
             "OpenSSH 10's from a Debian 13 host too (CI: batch)"),
    "rsync": ("rsync", "rsync", "rsync -e {qrsh_ssh} -a SOURCE HOST:TARGET",
              "works: both ways, byte for byte (CI); its remote side runs through the login shell, which must "
              "print nothing on standard output, as over ssh"),
    "clush": ("ClusterShell", "clustershell", "clush -O ssh_path={qrsh_ssh} -w {hosts} {command}",
              "works: one task per host (CI); a fan-out of 64 to a host of 2 slots (-f 64, its exec worker): "
              "all 64 run, queued for its slots (CI)"),
    "julia": ("Julia", "not in Debian 12", 'julia -e \'using Distributed; addprocs(["HOST"]; ssh="{qrsh_ssh}")\'',
              "works: each worker a task, the cookie on stdin (CI: Distributed's exact argv replayed); "
              "tunnel=true cannot (port forwarding)"),
    "charm": ("Charm++", "not in Debian", "charmrun ++remote-shell {qrsh_ssh} ++nodelist NODELIST {command}",
              "works: the start script on stdin (/bin/bash -f) runs as a task (CI: charmrun's exact argv "
              "replayed); ++interactive: not run"),
    "ray": ("Ray", "pip: ray", "PATH={job_ssh}:$PATH ray up CLUSTER.yaml (provider: local)",
            "its SSHCommandRunner (Ray 2.60) runs each command as a task, the host by its IP (user@IP), with "
            "login shells (-tt: no pty, bash -i warns 'no job control') and without; ControlMaster, ControlPath, "
            "ControlPersist ignored; its environment variables, the exit status and its rsync up and down (CI: "
            "the runner itself); port forwarding (-L) refused (CI); ray up itself not run: what ray start "
            "leaves running on a node needs SGEWRAP_LINGER=1 (not run)"),
    "ipyparallel": ("ipyparallel", "python3-ipyparallel", "c.SSHLauncher.ssh_cmd = ['{qrsh_ssh}', '--linger']",
                    "works with --linger: the engine it starts with nohup ... & stays a task of the job while it "
                    "runs, answers, ends with the cluster or qdel (CI); scp_cmd: scp -S and the same path"),
    "dask": ("Dask SSHCluster", "python3-distributed", None,
             "cannot: asyncssh speaks ssh itself, there is no ssh program to replace; use adopt instead (README: "
             "Adopt): its logins to a host of the job join the job"),
}
#: qrsh_ssh's own exit codes (otherwise the status is the remote command's)
EXIT_CODES = ((USAGE, "usage, another user, or what qrsh -inherit cannot honour (forwarding, a proxy)"),
              (BAD_HOST, "a host this job was not granted (PE_HOSTFILE)"),
              (NO_CLIENT, "qrsh not found (PATH, $SGE_ROOT/bin/ARCH)"),
              (INTERNAL, "internal error"),
              (EXEC_FAILED, "qrsh could not be started"),
              (NO_JOB, "not inside a parallel job (JOB_ID, PE_HOSTFILE)"),
              (SSH_FAILED, "as ssh's own failure: -O (no master runs), qrsh -inherit got no exit status back, or "
                           "the host took no task for %d s (its slots in use)" % RETRY_SECONDS))
#: the job's hosts, comma-separated, in a job script (for {hosts})
HOSTS_WORD = "$(awk '{print $1}' \"$PE_HOSTFILE\" | paste -sd, -)"


def setting(line, path, command="PROGRAM"):
    """A TOOLS command line for this program installed at ``path`` (``job-ssh`` beside it)."""
    from .methods import JOB_SSH_DIR
    return line.format(qrsh_ssh=path, job_ssh=os.path.join(os.path.dirname(path), JOB_SSH_DIR),
                       hosts='"$hosts"', command=command)


def policies():
    """POLICIES with the registry's values filled in."""
    from .methods import SFTP_SERVER, SFTP_SERVER_VARIABLE
    return [(what, policy.format(server=SFTP_SERVER, variable=SFTP_SERVER_VARIABLE)) for what, policy in POLICIES]


def tools_table(path):
    """TOOLS for this program installed at ``path``: a line per tool with its setting, then what
    works, wrapped; what --help and README.rst show."""
    import textwrap
    lines = []
    for tool, _, line, works in TOOLS.values():
        lines.append("%-16s %s" % (tool, setting(line, path) if line else "-"))
        lines += textwrap.wrap(works, 100, initial_indent=" " * 17, subsequent_indent=" " * 17)
    return lines


def usage(path=None):
    """The --help text, with the tools' settings for this installation."""
    here = path or os.path.join("$SGE_ROOT/util/resources/wrappers", NAME)
    import textwrap
    lines = [__doc__.strip().split("\n\n")[0].replace("\n", " ").replace("``", ""), "",
             "usage: %s [--linger] [ssh options] [user@]host [options] [--] command ..." % NAME,
             "       %s host [-l user] [-n] command ..." % NAME, ""]
    lines += textwrap.wrap(LINGER_HELP, 100)
    lines += [""] + textwrap.wrap(SLOTS_HELP, 100)
    lines += ["", "In a job script (hosts: %s; HOST: another host of the job):" % HOSTS_WORD]
    lines += ["  " + line for line in tools_table(here)]
    lines += ["", "What qrsh -inherit has no counterpart for:"]
    lines += ["  %s: %s" % (what, policy) for what, policy in policies()]
    lines += ["", "Exit status: the remote command's, or"]
    lines += ["  %-3d %s" % (code, why) for code, why in EXIT_CODES]
    return "\n".join(lines) + "\n"


class Request:
    __slots__ = ("host", "users", "nostdin", "verbose", "command", "subsystem", "control", "control_path",
                 "linger")

    def __init__(self):
        self.host = self.control = self.control_path = None
        self.nostdin = self.verbose = self.subsystem = self.linger = False
        self.command = []
        #: every user named (-l, user@): which one ssh would take depends on their order, so all must
        #: be the job's owner
        self.users = []


class Answered(Exception):
    """What ssh itself would print (one line) and its exit status: qrsh_ssh says the same."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def _keyword(text):
    """(keyword, value) of an ssh ``-o`` option: ``Key=Value``, ``Key Value``, ``Key = Value`` (one
    word: sftp passes ``"-oForwardX11 no"``)."""
    text = text.strip(" \t")
    cut = next((i for i, c in enumerate(text) if c in " \t="), len(text))
    value = text[cut:].strip(" \t")
    if value.startswith("="):
        value = value[1:].strip(" \t")
    return text[:cut], value.strip('"')


def _config(req, text):
    """One ``-o`` option: refused, or what it sets, or nothing to do."""
    key, value = _keyword(text)
    keyword = key.lower()
    if keyword == "controlpath" and req.control_path is None:   # the first one counts, as in ssh
        req.control_path = value
    allowed = OPTION_VALUES.get(keyword)
    if allowed is None:
        return
    if value.lower() not in allowed:
        raise WrapperError(USAGE, "-o %s cannot go through qrsh -inherit" % text.strip()[:80])
    effect = allowed[value.lower()]
    if effect == "nostdin":
        req.nostdin = True
    elif effect == "subsystem":
        req.subsystem = True


def _option(req, letter, value):
    if letter in REFUSED_VALUED:
        raise WrapperError(USAGE, "%s cannot go through qrsh -inherit" % REFUSED_VALUED[letter])
    if letter == "l":
        req.users.append(value)
    elif letter == "o":
        _config(req, value)
    elif letter == "S":           # as ssh: -S replaces any ControlPath given before it
        req.control_path = value
    elif letter == "O":
        if value not in CONTROL_COMMANDS:
            raise Answered(SSH_FAILED, "Invalid multiplex command.")
        req.control = value


def _flags(req, word, i, argv):
    """Parse one word of option letters (``-nT``, ``-p22``, ``-o Opt=v``); the next index."""
    j = 1
    while j < len(word):
        letter = word[j]
        if letter in FLAGS:
            if letter in REFUSED_FLAGS:
                raise WrapperError(USAGE, "%s cannot go through qrsh -inherit" % REFUSED_FLAGS[letter])
            if letter == "n":
                req.nostdin = True
            elif letter == "v":
                req.verbose = True
            elif letter == "s":
                req.subsystem = True
            j += 1
        elif letter in VALUED:
            value = word[j + 1:]
            if not value:
                if i + 1 >= len(argv):
                    raise WrapperError(USAGE, "option -%s needs a value" % letter)
                i += 1
                value = argv[i]
            _option(req, letter, value)
            return i + 1
        else:
            raise WrapperError(USAGE, "unknown option -%s" % letter)
    return i + 1


def control_answer(req):
    """What ssh says to ``-O COMMAND`` when no master listens on its control socket (qrsh_ssh never
    starts one): OpenSSH's mux.c muxclient() and ssh.c, fatal() exits 255."""
    path = req.control_path
    if path is None or path.lower() == "none":
        return 'No ControlPath specified for "-O" command'
    return "Control socket connect(%.100s): No such file or directory" % path


def _options(req, argv, i):
    """Parse options from ``argv[i]`` on, as OpenSSH's getopt does (no permutation: the first word
    that is no option ends them; ``--`` ends them and is dropped); (next index, ended by --)."""
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "-":
        if argv[i] == "--":
            return i + 1, True
        if argv[i] == LINGER_OPTION:            # qrsh_ssh's own, not ssh's
            req.linger = True
            i += 1
            continue
        i = _flags(req, argv[i], i, argv)
    return i, False


def parse(argv):
    """The Request of an ssh (or rsh) command line.

    As OpenSSH does, options may also follow the host (``ssh HOST -l USER -- CMD``, which GNU
    parallel sends), unless ``--`` came before it; that also covers the rsh spelling
    ``HOST [-l USER] [-n] CMD``.
    """
    req = Request()
    i, ended = _options(req, argv, 0)
    if i >= len(argv):
        raise WrapperError(USAGE, "no host given")
    target = argv[i]
    i += 1
    user, at, host = target.rpartition("@")
    if at:
        req.users.append(user)
    req.host = host
    if not ended:
        i, _ = _options(req, argv, i)
    req.command = argv[i:]
    if req.control is not None:
        raise Answered(SSH_FAILED, control_answer(req))
    if not req.command:
        raise WrapperError(USAGE, "no command: qrsh -inherit runs commands, not login shells")
    if req.subsystem and " ".join(req.command) not in SUBSYSTEMS:
        raise WrapperError(USAGE, "subsystem %r: only %s runs through qrsh -inherit" % (
            " ".join(req.command)[:40], ", ".join(SUBSYSTEMS)))
    return req


def granted_lines(environ):
    """(host, slots) of each line of this parallel job's ``$PE_HOSTFILE``, the master's first."""
    path = environ.get("PE_HOSTFILE")
    if not environ.get("JOB_ID") or not path:
        raise WrapperError(NO_JOB, "not inside a parallel job (JOB_ID and PE_HOSTFILE are not set)")
    try:
        with open(path) as f:
            words = [line.split() for line in f if line.split()]
    except OSError as err:
        raise WrapperError(NO_JOB, "cannot read PE_HOSTFILE %s: %s" % (path, err.strerror))
    return [(w[0], int(w[1]) if len(w) > 1 and w[1].isdigit() else 1) for w in words]


def granted_hosts(environ):
    """The hosts of this parallel job (``$PE_HOSTFILE``, first word of each line)."""
    return [host for host, _ in granted_lines(environ)]


def task_slots(host, environ):
    """How many tasks of the job ``host`` (its name in ``$PE_HOSTFILE``) runs at once: the slots the job
    holds there, less the job script's own on the master host (the first line) if that leaves any."""
    lines = granted_lines(environ)
    slots = sum(n for h, n in lines if h == host)
    return slots - 1 if lines and lines[0][0] == host and slots > 1 else slots


#: bounds of the search for a host named by an alias or an address: the job's hosts resolved to
#: compare addresses (names are compared first, without any lookup), the target's addresses looked up
MAX_RESOLVED = 128
MAX_ADDRESSES = 8


def _unbracket(host):
    return host[1:-1] if host[:1] == "[" and host[-1:] == "]" else host


def _by_name(name, hosts):
    """The host of ``hosts`` called ``name`` (letter case aside), or by the same short name."""
    low = name.lower().rstrip(".")
    for h in hosts:
        if h.lower() == low:
            return h
    if ":" in low or low.replace(".", "").isdigit():        # an address has no short form
        return None
    short = low.split(".")[0]
    return next((h for h in hosts if h.lower().split(".")[0] == short), None)


def _plain(address):
    """An address as text to compare: no zone, IPv4-mapped IPv6 as IPv4."""
    address = address.split("%")[0].lower()
    return address[7:] if address.startswith("::ffff:") and "." in address else address


def _addresses(name):
    """{address: (family, sockaddr)} of what ``name`` resolves to (getaddrinfo), {} if nothing."""
    import socket
    try:
        found = socket.getaddrinfo(name, None, 0, socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError):
        return {}
    return {_plain(sockaddr[0]): (family, sockaddr) for family, _, _, _, sockaddr in found}


def _names_of(address):
    """The names ``address`` resolves back to (its name and aliases), [] if none."""
    import socket
    try:
        name, aliases, _ = socket.gethostbyaddr(address)
    except (OSError, UnicodeError, ValueError):
        return []
    return [name] + aliases


def _loopback(address):
    return address.startswith("127.") or address == "::1"


def _is_here(family, sockaddr):
    """True if the address is this host's: loopback, or one a socket here can be bound to."""
    import socket
    if _loopback(_plain(sockaddr[0])):
        return True
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.bind(sockaddr[:1] + (0,) + tuple(sockaddr[2:]))
        return True
    except OSError:
        return False


def granted_name(host, hosts):
    """The name in ``$PE_HOSTFILE`` of the host that ``host`` names: that name, its short or full
    form, an alias or an address of it (IPv4, IPv6, also in brackets); None if it names none of
    ``hosts``.  Names are compared first (no lookup); then ``host``'s addresses: one of this host's
    (loopback, ``localhost``) stands for this host as with ssh, else the names they resolve back to,
    else the addresses of the job's hosts (the first MAX_RESOLVED of them)."""
    import socket
    name = _unbracket(host)
    found = _by_name(name, hosts)
    if found:
        return found
    addresses = dict(list(_addresses(name).items())[:MAX_ADDRESSES])
    if any(_is_here(*a) for a in addresses.values()):
        return _by_name(socket.gethostname(), hosts)
    for address in addresses:
        for other in _names_of(address):
            found = _by_name(other, hosts)
            if found:
                return found
    for h in hosts[:MAX_RESOLVED]:
        if {a for a in _addresses(h) if not _loopback(a)} & set(addresses):
            return h
    return None


def check(req, environ, me):
    """Refuse another user or a host the job was not granted; ``req.host`` becomes the host's name in
    ``$PE_HOSTFILE`` (what qrsh -inherit compares with the job's hosts)."""
    other = next((user for user in req.users if user != me), None)
    if other is not None:
        raise WrapperError(USAGE, "user %r: the tasks of this job run as %s" % (other[:40], me))
    if not req.host or req.host.startswith("-") or any(c.isspace() or c < " " for c in req.host):
        raise WrapperError(BAD_HOST, "not a host name: %r" % req.host[:60])
    hosts = granted_hosts(environ)
    name = granted_name(req.host, hosts)
    if name is None:
        raise WrapperError(BAD_HOST, "%s is not a host of this job (%s)" % (req.host[:100], ", ".join(hosts)[:300]))
    req.host = name


def qrsh_program(environ):
    """qrsh from PATH, else $SGE_ROOT/bin/<arch>/qrsh."""
    from . import locate
    for directory in environ.get("PATH", "").split(":"):
        path = os.path.join(directory, "qrsh")
        if directory and os.path.isabs(path) and locate.is_program(path):
            return path
    root = environ.get("SGE_ROOT")
    if root:
        for arc in locate.arch_guesses():
            path = os.path.join(root, "bin", arc, "qrsh")
            if locate.is_program(path):
                return path
    raise WrapperError(NO_CLIENT, "qrsh not found in PATH nor in $SGE_ROOT/bin")


class Plan:
    """What qrsh_ssh runs: qrsh's argv; for a subsystem or --linger the marker the remote output starts
    after (--linger: and ends with, and whether the tool's standard input goes to the task); the host
    (its name in ``$PE_HOSTFILE``)."""
    __slots__ = ("command", "verbose", "marker", "linger", "nostdin", "host")

    def __init__(self, command, verbose=False, marker=None, linger=False, nostdin=False, host=None):
        self.command, self.verbose, self.marker = command, verbose, marker
        self.linger, self.nostdin, self.host = linger, nostdin, host


def subsystem_words(req, environ):
    """qrsh -inherit's words after its options for ``req``'s subsystem, and the marker."""
    from .methods import SFTP_SERVER, SFTP_SERVER_VARIABLE
    server = environ.get(SFTP_SERVER_VARIABLE) or SFTP_SERVER
    if not server.startswith("/") or any(c < " " or c in "\x7f\xff" for c in server):
        raise WrapperError(USAGE, "%s=%r is not an absolute path" % (SFTP_SERVER_VARIABLE, server[:80]))
    marker = "qrsh_ssh-%s-%s" % (req.command[0], os.urandom(12).hex())
    return ["-noshell", req.host, "/bin/sh", "-c", SUBSYSTEM_SCRIPT, "sh", marker, server], marker


def plan(argv, environ, me):
    """The Plan for an ssh command line (Answered: what ssh itself would say)."""
    req = parse(argv)
    check(req, environ, me)
    command = [qrsh_program(environ), "-inherit"] + (["-nostdin"] if req.nostdin else [])
    if req.subsystem:
        words, marker = subsystem_words(req, environ)
        return Plan(command + words, req.verbose, marker, host=req.host)
    if req.linger or environ.get(LINGER_VARIABLE, "").lower() in LINGER_YES:
        marker = "qrsh_ssh-linger-%s" % os.urandom(12).hex()
        words = ["-noshell", req.host, "/bin/sh", "-c", LINGER_SCRIPT, "sh", marker, " ".join(req.command)]
        return Plan(command + words, req.verbose, marker, linger=True, nostdin=req.nostdin, host=req.host)
    return Plan(command + [req.host, " ".join(req.command)], req.verbose, host=req.host)


def take_slot(host, environ):
    """Hold one of ``host``'s slot locks (SLOT_DIR): wait until one is free; its descriptor (close-on-exec:
    the lock lasts while this process, or a child it hands the descriptor to, keeps it open), or None where
    nothing can be counted (no $TMPDIR, an unwritable one, no slot of the job on ``host``)."""
    import fcntl
    import random
    import time
    top = environ.get("TMPDIR")
    count = task_slots(host, environ)
    if not top or not os.path.isabs(top) or count < 1:
        return None
    directory = os.path.join(top, SLOT_DIR)
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    name = host.replace("/", "_")
    first = os.getpid() % count
    while True:
        for k in range(count):
            path = os.path.join(directory, "%s.%d" % (name, (first + k) % count))
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            except OSError:
                return None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                os.close(fd)
        time.sleep(SLOT_POLL * (0.5 + random.random()))


class _Judge:
    """qrsh's standard error on its way to ``fd``: held back only while it may still be the execd's
    refusal of the task (REFUSED_TASK, one line and nothing else), passed on as it comes otherwise."""

    def __init__(self, fd):
        self.fd, self.held, self.judging = fd, b"", True

    def feed(self, chunk):
        if self.judging:
            self.held += chunk
            head = self.held[:len(REFUSED_PREFIX)]
            line = self.held.split(b"\n", 1)
            if REFUSED_PREFIX.startswith(head) and len(self.held) <= 512 and (
                    len(line) == 1 or (line[1] == b"" and REFUSED_TASK.match(self.held))):
                return
            self.judging, chunk, self.held = False, self.held, b""
        try:
            _write_all(self.fd, chunk)
        except BrokenPipeError:
            pass

    def refused(self):
        """True if all qrsh said is the refusal (then nothing of it was passed on)."""
        return bool(REFUSED_TASK.match(self.held))

    def flush(self):
        self.judging, held, self.held = False, self.held, b""
        self.feed(held)


def _passing_on(pid):
    """Pass SIGINT, SIGTERM, SIGHUP and SIGQUIT on to ``pid`` from now on (not those the tool ignores:
    sftp starts its ssh with SIGINT ignored)."""
    import signal

    def pass_on(signum, frame):
        try:
            os.kill(pid, signum)
        except OSError:             # already gone
            pass

    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        if signal.getsignal(number) != signal.SIG_IGN:
            signal.signal(number, pass_on)
    return pass_on


def _status(status):
    """The exit status of a child's wait status; if it died of a signal, this process dies of it too."""
    import signal
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        return 128 - code
    return code


def attempt(command):
    """Run qrsh ``command`` once, its standard input and output the tool's, its standard error passed
    on through a pipe (judged: _Judge), signals passed on; (exit status, refused: True if the execd
    refused the task and nothing else happened)."""
    import select
    import signal
    err_r, err_w = os.pipe()
    pid = _spawn(command, ((err_w, 2),), (err_r, err_w))
    os.close(err_w)
    pass_on = _passing_on(pid)
    judge, status, reading = _Judge(2), None, True
    try:
        while reading:
            # qrsh's children may keep its standard error open after it exits (an ssh master): once qrsh
            # is gone, what is there is read and no more is waited for
            if select.select([err_r], [], [], 0.2)[0]:
                chunk = os.read(err_r, 65536)
                if chunk:
                    judge.feed(chunk)
                    continue
                reading = False
            if status is None:
                done, st = os.waitpid(pid, os.WNOHANG)
                if done:
                    status = st
            elif not select.select([err_r], [], [], 0)[0]:
                reading = False
    except BaseException:
        pass_on(signal.SIGTERM, None)
        raise
    os.close(err_r)
    if status is None:
        _, status = os.waitpid(pid, 0)
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 1 and judge.refused():
        return 1, True
    judge.flush()
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        if signal.getsignal(number) == pass_on:
            signal.signal(number, signal.SIG_DFL)
    return _status(status), False


def run_task(command, host, environ):
    """``attempt`` qrsh ``command`` until the execd takes the task, at most RETRY_SECONDS; then one line."""
    import time
    deadline = time.monotonic() + RETRY_SECONDS
    pause = 0.25
    while True:
        code, refused = attempt(command)
        if not refused:
            return code
        if time.monotonic() + pause > deadline:
            raise WrapperError(SSH_FAILED, "%s took no task of job %s for %d s: all the slots the job holds there "
                                           "are in use (%d for tasks, $PE_HOSTFILE)" % (
                                               host, environ.get("JOB_ID", "?"), RETRY_SECONDS,
                                               task_slots(host, environ)))
        time.sleep(pause)
        pause = min(pause * 2, 2.0)


def _write_all(fd, data):
    """Write all of ``data``, waiting while ``fd`` is full: the tool's end of the pipe may be
    non-blocking (OpenSSH's scp and sftp hand their ssh such a pipe; measured: EAGAIN)."""
    import select
    while data:
        try:
            data = data[os.write(fd, data):]
        except BlockingIOError:
            select.select([], [fd], [])


def relay(command, marker):
    """Run qrsh ``command`` with its standard output passing through this process: what comes before
    the line ``marker`` (what a login shell printed) is dropped, the rest copied as it comes; SIGINT,
    SIGTERM, SIGHUP and SIGQUIT are passed on.  qrsh's exit status (its signal, re-raised here)."""
    import signal
    wanted = marker.encode() + b"\n"
    read_end, write_end = os.pipe()
    pid = _spawn(command, ((write_end, 1),), (read_end, write_end))
    os.close(write_end)
    pass_on = _passing_on(pid)
    before, started, reading = b"", False, True
    try:
        while reading:
            chunk = os.read(read_end, 262144)
            if not chunk:
                break
            if not started:
                before += chunk
                at = before.find(wanted)
                if at < 0:
                    before = before[-MAX_BEFORE_MARKER:]
                    continue
                started, chunk, before = True, before[at + len(wanted):], b""
            try:
                _write_all(1, chunk)
            except BrokenPipeError:         # the tool is gone: qrsh gets EPIPE (or SIGPIPE) in turn
                reading = False
    except BaseException:
        pass_on(signal.SIGTERM, None)       # never leave qrsh running behind a relay that gave up
        raise
    os.close(read_end)
    if before:                          # no marker came: what did come may say why
        os.write(2, before)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        return 128 - code
    return code


def _spawn(command, onto, others, own_group=False):
    """Start qrsh ``command`` with each ``{fd: target}`` of ``onto`` dup'ed to its target and ``others``
    closed; with ``own_group`` in a process group of its own (it may outlive this process: the tool's
    Ctrl-C and kills of its process group then reach it only through this one); its pid."""
    import signal
    pid = os.fork()
    if pid == 0:
        try:
            if own_group:
                os.setpgid(0, 0)
            for fd, to in onto:
                os.dup2(fd, to)
            for fd in others:
                os.close(fd)
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            os.execv(command[0], command)
        except OSError as err:
            os.write(2, ("%s: error: cannot run %s: %s\n" % (NAME, command[0], err.strerror or err)).encode())
        finally:
            os._exit(EXEC_FAILED)
    return pid


class _Lines:
    """One stream of the lingering task (its standard output or error): passes bytes on to ``fd``
    and stops at "MARKER STATUS W\n" (the end line), keeping back what may be the start of it."""

    def __init__(self, fd, marker, started):
        self.fd, self.end, self.started = fd, marker.encode() + b" ", started
        self.start = marker.encode() + b"\n"
        self.held, self.found = b"", None

    def feed(self, chunk):
        """Pass ``chunk`` on; (STATUS, W) once the end line has come, else None."""
        if self.found:          # what qrsh itself says after it
            self.flush(chunk)
            return None
        self.held += chunk
        if not self.started:
            at = self.held.find(self.start)
            if at < 0:
                self.held = self.held[-MAX_BEFORE_MARKER:]
                return None
            self.started, self.held = True, self.held[at + len(self.start):]
        at = self.held.find(self.end)
        if at >= 0:
            line = self.held[at + len(self.end):]
            if b"\n" in line:
                words = line.split(b"\n", 1)[0].split()
                self.flush(self.held[:at])
                self.held, self.found = b"", (int(words[0]), words[1:] == [b"1"])
                return self.found
            self.flush(self.held[:at])
            self.held = self.held[at:]
            return None
        keep = len(self.end) - 1
        self.flush(self.held[:-keep] if len(self.held) > keep else b"")
        self.held = self.held[-keep:] if len(self.held) > keep else self.held
        return None

    def flush(self, data):
        try:
            _write_all(self.fd, data)
        except BrokenPipeError:     # the tool stopped reading: what is left goes nowhere
            pass


def _drain(fds):
    """Read ``fds`` to their end, keeping nothing."""
    import select
    fds = list(fds)
    while fds:
        for fd in select.select(fds, [], [])[0]:
            if not os.read(fd, 262144):
                os.close(fd)
                fds.remove(fd)


def _hand_off(fds, slot=None):
    """Leave the task's streams ``fds`` to a child of its own session that reads them to their end (the
    lingering qrsh never blocks on a full pipe), and close the tool's standard input, output and error
    there: the tool reading this program's output to its end is not held by the task.  The child keeps
    the host's ``slot`` lock (take_slot) until then: a lingering task holds its slot."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            _drain(fds)
        finally:
            os._exit(0)
    for fd in fds:
        os.close(fd)


def linger(command, marker, nostdin, slot=None):
    """Run qrsh ``command`` (the LINGER_SCRIPT task) and return the remote command's exit status as soon
    as its end line comes, leaving the task running while what the command started runs.

    qrsh's standard input, output and error pass through pipes: the tool's input goes to the task (unless
    ``nostdin``), its output comes back without what the login shell printed before the marker, and at
    the end line on both output and error (error: at most LINGER_STDERR_WAIT seconds later) this
    program returns STATUS; if the task stays (W=1), a child of its own session keeps reading what qrsh
    still says, and qrsh (in a process group of its own) runs on, still a task of the job.  SIGINT,
    SIGTERM, SIGHUP and SIGQUIT are passed on to qrsh until then.  If qrsh ends without the end line,
    its exit status, as ``relay``."""
    import select
    import signal
    import time
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    in_r, in_w = os.pipe()
    pid = _spawn(command, ((in_r, 0), (out_w, 1), (err_w, 2)), (in_r, in_w, out_r, out_w, err_r, err_w),
                 own_group=True)
    for fd in (in_r, out_w, err_w):
        os.close(fd)
    pass_on = _passing_on(pid)
    streams = {out_r: _Lines(1, marker, False), err_r: _Lines(2, marker, True)}
    reading = set(streams)
    stdin_open = not nostdin
    if stdin_open:
        try:
            os.fstat(0)
        except OSError:
            stdin_open = False
    if not stdin_open:
        os.close(in_w)
    else:
        os.set_blocking(in_w, False)
    deadline, pending = None, b""           # pending: the tool's input the task has not taken yet
    try:
        while reading:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, writable, _ = select.select(list(reading) + ([0] if stdin_open and not pending else []),
                                               [in_w] if stdin_open and pending else [], [], wait)
            if not ready and not writable and deadline is not None:
                break
            if writable:
                try:
                    pending = pending[os.write(in_w, pending):]
                except BlockingIOError:
                    pass
                except OSError:             # BrokenPipe: the task takes no more
                    stdin_open, pending = False, b""
                    os.close(in_w)
            if 0 in ready:
                try:
                    pending = os.read(0, 65536)
                except BlockingIOError:     # the tool's end may be non-blocking
                    pending = b""
                    continue
                except OSError:
                    pending = b""
                if not pending:
                    stdin_open = False
                    os.close(in_w)
            for fd in ready:
                if fd == 0:
                    continue
                chunk = os.read(fd, 262144)
                if chunk:
                    streams[fd].feed(chunk)
                else:
                    reading.discard(fd)
            found = streams[out_r].found
            if found is not None and found[1]:              # the task stays
                if streams[err_r].found or err_r not in reading:
                    break
                if deadline is None:
                    deadline = time.monotonic() + LINGER_STDERR_WAIT
    except BaseException:
        pass_on(signal.SIGTERM, None)
        raise
    if stdin_open:
        os.close(in_w)
    found = streams[out_r].found
    if found is not None and found[1]:              # let go of the tool
        streams[err_r].flush(streams[err_r].held if streams[err_r].found is None else b"")
        _hand_off([out_r, err_r], slot)
        return found[0]
    for fd in streams:
        os.close(fd)
    if found is None:
        if not streams[out_r].started and streams[out_r].held:    # no marker came: what did may say why
            os.write(2, streams[out_r].held)
        else:
            streams[out_r].flush(streams[out_r].held)
        streams[err_r].flush(streams[err_r].held)
    _, status = os.waitpid(pid, 0)
    if found is not None:
        return found[0]
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        return 128 - code
    return code


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--help"]:
        sys.stdout.write(usage(os.path.abspath(sys.argv[0]) if os.path.isabs(sys.argv[0]) else None))
        return

    def body():
        me = pwd.getpwuid(os.getuid()).pw_name
        try:
            todo = plan(argv, os.environ, me)
        except Answered as answer:          # ssh's own words: no "qrsh_ssh: error:" before them
            sys.stderr.write("%s\r\n" % answer)
            return answer.code
        if todo.verbose:
            sys.stderr.write("%s: %s\n" % (NAME, " ".join(todo.command)))
        import signal
        if signal.getsignal(signal.SIGINT) != signal.SIG_IGN:        # while waiting for a slot: ends here
            signal.signal(signal.SIGINT, signal.SIG_DFL)
        slot = take_slot(todo.host, os.environ)
        if todo.linger:
            return linger(todo.command, todo.marker, todo.nostdin, slot)
        if todo.marker:
            return relay(todo.command, todo.marker)
        return run_task(todo.command, todo.host, os.environ)

    run_cli(NAME, body)
