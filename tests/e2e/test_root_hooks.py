"""Attacks on the root side that PAM starts (issue 18: findings 1, 2 and 5), by a real second user.

Each test is an attack by ``sgeother`` (the attacker; ``sgetest`` is the victim where there is one)
and fails if the attack works.  Real sshd on port 22 with Debian 12's own /etc/pam.d/sshd
(``session required pam_env.so user_readenv=1``: the user's ``~/.pam_environment`` enters the PAM
environment when the session opens), real pam_exec, real pam_sge-qrsh-setup, real jobs.  The adopt
block goes into /etc/pam.d/sshd as ``sgewrap node-access --adopt --apply`` writes it
(test_adopt.adopt_block), the job sshd's stack into /etc/pam.d/sge-sshd as ``sgewrap config ssh
--tight --apply`` writes it (the ``ssh-tight`` method); both are put back byte for byte.

The evidence that root loaded the attacker's code is a file that only root can make: the library
the attacker compiles (a constructor, and ``la_version`` for ``LD_AUDIT``) writes, when its
effective uid is 0, a marker holding the process's command line and its initial environment (what
pam_exec passed) into a directory of mode 0700 that the test made as root.
"""
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from lib import auth_log_since, auth_log_size, sge, wait_until
from sgewrap.admin import pam
from sgewrap.rootside import procs
from test_adopt import SSH, adopt_block, running_job, ssh

pytestmark = [pytest.mark.cluster]

ATTACKER = "sgeother"
#: seconds given to a root hook at logout to show itself (a marker, a hung process, a log line):
#: the hooks of a login take well under one second
SETTLE = 5
#: the jobs leave no sleep.oN / sleep.eN in the users' homes
NO_OUTPUT = ("-o", "/dev/null", "-j", "y")

EVIL_C = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <link.h>
#include <string.h>
#include <unistd.h>

static void put(int fd, const char *s) { (void)!write(fd, s, strlen(s)); }

