"""The man pages, generated from the tables the programs themselves use.

Every installed program has a page: the client wrappers and ``qrsh_ssh`` in
section 1, ``rshdwrapper``, ``node_access`` and ``sgewrap`` in section 8, and
``sgewrap-wrappers(5)``, the overview (which program goes into which sge_conf
entry, the calling conventions, tight integration, the tunnel, node access and
adopt).  What is mechanical comes from the registry (``methods``), the calling
conventions (``conventions.TABLE``), the exit codes (``errors``, ``qrshssh``)
and the programs' own ``--help`` texts, so a page cannot disagree with
``--help``; the prose around it is here.  reStructuredText, rendered to roff
by docutils' manpage writer.

The rendered pages are kept in ``wrappers/man`` (installing needs no
docutils); ``tests/unit/test_manpages.py`` regenerates them and fails when a
page is stale.  ``make man`` (``python3 -m sgewrap.admin.manpages wrappers/man``)
writes them.
"""
import os
import subprocess
import sys

from .. import __version__, conventions, methods, qrshssh
from ..errors import EXIT_CODES, NO_JOB

MANUAL = "sgewrap %s" % __version__
GE_PAGES = "remote_startup(5), sge_conf(5), qrsh(1), qlogin(1), sge_pe(5), pam_sge-qrsh-setup(8)"
#: help texts are rendered at this width (plumbum wraps to the terminal)
COLUMNS = "100"
ADMIN = ["-c", "from sgewrap.admin.cli import main; main()"]


def _header(name, section, purpose):
    title = name
    bar = "=" * len(title)
    return "\n".join([bar, title, bar, "", "-" * len(purpose), purpose, "-" * len(purpose), "",
                      ":Manual section: %s" % section, ":Manual group: %s" % MANUAL, ":Version: %s" % __version__,
                      "", ""])


def _section(title, *paragraphs):
    return "%s\n%s\n\n%s\n\n" % (title, "=" * len(title), "\n\n".join(p for p in paragraphs if p))


def _literal(text):
    return "::\n\n" + "\n".join(("    " + line).rstrip() for line in text.rstrip("\n").split("\n"))


def _escape(text):
    return text.replace("\\", "\\\\").replace("*", "\\*").replace("`", "\\`").replace("|", "\\|")


def _plain(text):
    """``text`` escaped, no ``user@IP`` taken for a mail address either."""
    return _escape(text).replace("@", "\\@")


def _deflist(items, markup=False):
    """A definition list; ``markup``: the texts are reStructuredText already (else plain text)."""
    return "\n".join("%s\n    %s" % (term, text if markup else _escape(text)) for term, text in items)


def _codes(pairs):
    return _deflist(("**%d**" % code, why) for code, why in pairs)


def _see_also(*names):
    return ", ".join("**%s**\\ (%s)" % tuple(n.rstrip(")").split("(")) for n in names)


def help_of(argv):
    """A program's --help text, run as installed-from-here (``argv`` after the interpreter)."""
    wrappers = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, COLUMNS=COLUMNS, PYTHONPATH=wrappers)
    env.pop("PYTHONSAFEPATH", None)
    proc = subprocess.run([sys.executable] + argv, env=env, capture_output=True, text=True, timeout=60)
    return proc.stdout


# --- section 1: the client wrappers --------------------------------------------------------------------

