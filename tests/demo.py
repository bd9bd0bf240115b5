"""make demo: the wrappers doing their job on this machine's one-host Grid Engine.

``make demo`` has brought the cluster up (tests/cluster/up) and installed the
wrappers into Debian's SGE_ROOT (/var/lib/gridengine).  This script then does
what an administrator does, with the installed ``sgewrap``, and what a user
does, as the unprivileged test user, printing each command and its output:

1. ``sgewrap config ssh --tight`` (the six sge_conf entries) and ``--apply``;
2. restarts execd so the exec side uses them now (an administrator just waits
   15-90 s) and proves it with a probe job;
3. real ``qrsh``: a command, the job's group id in the remote session (tight
   integration), stdin, ``-noshell``, an exit status, a parallel job's
   ``qrsh -inherit`` tasks;
4. ``sgewrap check``.

It leaves the cluster configured for ssh and prints the command that puts the
previous configuration back.
"""
import os
import re
import shlex
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import sge  # noqa: E402

WRAPPERS = os.path.join(sge.SGE_ROOT, "util", "resources", "wrappers")
SGEWRAP = os.path.join(WRAPPERS, "sgewrap")


def say(text):
    print("\n\033[1m== %s\033[0m" % text, flush=True)


def show(argv, as_user=False, **kwargs):
    """Run argv (as the test user if asked), print it and its output; the CompletedProcess."""
    prompt = "%s$ " % sge.TEST_USER if as_user else "# "
    shown = kwargs.pop("shown", None) or " ".join(shlex.quote(w) for w in argv)
    print(prompt + shown, flush=True)
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    if as_user:
        proc = sge.user_run(argv, capture_output=True, text=True, timeout=300, **kwargs)
    else:
        proc = subprocess.run(argv, env=dict(os.environ, **sge.ENV), capture_output=True, text=True, timeout=300,
                              **kwargs)
    sys.stdout.write(proc.stdout + proc.stderr)
    if proc.returncode:
        print("(exit status %d)" % proc.returncode)
    return proc


def main():
    if os.geteuid() != 0:
        sys.exit("make demo: run as root (it configures Grid Engine)")
    say("the administrator: what sgewrap would set, then set it (saving the old configuration)")
    show([SGEWRAP, "config", "ssh", "--tight", "--no-x11"])
    applied = show([SGEWRAP, "config", "ssh", "--tight", "--no-x11", "--apply"])
    if applied.returncode:
        sys.exit("make demo: sgewrap config --apply failed")
    backup = re.search(r"--restore (\S+)", applied.stdout)

    say("execd picks up *_daemon changes after 15-90 s; the demo restarts it and proves the change")
    from sgewrap.admin import sgeconf
    entries = sgeconf.entries("ssh", WRAPPERS, tight=True, x11=False)
    sge.restart_execd()
    print("exec side uses rsh_daemon %s after %.1f s" % (entries["rsh_daemon"], sge.probe(entries)))

    say("a user: qrsh through ssh_wrapper to the job sshd (sge-sshd -i), whose own PAM service ties the session "
        "to its job (node_access session, pam_sge-qrsh-setup); PIDs here are above 150000")
    qrsh = ["/usr/bin/qrsh", "-now", "yes", "-q", sge.QUEUE]
    show(qrsh + ["hostname"], as_user=True)
    show(qrsh + ['echo "pid $$  groups: $(id -G)   the job\'s addgrpid: $(cat $SGE_JOB_SPOOL_DIR/addgrpid)"'],
         as_user=True)
    show(qrsh + ["tr a-z A-Z"], as_user=True, input="stdin reaches the remote command\n", stdin=None,
         shown="echo 'stdin reaches the remote command' | qrsh tr a-z A-Z")
    show(qrsh + ["-noshell", "/usr/bin/printf", "[%s]\\n", "a b", "c"], as_user=True)
    show(qrsh + ["exit 7"], as_user=True)

    say("a parallel job: its master starts 4 qrsh -inherit tasks at once, each in its own group")
    with tempfile.TemporaryDirectory(prefix="sgewrap-demo.") as tmp:
        os.chmod(tmp, 0o755)
        master = os.path.join(tmp, "master.sh")
        with open(master, "w") as f:
            f.write("#!/bin/sh\nfor i in 1 2 3 4; do\n  /usr/bin/qrsh -inherit -nostdin %s "
                    "'echo task $(hostname) groups: $(id -G)' &\ndone\nwait\n" % sge.HOST)
        os.chmod(master, 0o755)
        show(qrsh + ["-pe", sge.PE, "5", master], as_user=True)

    say("the administrator: does every host pair fit together?")
    show([SGEWRAP, "check"])
    say("done: the cluster runs qrsh through ssh with tight integration")
    if backup:
        print("put the previous configuration back with:\n  %s config --restore %s" % (SGEWRAP, backup.group(1)))


if __name__ == "__main__":
    main()
