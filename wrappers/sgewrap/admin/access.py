"""``sgewrap node-access``: print, apply and undo node_access as the prolog/epilog of queues.

With ``--apply`` each queue's configuration (``qconf -sq Q``) is saved to a
file first, then its prolog and epilog become ``root@WRAPPERS/node_access
prolog|epilog`` (``qconf -mattr``), and the account rules go into this
host's sshd PAM file.  ``--restore FILE`` gives a queue its saved
configuration back (``qconf -Mq``) and, when no queue runs node_access any
more, takes the rules out of this host's PAM file again.
"""
import os
import tempfile

from plumbum import cli

from . import common, pam, sgeconf
from .common import UNREADABLE, AdminError, Command, cache_gid_range, default_wrappers, run
from .config import DEFAULT_BACKUP_DIR, save_backup

PROGRAM = "node_access"


def hook(wrappers, which):
    return "root@%s %s" % (os.path.join(wrappers, PROGRAM), which)


def runs_node_access(value):
    """True if a prolog/epilog value runs node_access: itself, or as the script of an interpreter named
    first (``root@/usr/bin/python3 .../node_access prolog``: check flags that one)."""
    words = common.entry_words(value) if value else []
    if words and common.is_interpreter(words[0]):
        words = [w for w in words[1:] if not w.startswith("-")]
    return bool(words) and os.path.basename(words[0]) == PROGRAM


def queue_values(text):
    """{attribute: value} of ``qconf -sq`` output (continued lines joined)."""
    return sgeconf.parse(text).as_dict()


def queues():
    rc, out, err = run(["qconf", "-sql"], code=UNREADABLE, retcode=None)
    if rc != 0:
        if "no cqueue" in (out + err).lower():
            return []
        raise AdminError("'qconf -sql' failed with exit status %d: %s" % (rc, (err or out).strip()), UNREADABLE)
    return [q for q in out.split() if q]


def show_queue(name):
    return run(["qconf", "-sq", name], code=UNREADABLE)[1]


QUEUE_FILE = "queue."   #: a --from directory's saved ``qconf -sq QUEUE``: queue.QUEUE


def read_queue_dir(directory):
    """{queue: {attribute: value}} from the queue.QUEUE files of a --from directory."""
    found = {}
    for name in sorted(os.listdir(directory)):
        if name.startswith(QUEUE_FILE):
            with open(os.path.join(directory, name)) as f:
                found[name[len(QUEUE_FILE):]] = queue_values(f.read())
    return found