def client_page(name):
    from ..client import OWN_OPTIONS, switches_of
    method_name, slots, defaults = methods.ENTRY_POINTS[name]
    method = methods.get(method_name)
    parameters = ", ".join(conventions.SLOT_PARAMETER[s][0] for s in slots)
    out = _header(name, 1, "%s client for Grid Engine's %s" % (method.name, parameters))
    synopsis = ["**%s** [*OPTIONS*] %s" % (name, _escape(conventions.TABLE[s][0])) for s in slots]
    out += _section("SYNOPSIS", "\n\n".join(synopsis))
    how = ["**%s** goes into the **%s** entry of **sge_conf**\\ (5), with its absolute path and any options; "
           "Grid Engine's %s appends ``%s`` and executes it.  It checks those words against the calling "
           "convention and executes ``%s [client options] %s``." % (
               name, conventions.SLOT_PARAMETER[s][0], conventions.SLOT_PARAMETER[s][1], conventions.TABLE[s][0],
               method.name, conventions.TABLE[s][1][method.name]) for s in slots]
    how.append("Method: %s (%s).  The daemon it pairs with: ``%s``; **sgewrap config %s** prints all six entries."
               % (method.name, _escape(method.summary), method.daemon, method.name))
    how.append("A wrapper that cannot do its job writes one line, ``%s: error: MESSAGE``, on standard error "
               "and exits with one of the codes below; nothing is started." % name)
    out += _section("DESCRIPTION", *how)
    options = [("**%s**" % flag, text) for flag, text in OWN_OPTIONS]
    for s in switches_of(method):
        flag = "**%s**%s" % (s.flag, "\\ =\\ *%s*" % s.metavar if s.metavar else "")
        options.append((flag, s.help % ", ".join(method.clients) if "%s" in s.help else s.help))
    text = "Options come before what Grid Engine appends; ``--opt=VALUE`` is the form that survives " \
           "Grid Engine's splitting on spaces."
    if defaults:
        text += "  Default: %s." % " ".join(defaults)
    out += _section("OPTIONS", text, _deflist(options))
    out += _section("EXIT STATUS", "The client's own, or the wrapper's:",
                    _codes(p for p in EXIT_CODES if p[0] != NO_JOB))
    out += _section("SEE ALSO", _see_also("sgewrap-wrappers(5)", "sgewrap(8)", "rshdwrapper(8)",
                                          *GE_PAGES.split(", ")))
    return out


def qrsh_ssh_page():
    name = qrshssh.NAME
    out = _header(name, 1, "ssh-compatible qrsh -inherit for tools inside a parallel job")
    out += _section("SYNOPSIS", "**qrsh_ssh** [**--linger**] [*ssh options*] [*user*\\ @]\\ *host* [*options*] "
                                "[**--**] *command* ...", "**qrsh_ssh** *host* [**-l** *user*] [**-n**] *command* ...")
    doc = [p.replace("\n", " ") for p in qrshssh.__doc__.strip().split("\n\n")]
    out += _section("DESCRIPTION", _escape(doc[0]).replace("\\`\\`", "``"),
                    "It runs ``qrsh -inherit [-nostdin] HOST 'COMMAND...'``: the command's words joined with "
                    "spaces, as ssh joins them for the remote shell, so each remote command starts as a task of "
                    "the job, with the task's additional group id, accounted and killed with the job.  **-n** "
                    "becomes **-nostdin**; options that only shape ssh's own connection are accepted and have "
                    "nothing to do.  Options may follow the host, as OpenSSH reads them, unless **--** came "
                    "before the host.  Also installed as **job-ssh/ssh** beside it, for tools that run "
                    "**ssh** by name from **PATH**.")
    out += _section("LINGER", _escape(qrshssh.LINGER_HELP))
    out += _section("MANY AT ONCE", _escape(qrshssh.SLOTS_HELP))
    out += _section("REFUSED", "With one line on standard error and exit 64: port forwarding, stdio "
                    "forwarding, tunnels and jump hosts (**-L -R -D -W -w -J**, **-o** *\\*Forward*, "
                    "*ProxyCommand*, *ProxyJump*), queries (**-Q -G**), **-f**, **-N**, no command, another "
                    "user than the job's owner.")
    out += _section("POLICIES", "What qrsh -inherit has no counterpart for:",
                    _deflist(("**%s**" % _escape(what), policy) for what, policy in qrshssh.policies()))
    tools = [("**%s**" % _escape(tool), "``%s`` (%s); %s" % (
        qrshssh.setting(line, "W/qrsh_ssh"), _escape(source), _plain(works)) if line else _plain(works))
        for tool, source, line, works in qrshssh.TOOLS.values()]
    out += _section("TOOLS", "In a job script of a parallel environment (**W** is the directory of the "
                    "wrappers; ``hosts=%s``; *HOST* another host of the job):" % qrshssh.HOSTS_WORD,
                    _deflist(tools, markup=True))
    out += _section("EXIT STATUS", "The remote command's, or:", _codes(qrshssh.EXIT_CODES))
    out += _section("SEE ALSO", _see_also("sgewrap-wrappers(5)", "ssh(1)", "qrsh(1)", "sge_pe(5)", "mpirun(1)",
                                          "pdsh(1)", "parallel(1)"))
    return out


