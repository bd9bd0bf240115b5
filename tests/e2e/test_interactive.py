"""Interactive sessions as users type them: plain ``qlogin`` and ``qrsh`` in a login shell of bash,
zsh and tcsh (and from a ``#!/bin/sh`` script), job control, window size, exit status, X11, and the
job's variables in the session.

Driven in tmux, as the test user, through the real cluster configured like ``sgewrap config ssh
--tight --apply`` leaves it: the job sshd with its PAM service and the qlogin/qrsh front (which
adds ``-pty no``: Grid Engine 8.1.9 kills wrapped pty logins as they start).  The user's
``~/.sge_request`` names the test queue, as a site's default request would.
"""
import os
import pwd
import re
import subprocess
import tempfile
import time

import pytest

from lib import sge, wait_until
from lib.ptydrive import Tmux

SHELLS = {"bash": ("/bin/bash", "$?"), "zsh": ("/usr/bin/zsh", "$?"), "tcsh": ("/usr/bin/tcsh", "$status")}
SESSIONS = 10


@pytest.fixture(scope="module")
def sge_request():
    """The test user's default request: the test queue (a typed qlogin must not land on node2)."""
    pw = pwd.getpwnam(sge.TEST_USER)
    path = os.path.join(pw.pw_dir, ".sge_request")
    with open(path, "w") as f:
        f.write("-q %s\n" % sge.QUEUE)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    yield
    os.unlink(path)


def user_shell(shell, name, cols=100, rows=30, env=None):
    """A login shell of the test user in tmux, with Grid Engine's environment (as settings.sh gives)."""
    pw = pwd.getpwnam(sge.TEST_USER)
    variables = dict(HOME=pw.pw_dir, USER=sge.TEST_USER, LOGNAME=sge.TEST_USER, SHELL=shell, TERM="xterm",
                     LANG="C.UTF-8", PATH="/usr/local/bin:/usr/bin:/bin", SGE_ROOT=sge.SGE_ROOT,
                     SGE_CELL=sge.SGE_CELL, **(env or {}))
    argv = ["/usr/sbin/runuser", "-u", sge.TEST_USER, "--", "/usr/bin/env", "-i"] + \
        ["%s=%s" % kv for kv in sorted(variables.items())] + [shell, "-l"]
    term = Tmux(argv, name=name, cols=cols, rows=rows)
    marker(term, "HERE")
    return term


def marker(term, word, timeout=90):
    """Type an echo of ``word`` split in two (the typed line never shows it whole) and wait for it."""
    term.type("echo %s''%s" % (word[:2], word[2:]))
    return term.expect(word, timeout=timeout, after="%s''%s" % (word[:2], word[2:]))


def session(term, shell, client, status_var, exit_code=0, check="echo IN''SIDE-$JOB_ID"):
    """Type ``client``; inside, ``check``; leave with ``exit N``; the status the local shell saw."""
    # the client runs (qlogin says so; for qrsh, sshd's last-login line): what is typed now reaches it
    term.type_and_wait(client, "Last login" if client == "qrsh" else "Establishing")
    term.type(check)
    text = term.expect("INSIDE-", timeout=60, after=check)
    assert re.search(r"INSIDE-\d+", text.rsplit(check, 1)[-1]), text[-500:]
    term.type("exit %d" % exit_code)
    term.wait_foreground(os.path.basename(shell))      # back in the local shell: typing reaches it again
    word = "ST%d" % time.monotonic_ns()
    term.type("echo %s-%s" % (word, status_var))
    text = term.expect(word + "-", timeout=60, after="echo %s-%s" % (word, status_var))
    return int(re.search(word + r"-(\d+)", text.rsplit("echo %s-" % word, 1)[-1]).group(1))


@pytest.mark.slot("qlogin")
@pytest.mark.methods("ssh-tight")
@pytest.mark.parametrize("shell", sorted(SHELLS))
def test_plain_qlogin_and_qrsh_ten_times_in_a_row_in_each_shell(method, sge_request, shell):
    path, status_var = SHELLS[shell]
    term = user_shell(path, "logins-" + shell)
    try:
        for n in range(SESSIONS):
            assert session(term, path, "qlogin", status_var) == 0, "qlogin %d in %s" % (n + 1, shell)
        for n in range(SESSIONS):
            assert session(term, path, "qrsh", status_var, exit_code=n % 4) == n % 4, \
                "qrsh %d in %s" % (n + 1, shell)
    finally:
        term.close()