class NodeAccess(Command, cli.Application):
    """ssh to execution hosts only for users with a job there (node_access as prolog/epilog)

    Prints (or --apply's, or --restore's) what makes the queues' prolog and
    epilog maintain the list of users with a running job on each host, and
    the account rules for /etc/pam.d/sshd that make sshd consult it (users
    below uid 1000 always pass).  Every execution host of those queues needs
    the rules.  --apply replaces a prolog/epilog that starts node_access
    through an interpreter (python3 .../node_access: not isolated), and then
    says as an error (exit 1) each daemon, prolog or epilog Grid Engine runs
    as root that starts an interpreter without isolation.
    """

    queue = cli.SwitchAttr("--queue", str, argname="QUEUE", list=True,
                           help="a queue whose prolog/epilog become node_access (repeatable)")
    wrappers = cli.SwitchAttr("--wrappers", str, argname="DIR",
                              help="where the wrappers are installed (default: next to this sgewrap, "
                                   "else $SGE_ROOT/util/resources/wrappers)")
    apply = cli.Flag("--apply", help="change the queues through qconf (saving each first) and this host's "
                                     "PAM file", excludes=["--restore"])
    replace = cli.Flag("--replace", requires=["--apply"],
                       help="with --apply: replace a queue's prolog/epilog other than NONE")
    restore = cli.SwitchAttr("--restore", str, argname="FILE", help="give a queue the configuration --apply saved")
    backup_dir = cli.SwitchAttr("--backup-dir", str, argname="DIR", default=DEFAULT_BACKUP_DIR,
                                help="where --apply saves each queue's previous configuration")
    pam_file = cli.SwitchAttr("--pam-file", str, argname="PATH", default=pam.PAM_FILE,
                              help="sshd's PAM file on this host")
    adopt = cli.Flag("--adopt", help="instead of the prolog/epilog list: node_access adopt in this host's sshd "
                                     "(an ssh login joins the user's job here, or is refused); no queue needed")
    adopt_option = cli.SwitchAttr("--adopt-option", str, argname="OPT", list=True,
                                  help="with --adopt: an option of node_access adopt, e.g. --warn-only, "
                                       "--action-no-jobs=allow (repeatable)")
    remove_adopt = cli.Flag("--remove-adopt", help="take node_access adopt out of this host's sshd PAM file")
    why = cli.SwitchAttr("--why", str, argname="USER",
                         help="say what node_access adopt would do with USER's ssh login on this host now, and why")

    def main(self):
        if self.why:
            return why(self.why, self.adopt_option or [])
        if self.remove_adopt:
            changed = pam.remove_adopt(self.pam_file)
            print("%s %s" % ("removed node_access adopt from" if changed else "no node_access adopt in",
                             self.pam_file))
            return 0
        if self.adopt:
            return adopt(self)
        if self.restore:
            if self.queue:
                raise AdminError("--restore FILE takes no --queue (the file names its queue)", UNREADABLE)
            return restore(self.restore, self.pam_file)
        if not self.queue:
            raise AdminError("give at least one --queue QUEUE (or --restore FILE)", UNREADABLE)
        wrappers = os.path.abspath(self.wrappers) if self.wrappers else default_wrappers()
        if not self.apply:
            for q in self.queue:
                for which in ("prolog", "epilog"):
                    print("qconf -mattr queue %s '%s' %s" % (which, hook(wrappers, which), q))
            print("\n# and in %s of every execution host of %s, before its first account rule:"
                  % (pam.PAM_FILE, ", ".join(self.queue)))
            print("\n".join(pam.node_access_lines()[1:]))
            return 0
        known = queues()
        missing = [q for q in self.queue if q not in known]
        if missing:
            raise AdminError("no such queue: %s" % ", ".join(missing), UNREADABLE)
        for q in self.queue:
            apply_queue(q, wrappers, self.backup_dir, self.replace)
        print(cache_gid_range())
        try:
            if pam.add_node_access(self.pam_file):
                print("added the node-access account rules to %s (this host; every execution host needs them)"
                      % self.pam_file)
            else:
                print("%s already has the node-access account rules" % self.pam_file)
        except OSError as err:
            raise AdminError("cannot add the account rules to %s: %s" % (self.pam_file, err.strerror or err))
        print("the list is %s; 'node_access repair' rebuilds it, 'node_access list' shows it"
              % pam.NODE_ACCESS_USERS)
        return root_interpreter_errors()


def root_interpreter_errors():
    """Say (error: ...) each daemon, prolog or epilog Grid Engine runs as root that starts an interpreter
    without isolation, in any configuration or queue; 1 if there is one, else 0."""
    try:
        glob, hosts = common.read_live(code=common.FAILED)
        found = {q: queue_values(show_queue(q)) for q in queues()}
    except AdminError as err:
        print("warning: the root-run entries were not checked for interpreters: %s" % err)
        return 0
    errors = common.interpreter_errors(common.root_run_entries(glob, hosts, found))
    for line in errors:
        print("error: " + line)
    return 1 if errors else 0


def why(user, options):
    from ..rootside import adopt as hook, jobspool, nodeaccess
    from .fronts import sge_root_here
    values, _ = nodeaccess.parse_args(list(options) + ["adopt"])
    trust = jobspool.Trust(sge_root_here(), values.admin_user)
    print("\n".join(hook.explain(user, values, trust)))
    return 0


def restore_pam(path, text, pam_file):
    """Put back the PAM file --adopt --apply saved, byte for byte (its name says which file)."""
    if os.path.basename(path).split(".")[1] != os.path.basename(pam_file):
        raise AdminError("%s was saved from another PAM file than %s" % (path, pam_file), UNREADABLE)
    pam._replace(pam_file, text)
    with open(pam_file) as f:
        if f.read() != text:
            raise AdminError("after restoring, %s differs from %s" % (pam_file, path))
    print("restored %s from %s (byte for byte)" % (pam_file, path))
    return 0