# --- section 8 -----------------------------------------------------------------------------------------

def rshd_page():
    from ..rootside import rshd
    out = _header("rshdwrapper", 8, "the daemon side of Grid Engine's remote startup, for legacy daemons")
    out += _section("SYNOPSIS", "**rshdwrapper** [*OPTIONS*] [*DAEMON* [*ARGS*...]]")
    out += _section("DESCRIPTION", "For tight integration with ssh, **sgewrap config ssh --tight** names the job "
                    "sshd (**sge-sshd -i**, the launcher that starts sshd under its own PAM service) in the "
                    "**\\*_daemon** entries directly; **rshdwrapper** keeps older configurations and the legacy "
                    "daemons working.  It runs as root, started by the shepherd, writes nothing to its standard "
                    "output or error (they are the client's connection) and logs to syslog.  Its help:",
                    _literal(rshd.usage()))
    out += _section("SEE ALSO", _see_also("sgewrap-wrappers(5)", "node_access(8)", "sshd(8)",
                                          *GE_PAGES.split(", ")))
    return out


def node_access_page():
    from ..rootside import nodeaccess
    out = _header("node_access", 8, "who may come into a Grid Engine execution host, and into which job")
    out += _section("SYNOPSIS", "**node_access** [*OPTIONS*] **prolog**\\|\\ **epilog**\\|\\ **repair**\\|\\ "
                    "**list**\\|\\ **session**", "**node_access** [*OPTIONS*] **adopt**")
    out += _section("DESCRIPTION", "Run as root by Grid Engine (queue prolog and epilog) or by **pam_exec**\\ (8) "
                    "in sshd's PAM stacks, with nothing trusted from the caller's environment; logs to syslog.  "
                    "**sgewrap node-access** sets it up.  Its help:", _literal(nodeaccess.usage()))
    out += _section("SEE ALSO", _see_also("sgewrap-wrappers(5)", "sgewrap(8)", "pam_exec(8)", "sshd(8)",
                                          "queue_conf(5)", "pam_sge-qrsh-setup(8)"))
    return out


def sgewrap_page():
    from .cli import Sgewrap
    subcommands = sorted(a[len("_subcommand_"):] for a in dir(Sgewrap) if a.startswith("_subcommand_"))
    out = _header("sgewrap", 8, "install, configure, check and test Grid Engine's remote-startup wrappers")
    out += _section("SYNOPSIS", "**sgewrap** *COMMAND* [*OPTIONS*]", "**sgewrap** **--help**\\|\\ **--version**")
    out += _section("DESCRIPTION", "The administrator's command: it installs the wrappers under "
                    "**$SGE_ROOT/util/resources/wrappers**, prints or applies the **sge_conf**\\ (5) entries of a "
                    "method (and the job sshd's PAM service for tight integration), checks every host's "
                    "configuration, proves a method end to end, and sets up node access and adopt.  Nothing "
                    "changes Grid Engine or PAM unless a command is given **--apply** (or **--install**); each "
                    "change keeps what it replaced for **--restore**.  Errors: one line, ``sgewrap: error: "
                    "...``, and a non-zero exit status.",
                    _literal(help_of(ADMIN + ["--help"])))
    out += _section("COMMANDS", *["**sgewrap %s**\n\n%s" % (sub, _literal(help_of(ADMIN + [sub, "--help"])))
                                  for sub in subcommands])
    out += _section("SEE ALSO", _see_also("sgewrap-wrappers(5)", "node_access(8)", "rshdwrapper(8)",
                                          "qconf(1)", *GE_PAGES.split(", ")))
    return out


# --- section 5: the overview ---------------------------------------------------------------------------

