"""The qlogin/qrsh front: ``-pty no`` where the user gave no ``-pty``, so wrapped logins work.

Grid Engine 8.1.9's shepherd gives ``qlogin`` and ``qrsh`` without a command
a pty by default.  For a wrapped method (any ``*_daemon`` but builtin) that
sends it down its ``qsub -pty`` path, where ``handle_io_file()`` opens the
job's output files as the job owner: it becomes root, takes the owner's
egid and euid, opens the file, and then sets its euid back to the value it
had before -- the Grid Engine admin user (the shepherd runs with that euid),
which the owner's euid may not switch to.  ``seteuid`` fails ("Cannot reset
euid ... Operation not permitted"), the shepherd sends SIGTERM to the job's
process group, and the session dies as it starts (``error: 143:``).  Nothing
in Grid Engine avoids that path: the ``pty`` a job gets is read from the
client's command line only (not from ``sge_request``; JSV cannot set it),
and no execd parameter touches it.  (A cluster whose admin user is root does
not hit it.)  The pty is useless there anyway: the daemon's session gets its
terminal from sshd (telnetd, rlogind) on the user's side of the connection.

So the front, installed in place of the ``qlogin`` and ``qrsh`` names in
Grid Engine's binary directory (``sgewrap config --apply``; the originals are
kept by dpkg-divert or renamed), adds ``-pty no`` right after the program
name unless the command line already holds ``-pty`` (the user's own choice
stays: ``-pty yes`` too) or ``-inherit`` (a parallel task: no pty there), and
then replaces itself with the real client (``qsh`` under the name it was
called by, which selects the mode).  A ``-pty`` among a command's own
arguments only means nothing is added: a command's default is no pty.

:func:`with_pty_no` is the rule; :func:`script` writes it as a few lines of
``bash -p`` (about 2 ms where Python would take 10, on the path of every
``qrsh -inherit`` of a parallel job; ``-p``: no BASH_ENV, no imported
functions), and the tests hold the two to the same answers.
"""

#: the names the front stands in for
NAMES = ("qlogin", "qrsh")
#: the line that marks a front (sgewrap config finds, replaces and removes only these)
MARK = "# sgewrap front: "


def with_pty_no(name, args):
    """The client's arguments: ``args`` with ``-pty no`` first where Grid Engine would choose a pty."""
    if name not in NAMES or "-pty" in args or "-inherit" in args:
        return list(args)
    return ["-pty", "no"] + list(args)


def script(name, real, delegate=False):
    """The front for ``name`` running Grid Engine's client ``real`` (the qsh binary).  ``delegate``
    (``config ssh --gssapi-delegate``): the submitting shell's ``KRB5CCNAME`` travels as
    :data:`sgewrap.conventions.HANDED_CCACHE` instead, so that ``qrsh -V`` does not put it into the job's
    environment, which Grid Engine's qrsh_starter sets over the session's delegated cache; the client
    wrapper gives it back to ssh."""
    from ..conventions import HANDED_CCACHE
    if name not in NAMES:
        raise ValueError("no front for %r" % name)
    if any(c in real for c in "'\\\n") or not real.startswith("/"):
        raise ValueError("not a usable client path: %r" % real)
    handoff = (
        "# --gssapi-delegate: KRB5CCNAME past qrsh -V (the session's own is the delegated cache); the ssh",
        "# wrapper gives it back to its client",
        'if [ -n "${KRB5CCNAME+set}" ]; then export %s="$KRB5CCNAME"; unset KRB5CCNAME; fi' % HANDED_CCACHE,
    ) if delegate else ()
    return "\n".join((
        "#!/bin/bash -p",
        MARK + "%s with '-pty no' unless -pty or -inherit is given (Grid Engine 8.1.9 kills wrapped" % name,
        "# pty logins as they start).  Written by sgewrap config --apply, removed by --restore.",
    ) + handoff + (
        "for arg; do",
        "    case $arg in -pty|-inherit) exec -a %s '%s' \"$@\" ;; esac" % (name, real),
        "done",
        "exec -a %s '%s' -pty no \"$@\"" % (name, real),
        ""))