@pytest.mark.slot("qlogin")
@pytest.mark.methods("ssh-tight")
def test_qlogin_from_a_sh_script(method, sge_request):
    with sge.user_script("#!/bin/sh\n# what a site's helper script does\nqlogin \"$@\"\n", "login.sh") as script:
        term = user_shell("/bin/bash", "script")
        try:
            assert session(term, "/bin/bash", script, "$?") == 0
        finally:
            term.close()


@pytest.mark.slot("qlogin")
@pytest.mark.methods("ssh-tight")
def test_job_control_window_size_and_ctrl_c(method, sge_request):
    term = user_shell("/bin/bash", "jobcontrol", cols=100, rows=30)
    try:
        term.type_and_wait("qlogin", "Establishing")
        term.type_and_wait("echo IN''SIDE", "INSIDE\n")
        assert "\n30 100\n" in term.type_and_wait("stty size; echo SI''ZE1", "SIZE1\n")
        term.resize(120, 40)
        time.sleep(0.5)
        assert "\n40 120\n" in term.type_and_wait("stty size; echo SI''ZE2", "SIZE2\n")
        term.type("sleep 100")
        time.sleep(1)
        before = term.screen().count("Stopped")
        term.key("C-z")
        term.type_and_wait("echo ST''OPPED", "STOPPED\n")
        assert term.screen().count("Stopped") > before        # the shell's job control took the job
        term.type("fg")
        time.sleep(1)
        term.key("C-c")
        screen = term.type_and_wait("jobs; echo AF''TER", "AFTER\n")
        assert "sleep 100" not in screen.rsplit("jobs; echo AF''TER", 1)[-1]
        term.type("exit")
        term.wait_foreground("bash")        # qlogin has ended: typing reaches the local shell again
        marker(term, "BACKHOME")
    finally:
        term.close()


# --- the job's variables in a login session ---------------------------------------------------

JOB_VARIABLES = ("JOB_ID", "JOB_NAME", "QUEUE", "NSLOTS", "NHOSTS", "NQUEUES", "TMPDIR", "TMP", "SGE_TASK_ID",
                 "SGE_O_HOME", "SGE_O_WORKDIR", "SGE_O_HOST", "SGE_CWD_PATH", "SGE_STDOUT_PATH",
                 "SGE_JOB_SPOOL_DIR", "SGE_ROOT", "SGE_CELL", "SGE_ARCH", "ENVIRONMENT", "REQUEST", "PE_HOSTFILE",
                 "RESTARTED", "HOSTNAME", "ARC", "DISPLAY")


def login_variables():
    """The names of JOB_VARIABLES set in a qlogin session (and whether TMPDIR exists)."""
    command = "for v in %s; do eval \"test -n \\\"\\${$v+x}\\\"\" && printf 'VAR=%%s\\n' $v; done; " \
              "test -d \"$TMPDIR\" && echo VAR=TMPDIR-exists; echo VARS''DONE" % " ".join(JOB_VARIABLES)
    out = sge.login(["/usr/bin/qlogin", "-now", "yes", "-q", sge.QUEUE], command=command, expect="VARSDONE",
                    capture=True)
    return sorted(set(re.findall(r"VAR=([A-Za-z_-]+)", out.split("VARS''DONE", 1)[-1])))


#: {method: the variables a login session had}, filled by the test below as each method runs
SEEN = {}