def overview_page():
    out = _header("sgewrap-wrappers", 5, "Grid Engine's remote startup through ssh, telnet, rsh and rlogin")
    out += _section("DESCRIPTION", "Grid Engine starts interactive jobs (**qlogin**, **qrsh**) and the slave "
                    "tasks of parallel jobs (**qrsh -inherit**) with the client and daemon programs named in six "
                    "entries of its configuration (**sge_conf**\\ (5), **qconf -mconf**).  **builtin** is its "
                    "own protocol; these wrappers make ssh (or telnet, rsh, rlogin) work there, with every "
                    "remote process still accounted and killed by Grid Engine.  What remote_startup(5) says, and "
                    "what it leaves out, in one page.")
    rows = []
    for slot in conventions.SLOT:
        parameter, caller = conventions.SLOT_PARAMETER[slot]
        for name, (method_name, slots, _) in sorted(methods.ENTRY_POINTS.items()):
            if slot in slots:
                method = methods.get(method_name)
                text = "**%s** with **%s**: Grid Engine appends ``%s``; it runs ``%s %s``; daemon entry " \
                       "(**%s**): ``%s``" % (name, method.name, conventions.TABLE[slot][0], method.name,
                                             conventions.TABLE[slot][1][method.name],
                                             parameter.replace("_command", "_daemon"), method.daemon)
                rows.append(("**%s** (%s)" % (parameter, caller), text))
    out += _section("WHICH PROGRAM GOES WHERE", "**sgewrap config** *METHOD* prints the six entries "
                    "(**--apply** sets them); per entry:", _deflist(rows, markup=True))
    out += _section("TIGHT INTEGRATION", "With **sgewrap config ssh --tight --apply** the daemon entries are "
                    "``W/%s -i``: a static launcher that starts the real sshd under the PAM service **%s** -- by "
                    "its name on OpenSSH 9.2, with ``-o %s=%s`` where **%s** exists (OpenSSH 9.8 and later, "
                    "Debian 13), decided when each session starts -- and with ``-f %s`` (job-only options, then "
                    "the site's file) when that file is root's.  The service, written by that command, loads "
                    "**pam_sgewrap.so job** in its auth, account and session steps: it admits only the job's "
                    "owner, gives the session the task's additional group id and environment (at any PID, for "
                    "key, password and keyboard-interactive logins) and puts it in a cgroup of its own that a "
                    "watcher kills when the session's sshd exits (also when it is SIGKILLed).  No program is "
                    "started.  The site's **/etc/pam.d/sshd** is not touched.  Where the launcher could not be "
                    "built, **%s** is a link to sshd, and on an OpenSSH 9.8+ host that command puts the daemon "
                    "entries with the option into the host's local configuration; **sgewrap check** reports a "
                    "job sshd in force there without it."
                    % (methods.JOB_SSHD_NAME, methods.JOB_PAM_FILE, methods.PAM_SERVICE_OPTION, methods.JOB_SSHD_NAME,
                       methods.SSHD_SESSION, methods.JOB_SSHD_CONFIG, methods.JOB_SSHD_NAME))
    out += _section("THE TUNNEL", "Where a firewall lets only ssh reach the execution hosts, "
                    "**sgewrap config ssh --tunnel** adds **--tunnel** to the client wrappers: ssh reaches the "
                    "shepherd's port through the execution host's own sshd (port 22), or through a gateway "
                    "(**--tunnel-via=**\\ *GW*).")
    out += _section("INTERACTIVE SESSIONS", "Grid Engine 8.1.9's shepherd kills most **qlogin** and "
                    "**qrsh**-without-a-command sessions through a wrapper as they start, unless **-pty no** is "
                    "given; **sgewrap config --apply** (or **sgewrap front --install**) puts a front before "
                    "Grid Engine's own clients that adds it where the user gave no **-pty**.")
    out += _section("PARALLEL JOBS", "Open MPI and MPICH start their daemons through **qrsh -inherit** by "
                    "themselves (**mpirun**; **mpiexec -launcher sge**).  Tools that only know ssh go through "
                    "**qrsh_ssh**\\ (1).")
    out += _section("NODE ACCESS AND ADOPT", "**sgewrap node-access** lets users ssh only into execution hosts "
                    "where a job of theirs runs (**node_access** as queue prolog and epilog); with **--adopt** "
                    "the site's sshd admits them only there and makes the login part of that job, accounted "
                    "and killed with it.  See **node_access**\\ (8).")
    out += _section("PROGRAMS", _deflist(
        [("**%s**\\ (1)" % n, "client wrapper for %s" % ", ".join(conventions.SLOT_PARAMETER[s][0] for s in slots))
         for n, (_, slots, _) in sorted(methods.ENTRY_POINTS.items())]
        + [("**qrsh_ssh**\\ (1)", "ssh-compatible qrsh -inherit for tools inside a parallel job"),
           ("**rshdwrapper**\\ (8)", "the daemon side for legacy daemons and older configurations"),
           ("**node_access**\\ (8)", "session hook, adopt hook, node-access prolog and epilog"),
           ("**sgewrap**\\ (8)", "install, configure, check, selftest")]))
    out += _section("SEE ALSO", _see_also(*GE_PAGES.split(", ")) + ", " + _see_also("sshd(8)", "ssh(1)"))
    return out


