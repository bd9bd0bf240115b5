"""``sgewrap job-ssh``: print, write or take out the ssh client drop-in that makes ``ssh JOB.job`` work.

The drop-in goes to ``/etc/ssh/ssh_config.d`` of each submit host (Debian 12 and 13 include that
directory before their own defaults); the execution hosts need ``sgewrap node-access --adopt
--apply`` (the hook that joins each recorded connection to its task).  ``--user-config`` prints the
block for a laptop's ``~/.ssh/config``: the job lookup runs on a login node (``--via``).
"""
import os

from plumbum import cli

from .common import UNREADABLE, AdminError, Command, default_wrappers

DROP_IN = "/etc/ssh/ssh_config.d/sgewrap-job-ssh.conf"
HEADER = "# sgewrap job-ssh: ssh to a running Grid Engine job by its number (man qssh)"
#: the ssh_config Host pattern of the job names (sgewrap.jobssh.parse_name says which are valid)
PATTERN = "*.job"


def block(proxy, known_hosts):
    """The ssh_config lines for the job names: ``proxy`` and ``known_hosts`` run qssh."""
    return "\n".join([
        HEADER,
        "Host %s" % PATTERN,
        "    ProxyCommand %s" % proxy,
        "    KnownHostsCommand %s" % known_hosts,
        "    UserKnownHostsFile none",
        "    GlobalKnownHostsFile none",
        "    StrictHostKeyChecking yes",
        "    CheckHostIP no",
        "    ControlPath ~/.ssh/sgewrap-%r@%n",
        ""])


def qssh_words(wrappers, sge_root):
    words = os.path.join(wrappers, "qssh")
    return words + (" --sge-root %s" % sge_root if sge_root else "")


def drop_in(wrappers, sge_root):
    qssh = qssh_words(wrappers, sge_root)
    return block("%s --proxy %%n" % qssh, "%s --known-hosts %%n %%H" % qssh)


def user_config(wrappers, sge_root, via):
    qssh = qssh_words(wrappers, sge_root)
    ssh = "ssh -T -o BatchMode=yes %s" % via
    return block("%s %s --proxy %%n" % (ssh, qssh), "%s %s --known-hosts %%n %%H" % (ssh, qssh))


def is_ours(path):
    try:
        with open(path) as f:
            return f.readline().rstrip("\n") == HEADER
    except OSError:
        return False


def write(path, text):
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    tmp = os.path.join(directory, ".sgewrap-job-ssh.tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


class JobSsh(Command, cli.Application):
    """ssh to a running job by its number (ssh JOB.job, JOB.TASK.job, HOST.JOB.job; qssh)

    Prints (or --apply's: /etc/ssh/ssh_config.d/sgewrap-job-ssh.conf on this submit host; --restore
    takes it out) the ssh client configuration that makes ssh, scp, sftp, rsync and VS Code reach a
    job by its name through qssh; every execution host needs node_access adopt (sgewrap node-access
    --adopt --apply).  --user-config prints the block for a laptop's ~/.ssh/config, whose job lookup
    runs on the login node --via names.
    """

    apply = cli.Flag("--apply", help="write the drop-in on this host", excludes=["--restore", "--user-config"])
    restore = cli.Flag("--restore", help="take the drop-in out of this host", excludes=["--user-config"])
    user_config = cli.Flag("--user-config", help="print the block for a laptop's ~/.ssh/config (with --via)")
    via = cli.SwitchAttr("--via", str, argname="[USER@]LOGIN", default="LOGIN",
                         help="with --user-config: the login node that runs qssh")
    wrappers = cli.SwitchAttr("--wrappers", str, argname="DIR",
                              help="where the wrappers are installed (default: next to this sgewrap, "
                                   "else $SGE_ROOT/util/resources/wrappers)")
    file = cli.SwitchAttr("--file", str, argname="PATH", default=DROP_IN, help="the drop-in")

    def main(self):
        from .fronts import sge_root_here
        wrappers = os.path.abspath(self.wrappers) if self.wrappers else default_wrappers()
        try:
            sge_root = sge_root_here()
        except AdminError:
            sge_root = os.environ.get("SGE_ROOT", "")
        if self.user_config:
            print(user_config(wrappers, sge_root, self.via), end="")
            return 0
        if self.restore:
            if not os.path.lexists(self.file):
                print("no %s: nothing to take out" % self.file)
                return 0
            if not is_ours(self.file):
                raise AdminError("%s was not written by sgewrap job-ssh: left alone" % self.file)
            os.unlink(self.file)
            print("removed %s" % self.file)
            return 0
        text = drop_in(wrappers, sge_root)
        if not self.apply:
            print("# %s on every submit host (sgewrap job-ssh --apply):" % self.file)
            print(text, end="")
            return 0
        if not os.access(os.path.join(wrappers, "qssh"), os.X_OK):
            raise AdminError("%s/qssh is missing: install the wrappers first" % wrappers, UNREADABLE)
        if os.path.lexists(self.file) and not is_ours(self.file):
            raise AdminError("%s exists and was not written by sgewrap job-ssh: left alone" % self.file)
        write(self.file, text)
        print("wrote %s (this host; every submit host needs it, every execution host node_access adopt)"
              % self.file)
        print("undo with: sgewrap job-ssh --restore")
        return 0