@pytest.mark.slot("qlogin")
@pytest.mark.methods("builtin", "ssh-tight")
def test_a_login_sessions_job_variables_match_builtins(method):
    """Measured: what differs and why goes into README.rst ("Interactive sessions")."""
    found = set(login_variables())
    SEEN[method.name] = found
    if method.name == "ssh-tight":
        # the job's environment file, loaded by pam_sge-qrsh-setup: a login has what a job has
        assert ONLY_SSH <= found, sorted(ONLY_SSH - found)
        assert "DISPLAY" not in found      # the module skips DISPLAY on purpose (no X11 asked for here)
    if len(SEEN) == 2:
        ssh, builtin = SEEN["ssh-tight"], SEEN["builtin"]
        assert builtin <= ssh, sorted(builtin - ssh)
        assert ssh - builtin == ONLY_SSH, sorted(ssh - builtin)


#: measured on Grid Engine 8.1.9: builtin's qlogin starts a login that resets the environment (only
#: the shell's own HOSTNAME is set); the ssh login gets the job's environment file from the PAM
#: module -- what a batch job or qrsh CMD sees (README.rst, "Interactive sessions")
ONLY_SSH = {"ARC", "ENVIRONMENT", "JOB_ID", "JOB_NAME", "NHOSTS", "NQUEUES", "NSLOTS", "QUEUE", "REQUEST",
            "RESTARTED", "SGE_ARCH", "SGE_CELL", "SGE_JOB_SPOOL_DIR", "SGE_O_HOME", "SGE_O_HOST",
            "SGE_O_WORKDIR", "SGE_ROOT", "SGE_TASK_ID", "TMP", "TMPDIR", "TMPDIR-exists"}


# --- X11 ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def x_display():
    """Xvfb on the submit side, with a cookie the test user holds; the user's DISPLAY."""
    pw = pwd.getpwnam(sge.TEST_USER)
    number = 42
    cookie = os.urandom(16).hex()
    authfile = os.path.join(tempfile.mkdtemp(prefix="sgewrap-x."), "auth")
    os.chmod(os.path.dirname(authfile), 0o755)
    subprocess.run(["/usr/bin/xauth", "-f", authfile, "add", ":%d" % number, ".", cookie], check=True)
    xvfb = subprocess.Popen(["/usr/bin/Xvfb", ":%d" % number, "-auth", authfile, "-nolisten", "tcp",
                             "-screen", "0", "1024x768x24"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    user_auth = os.path.join(pw.pw_dir, ".Xauthority")
    subprocess.run(["/usr/bin/xauth", "-f", user_auth, "add", ":%d" % number, ".", cookie], check=True)
    os.chown(user_auth, pw.pw_uid, pw.pw_gid)
    listening = "/tmp/.X11-unix/X%d" % number
    assert wait_until(lambda: os.path.exists(listening) or xvfb.poll() is not None, 30) \
        and os.path.exists(listening), "Xvfb did not start"
    yield ":%d" % number
    xvfb.kill()
    xvfb.wait()
    os.unlink(user_auth)


X_CHECK = ("echo DISPLAY=$DISPLAY; xdpyinfo | grep dimensions; xprop -root _NET_NONE >/dev/null 2>&1; "
           "xprop -root | head -1 | sed 's/^/XPROP:/'; echo X''DONE")


def x_session(client, display, queue):
    out = sge.login(["/usr/bin/" + client, "-now", "yes", "-q", queue], command=X_CHECK, expect="XDONE",
                    capture=True, env={"DISPLAY": display})
    return out.replace("\r", "")


@pytest.mark.slot("qlogin")
@pytest.mark.methods("ssh-tight", "ssh-tunnel")
@pytest.mark.parametrize("client", ["qlogin", "qrsh"])
def test_an_x_client_in_the_session_draws_on_the_users_display(method, cluster, x_display, client):
    """qlogin_wrapper --x11 / ssh_wrapper --x11: sshd's DISPLAY (localhost:N) wins over the job's."""
    from sgewrap.admin import sgeconf
    entries = sgeconf.entries("ssh", cluster, tight=True, x11=True, tunnel=method.tunnel or None)
    entries["rlogin_command"] += " --x11"
    with sge.commands(entries):
        queue = sge.FW_QUEUE if method.tunnel else sge.QUEUE
        out = x_session(client, x_display, queue)
    assert re.search(r"DISPLAY=localhost:\d+\.0\r?\n", out), out[-1500:]
    assert "dimensions:    1024x768 pixels" in out, out[-1500:]
    assert "XPROP:" in out