def qssh_page():
    from .. import jobssh
    out = _header("qssh", 1, "ssh into a running Grid Engine job by its number")
    out += _section("SYNOPSIS", "**qssh** [**--host** *HOST*] *JOB*\\ [.\\ *TASK*] [*ssh options*] [*command*]",
                    "**ssh** *JOB*\\ **.job** \\| *JOB*\\ **.**\\ *TASK*\\ **.job** \\| *HOST*\\ **.**\\ *JOB*\\ "
                    "**.job** (with **sgewrap job-ssh**)")
    doc = [p.replace("\n", " ") for p in jobssh.__doc__.strip().split("\n\n")]
    out += _section("DESCRIPTION", _escape(doc[0]).replace("\\`\\`", "``"), _escape(doc[3]).replace("\\`\\`", "``"),
                    "The session joins the job on its host through the node's sshd and **node_access adopt** "
                    "(**node_access**\\ (8)): its processes carry the task's additional group id, are "
                    "accounted to the job and killed with it, and have the job's environment.  PAM cannot "
                    "choose the working directory: **cd $SGE_O_WORKDIR**.")
    out += _section("USAGE", _literal(jobssh.USAGE_TEXT))
    out += _section("SEE ALSO", _see_also("ssh(1)", "ssh_config(5)", "node_access(8)", "sgewrap(8)", "qstat(1)",
                                          "qalter(1)"))
    return out


def pages():
    """{file name: reStructuredText} of every page: one per program of the registry, in its section,
    and the overview."""
    own = {"qrsh_ssh": qrsh_ssh_page, "qssh": qssh_page, "rshdwrapper": rshd_page, "node_access": node_access_page,
           "sgewrap": sgewrap_page}
    found = {"%s.%d" % (name, p.section): own[name]() if name in own else client_page(name)
             for name, p in sorted(methods.PROGRAMS.items())}
    found["sgewrap-wrappers.5"] = overview_page()
    return found


def render(rst):
    """roff of one page (docutils' manpage writer)."""
    import warnings
    from docutils.core import publish_string
    with warnings.catch_warnings():      # writer_name: the spelling Debian 12's docutils 0.19 knows
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        return publish_string(rst, writer_name="manpage", settings_overrides={
            "report_level": 2, "halt_level": 2, "output_encoding": "utf-8"}).decode("utf-8")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 2 and argv[0] == "--rst":
        sys.stdout.write(pages()[argv[1]])
        return 0
    if len(argv) != 1:
        sys.stderr.write("usage: python3 -m sgewrap.admin.manpages DIR | --rst PAGE\n")
        return 64
    os.makedirs(argv[0], exist_ok=True)
    for name, rst in pages().items():
        with open(os.path.join(argv[0], name), "w") as f:
            f.write(render(rst))
    return 0


if __name__ == "__main__":
    sys.exit(main())