def adopt(app):
    """Print or --apply node_access adopt in this host's sshd PAM file (saved first)."""
    from ..rootside.nodeaccess import TABLE
    from .common import require_isolated_hook
    wrappers = os.path.abspath(app.wrappers) if app.wrappers else default_wrappers()
    options = list(app.adopt_option or [])
    for option in options:
        if not option.startswith("--") or option.split("=")[0] not in TABLE.names("adopt") or option == "--help":
            raise AdminError("not an option of node_access adopt: %r" % option, UNREADABLE)
    try:
        lines = pam.adopt_lines(wrappers, options)
    except ValueError as err:
        raise AdminError(str(err), UNREADABLE)
    if not app.apply:
        print("# at the top of %s on every execution host:" % pam.PAM_FILE)
        print("\n".join(lines))
        return 0
    require_isolated_hook(wrappers)
    with open(app.pam_file) as f:
        backup = save_backup(app.backup_dir, "pam." + os.path.basename(app.pam_file), f.read())
    from . import pammodule
    try:
        module, installed = pammodule.ensure_installed(wrappers)
        if installed:
            print("installed %s (from %s)" % (module, wrappers))
        changed = pam.add_adopt(wrappers, options, app.pam_file)
    except (OSError, ValueError) as err:
        raise AdminError("cannot change %s: %s" % (app.pam_file, err.strerror or err))
    print("%s %s (this host; every execution host needs it); the previous one is %s"
          % ("added node_access adopt to" if changed else "node_access adopt already in", app.pam_file, backup))
    print(cache_gid_range())
    print("undo with: sgewrap node-access --restore %s (or --remove-adopt)" % backup)
    return 0


def apply_queue(name, wrappers, backup_dir, replace):
    text = show_queue(name)
    values = queue_values(text)
    wanted = {which: hook(wrappers, which) for which in ("prolog", "epilog")}
    if all(values.get(w) == v for w, v in wanted.items()):
        print("queue %s: prolog and epilog already run node_access; nothing changed" % name)
        return
    foreign = {w: values.get(w) for w in wanted
               if values.get(w, "NONE") not in ("NONE", wanted[w]) and not runs_node_access(values.get(w))}
    if foreign and not replace:
        raise AdminError("queue %s already runs %s: call node_access from it, or give --replace" % (
            name, " and ".join("%s %r" % item for item in foreign.items())))
    for line in common.interpreter_errors([("queue %s: %s" % (name, w), values.get(w)) for w in wanted
                                           if (values.get(w) or "").startswith("root@")]):
        print("replacing, as it is unsafe: " + line)
    backup = save_backup(backup_dir, "queue." + name, text)
    print("saved queue %s to %s" % (name, backup))
    for which, value in wanted.items():
        run(["qconf", "-mattr", "queue", which, value, name])
    now = queue_values(show_queue(name))
    wrong = [w for w in wanted if now.get(w) != wanted[w]]
    if wrong:
        raise AdminError("qconf accepted the change but queue %s shows %s; undo with: sgewrap node-access "
                         "--restore %s" % (name, ", ".join("%s=%r" % (w, now.get(w)) for w in wrong), backup))
    for which in wanted:
        print("queue %s %-7s %s" % (name, which, wanted[which]))
    print("undo with: sgewrap node-access --restore %s" % backup)


def restore(path, pam_file):
    try:
        with open(path) as f:
            text = f.read()
    except OSError as err:
        raise AdminError("cannot read %s: %s" % (path, err.strerror or err), UNREADABLE)
    if os.path.basename(path).startswith("pam."):      # what --adopt --apply saved
        return restore_pam(path, text, pam_file)
    name = queue_values(text).get("qname")
    if not name or not text.startswith("qname"):
        raise AdminError("%s does not start with 'qname': not a queue sgewrap saved" % path, UNREADABLE)
    if name not in queues():
        raise AdminError("queue %s does not exist (any more)" % name)
    with tempfile.TemporaryDirectory(prefix="sgewrap-queue.") as tmp:
        copy = os.path.join(tmp, name)
        with open(copy, "w") as f:
            f.write(text)
        run(["qconf", "-Mq", copy])
    if show_queue(name) != text:
        raise AdminError("after restoring %s, 'qconf -sq %s' differs from %s" % (name, name, path))
    print("restored queue %s from %s (qconf -sq shows it byte for byte)" % (name, path))
    still = [q for q in queues() if any(runs_node_access(queue_values(show_queue(q)).get(w))
                                        for w in ("prolog", "epilog"))]
    if still:
        print("queues still running node_access: %s; %s keeps its rules" % (", ".join(still), pam_file))
    elif pam.remove_node_access(pam_file):
        print("no queue runs node_access any more: removed the account rules from %s (this host)" % pam_file)
    return 0