static void copy(int fd, const char *path)      /* NULs shown as newlines */
{
    char buf[4096];
    ssize_t n, i;
    int in = open(path, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return;
    while ((n = read(in, buf, sizeof buf)) > 0) {
        for (i = 0; i < n; i++)
            if (!buf[i])
                buf[i] = '\n';
        (void)!write(fd, buf, n);
    }
    close(in);
}

static void evidence(const char *how)           /* MARKER_DIR/HOW.PID, if we are root */
{
    char path[512], num[24];
    int i = sizeof num - 1, fd;
    unsigned pid = (unsigned)getpid();
    if (geteuid() != 0)
        return;
    num[i] = 0;
    do { num[--i] = '0' + pid % 10; pid /= 10; } while (pid);
    strcpy(path, MARKER_DIR "/");
    strcat(path, how);
    strcat(path, ".");
    strcat(path, num + i);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    put(fd, "stat: ");
    copy(fd, "/proc/self/stat");
    put(fd, "cmdline:\n");
    copy(fd, "/proc/self/cmdline");
    put(fd, "environ:\n");
    copy(fd, "/proc/self/environ");
    close(fd);
}

__attribute__((constructor)) static void loaded(void) { evidence("constructor"); }

unsigned int la_version(unsigned int version) { evidence("la_version"); return LAV_CURRENT; }
"""


@pytest.fixture
def marker_dir():
    """A directory only root can write in (0700, root's): a file there proves root code ran."""
    path = tempfile.mkdtemp(prefix="sgewrap-root-only.")
    os.chmod(path, 0o700)
    yield path
    shutil.rmtree(path)


def markers(path):
    """The markers in ``path`` with what they hold (empty: no root process loaded the library)."""
    found = []
    for name in sorted(os.listdir(path)):
        with open(os.path.join(path, name), errors="replace") as f:
            found.append("%s:\n%s" % (name, f.read()[:3000]))
    return "\n".join(found)


def home(user):
    return pwd.getpwnam(user).pw_dir


@pytest.fixture
def evil_library(marker_dir):
    """~sgeother/evil.so, compiled by the attacker: as root it leaves a marker in ``marker_dir``."""
    source, library = os.path.join(home(ATTACKER), "evil.c"), os.path.join(home(ATTACKER), "evil.so")
    try:
        sge.user_run(["/usr/bin/tee", source], user=ATTACKER, input=EVIL_C, text=True, capture_output=True,
                     check=True)
        proc = sge.user_run(["/usr/bin/gcc", "-shared", "-fPIC", "-O2", "-DMARKER_DIR=\"%s\"" % marker_dir, "-o",
                             library, source], user=ATTACKER, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        yield library
    finally:
        for path in (source, library):
            if os.path.lexists(path):
                os.unlink(path)


@contextlib.contextmanager
def pam_environment(user, text):
    """``~USER/.pam_environment`` holding ``text`` (pam_env.conf syntax), written by the user; the
    file as it was (or none) afterwards."""
    path = os.path.join(home(user), ".pam_environment")
    try:
        with open(path, "rb") as f:
            before = f.read()
    except FileNotFoundError:
        before = None
    sge.user_run(["/bin/sh", "-c", 'cat > "$1"', "sh", path], user=user, input=text, text=True, check=True)
    try:
        yield path
    finally:
        if before is None:
            os.unlink(path)
        else:
            sge.user_run(["/bin/sh", "-c", 'cat > "$1"', "sh", path], user=user, input=before, check=True)


def root_hooks_with(text):
    """{PID: what it is} of the root processes running node_access whose environment holds ``text``."""
    found = {}
    for pid in sge.processes_with("node_access"):
        st = procs.stat_of(pid)
        try:
            with open("/proc/%d/environ" % pid, "rb") as f:
                environ = f.read()
        except OSError:
            continue
        if st is not None and procs.real_uid(pid) == 0 and text.encode() in environ:
            found[pid] = "%s (parent %d: %s)" % (command(pid), st.ppid, command(st.ppid))
    return found


def command(pid):
    return sge.cmdline(pid).replace(b"\0", b" ").decode(errors="replace").strip()


def setup_records():
    """{name: first line (the spool directory)} of the setup files now."""
    found = {}
    for name in sge.setup_files():
        try:
            with open(os.path.join("/var/run", name)) as f:
                found[name] = f.readline().strip()
        except OSError:
            pass
    return found


@pytest.fixture
def attackers_jobs_go():
    """Whatever the attacker submitted is deleted afterwards (the cluster fixture cleans only sgetest's)."""
    yield
    subprocess.run(["/usr/bin/qdel", "-u", ATTACKER], env=sge.ENV, capture_output=True)
    assert not sge.wait_no_user_jobs(ATTACKER), "jobs of %s left" % ATTACKER


# --- adopt: the site's sshd (/etc/pam.d/sshd) ----------------------------------------------------


@pytest.mark.parametrize("variable", ["LD_PRELOAD", "LD_AUDIT"])
def test_adopt_no_root_hook_loads_a_library_named_in_the_users_pam_environment(
        cluster, variable, evil_library, marker_dir, attackers_jobs_go):
    """Finding 1 (root at logout through adopt): the attacker has a job here, so adopt admits and ties
    the login; ~/.pam_environment sets LD_PRELOAD (LD_AUDIT) to the attacker's library.  No root
    process may load it: no marker appears in the root-only directory."""
    with running_job(ATTACKER, extra=NO_OUTPUT), adopt_block(cluster), \
            pam_environment(ATTACKER, "%s DEFAULT=%s\n" % (variable, evil_library)):
        proc = ssh(ATTACKER, "echo JOB=$JOB_ID; echo VALUE=$%s" % variable)
        # the attack's premise: admitted, tied, and pam_env put the variable into the session
        assert proc.returncode == 0 and "JOB=\n" not in proc.stdout, proc.stdout + proc.stderr
        assert "VALUE=%s" % evil_library in proc.stdout, proc.stdout
        wait_until(lambda: os.listdir(marker_dir), SETTLE)
    assert not os.listdir(marker_dir), "root loaded the attacker's library:\n" + markers(marker_dir)


def test_adopt_no_root_hook_hangs_on_a_tz_naming_a_fifo(cluster, attackers_jobs_go):
    """Finding 1 (TZ): ~/.pam_environment sets TZ to a FIFO in the attacker's home, which nobody ever
    writes.  After the logout no root node_access process with that TZ is left hanging."""
    fifo = os.path.join(home(ATTACKER), "tz-fifo")
    sge.user_run(["/usr/bin/mkfifo", fifo], user=ATTACKER, check=True)
    left = {}
    try:
        with running_job(ATTACKER, extra=NO_OUTPUT), adopt_block(cluster), \
                pam_environment(ATTACKER, "TZ DEFAULT=%s\n" % fifo):
            proc = ssh(ATTACKER, "echo JOB=$JOB_ID; echo TZ=$TZ")
            assert proc.returncode == 0 and "JOB=\n" not in proc.stdout, proc.stdout + proc.stderr
            assert "TZ=%s" % fifo in proc.stdout, proc.stdout
            time.sleep(2)           # the logout's hooks start
            wait_until(lambda: not root_hooks_with(fifo), SETTLE)
            left = root_hooks_with(fifo)
    finally:
        release(fifo)
        os.unlink(fifo)
    assert not left, "root hooks left hanging on the attacker's TZ FIFO: %s" % left


def release(fifo):
    """Let every process blocked opening ``fifo`` go on (a writer opens and closes it: they read EOF),
    and kill those that still hang on it."""
    for _ in range(3):
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
        if wait_until(lambda: not root_hooks_with(fifo), 3):
            return
    for pid in root_hooks_with(fifo):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def test_adopt_a_planted_pam_type_and_pam_user_run_no_account_step_for_another_user(cluster, attackers_jobs_go):
    """Finding 2 (PAM_TYPE/PAM_USER spoofed): ~/.pam_environment sets PAM_TYPE=account and
    PAM_USER=sgetest, whose job runs here too.  At the attacker's logout no account step runs for
    sgetest (no node_access line names sgetest) and no setup file names sgetest's job."""
    before = setup_records()
    try:
        with running_job(sge.TEST_USER, extra=NO_OUTPUT) as victims, running_job(ATTACKER, extra=NO_OUTPUT), \
                adopt_block(cluster), \
                pam_environment(ATTACKER, "PAM_TYPE DEFAULT=account\nPAM_USER DEFAULT=%s\n" % sge.TEST_USER):
            victim_spool = "%s/%s/active_jobs/%s.1" % (sge.SPOOL, sge.HOST, victims)
            mark = auth_log_size()
            proc = ssh(ATTACKER, "echo JOB=$JOB_ID; echo SPOOF=$PAM_TYPE/$PAM_USER")
            assert proc.returncode == 0 and "JOB=\n" not in proc.stdout, proc.stdout + proc.stderr
            assert "SPOOF=account/%s" % sge.TEST_USER in proc.stdout, proc.stdout     # pam_env took them
            wait_until(lambda: sge.TEST_USER in auth_log_since(mark), SETTLE)
            time.sleep(1)
            forged = [line for line in auth_log_since(mark).splitlines()
                      if "node_access" in line and sge.TEST_USER in line]
            new = {name: spool for name, spool in setup_records().items() if name not in before}
    finally:
        remove_stale_setup_files(before)
    assert not forged, "the attacker's logout ran node_access for %s:\n%s" % (sge.TEST_USER, "\n".join(forged))
    assert victim_spool not in new.values(), "a setup file names %s's job: %s" % (sge.TEST_USER, new)


def remove_stale_setup_files(before):
    """Remove the setup files made since ``before`` whose process has gone (what the next session's
    sweep would remove)."""
    for name in set(sge.setup_files()) - set(before):
        if not os.path.exists("/proc/%s" % name.rsplit(".", 1)[1]):
            os.unlink(os.path.join("/var/run", name))


# --- the job sshd (/etc/pam.d/sge-sshd) ----------------------------------------------------------


#: Grid Engine's qrsh_starter (linked with jemalloc) does not load under any LD_AUDIT library unless
#: glibc keeps more static TLS spare ("cannot allocate memory in static TLS block", measured): the
#: attacker sets that too, so that the attacker's own session runs
AUDIT_TLS = "GLIBC_TUNABLES=glibc.rtld.optional_static_tls=4096"


@pytest.mark.slot("rsh")
@pytest.mark.methods("ssh-tight")
@pytest.mark.parametrize("variable", ["LD_PRELOAD", "LD_AUDIT"])
def test_tight_no_root_hook_loads_a_library_named_in_the_jobs_environment(method, variable, evil_library,
                                                                          marker_dir, attackers_jobs_go):
    """Finding 1 (the job's environment): the attacker's ``qrsh -v LD_PRELOAD=evil.so`` (LD_AUDIT)
    puts the variable into the job's environment file, which pam_sge-qrsh-setup loads into the PAM
    environment of the job sshd's session.  No root process may load the library: no marker appears.
    (Measured with 0.2.0: the module loads it in the session's own process only, not in the monitor
    whose close_session hook runs as root, so this attack did not work there; the test keeps it so.)"""
    extra = ("-v", AUDIT_TLS) if variable == "LD_AUDIT" else ()
    proc = sge.qrsh(*extra, "-v", "%s=%s" % (variable, evil_library), "echo", "VALUE=$%s" % variable,
                    user=ATTACKER, stdin=subprocess.DEVNULL, text=True, timeout=90)
    # the attack's premise: the variable reached the attacker's session through the job sshd
    assert proc.returncode == 0 and "VALUE=%s" % evil_library in proc.stdout, proc.stdout + proc.stderr
    wait_until(lambda: os.listdir(marker_dir), SETTLE)
    assert not os.listdir(marker_dir), "root loaded the attacker's library:\n" + markers(marker_dir)


@contextlib.contextmanager
def fail_open_job_stack(wrappers):
    """/etc/pam.d/sge-sshd with ``pam_sgewrap.so job --fail-open`` in each of its stacks; the file
    byte for byte as before afterwards."""
    with open(pam.JOB_PAM_FILE, "rb") as f:
        before = f.read()
    text = pam.job_stack(wrappers)
    module = "pam_sgewrap.so job"
    assert text.count(module) == 3
    with open(pam.JOB_PAM_FILE, "w") as f:
        f.write(text.replace(module, module + " --fail-open"))
    try:
        yield
    finally:
        with open(pam.JOB_PAM_FILE, "wb") as f:
            f.write(before)


def listening_ports(pid):
    """The TCP ports process ``pid`` listens on (its sockets in /proc/net/tcp and tcp6, state LISTEN)."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:
                    ports.append(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def shepherd_port(job, timeout=60):
    """The port the shepherd of ``job`` (task 1, this host) waits on for the qrsh client."""
    spool = "%s/%s/active_jobs/%s.1" % (sge.SPOOL, sge.HOST, job)

    def port():
        for pid, where in procs.shepherds().items():
            if os.path.realpath(where) == os.path.realpath(spool):
                try:
                    ports = listening_ports(pid)
                except OSError:
                    ports = []
                if ports:
                    return ports[0]
        return None
    found = wait_until(port, timeout)
    if not found:
        raise AssertionError("the shepherd of job %s never listened" % job)
    return found


@pytest.mark.slot("rsh")
@pytest.mark.methods("ssh-tight")
def test_fail_open_never_admits_another_user_who_reaches_the_owners_shepherd_port(method, cluster):
    """Finding 5 (--fail-open): the job stack runs ``node_access --fail-open session``.  sgetest's
    ``qrsh`` job starts; its shepherd waits for a connection on a port anyone can see (/proc/net/tcp)
    and the attacker connects first (the owner's qrsh is held stopped so that the race is always
    won).  The attacker must be refused: ssh fails and the attacker's command never runs."""
    ran = os.path.join(home(ATTACKER), "attacker-command-ran")
    with fail_open_job_stack(cluster):
        owner = subprocess.Popen(["/usr/sbin/runuser", "-u", sge.TEST_USER, "--", "/usr/bin/qrsh", "-now", "no",
                                  "-h", "-q", sge.QUEUE, "sleep", "60"], env=sge.user_env(), start_new_session=True,
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        job = None
        try:
            assert wait_until(lambda: sge.user_jobs(), 30), "the owner's qrsh job never appeared"
            job = sge.user_jobs().splitlines()[-1].split()[0]
            os.killpg(owner.pid, signal.SIGSTOP)     # the owner's client: too slow, this time
            subprocess.run(["/usr/bin/qrls", job], env=sge.ENV, capture_output=True, check=True)
            port = shepherd_port(job)
            proc = sge.user_run(SSH + ["-p", str(port), sge.HOST, "touch %s; echo INSIDE; id" % ran], user=ATTACKER,
                                env={"HOME": home(ATTACKER)}, capture_output=True, text=True, timeout=60,
                                stdin=subprocess.DEVNULL)
        finally:
            os.killpg(owner.pid, signal.SIGKILL)
            os.killpg(owner.pid, signal.SIGCONT)
            owner.wait(30)
            if job:
                sge.delete(job)
            command_ran = os.path.exists(ran)
            if command_ran:
                os.unlink(ran)
    assert proc.returncode == 255 and "INSIDE" not in proc.stdout, "the attacker got in: %r %r" % (
        proc.stdout, proc.stderr[-500:])
    assert not command_ran, "the attacker's command ran in the owner's job sshd"
