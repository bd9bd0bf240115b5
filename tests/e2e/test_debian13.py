"""Debian 13's own OpenSSH 10 and PAM 1.7 as the job sshd: the launcher selects the job PAM service,
pam_sgewrap ties the session, and without the launcher the same sshd fails open (Debian 13 issue).

A trixie root (``debootstrap --variant=minbase --include=openssh-server``, built once into
:data:`CACHE` and reused) holds the job sshd: Debian 13's sshd, sshd-session and libpam, its own
/etc/pam.d common files.  The stand-in shepherd (sgewrap.admin.shepherd) starts it in a mount
namespace of its own, chrooted into that root, with /proc, /dev, /home, /tmp and the stand-in's
directory bound in: the daemon keeps the stand-in as its parent (every step execs in the same PID),
so to the module the stand-in is the shepherd, exactly as on a Debian 13 execution host.  The
module and the launcher are the ones built on this Debian 12 machine (no execution host needs a
compiler): one build serves both releases.  The client is Debian 12's ssh, as the test users.
"""
import os
import pwd
import shutil
import subprocess

import pytest

from lib import REPO, SSH, TEST_USER, auth_log_since, auth_log_size, host_lock, make_spool, need, wait_until
from sgewrap import methods
from sgewrap.admin import pam, pammodule
from sgewrap.admin.shepherd import STAND_IN_DIR, Shepherd, as_user

pytestmark = pytest.mark.root

CACHE = "/var/cache/sgewrap-test/trixie"
OTHER_USER = "sgeother"
BINDS = ("/proc", "/dev", "/home", "/tmp", STAND_IN_DIR)


def mirror():
    import sys
    sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))
    from test_minimal_debian import mirror as host_mirror
    return host_mirror()


@pytest.fixture(scope="module")
def trixie(installed):
    """The trixie root, prepared for this run: this host's users, host keys, the job stack, the module
    and the launcher at the paths they have here."""
    need(shutil.which("debootstrap"), "debootstrap missing", "apt-get install debootstrap (make deps)")
    if not os.path.exists(os.path.join(CACHE, "usr/lib/openssh/sshd-session")):
        shutil.rmtree(CACHE + ".new", ignore_errors=True)
        os.makedirs(os.path.dirname(CACHE), exist_ok=True)
        proc = subprocess.run(["debootstrap", "--variant=minbase", "--include=openssh-server,libpam-modules",
                               "trixie", CACHE + ".new", mirror()], capture_output=True, text=True, timeout=1200)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        shutil.rmtree(CACHE, ignore_errors=True)
        os.rename(CACHE + ".new", CACHE)
    root = CACHE
    version = subprocess.run(["chroot", root, "/usr/sbin/sshd", "-V"], capture_output=True, text=True).stderr
    assert version.startswith("OpenSSH_10."), version
    for name in ("passwd", "group", "shadow"):
        shutil.copy2(os.path.join("/etc", name), os.path.join(root, "etc", name))
    subprocess.run(["chroot", root, "/usr/bin/ssh-keygen", "-A"], check=True, capture_output=True)
    for path in BINDS + ("/run/sshd",):
        os.makedirs(root + path, exist_ok=True)
    pam_dir = subprocess.run(["chroot", root, "/bin/sh", "-c", "dirname $(ls /usr/lib/*/security/pam_unix.so)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    shutil.copy2(os.path.join(installed, pammodule.NAME), root + pam_dir)
    with open(os.path.join(root, "etc/pam.d", methods.JOB_SSHD_NAME), "w") as f:
        f.write(pam.job_stack(installed))
    inside = root + installed
    os.makedirs(inside, exist_ok=True)
    shutil.copy2(os.path.join(installed, methods.JOB_SSHD_NAME), inside)
    link = os.path.join(inside, "sshd-link")
    if not os.path.lexists(link):
        os.symlink("/usr/sbin/sshd", link)            # what 0.2 installed as sge-sshd: a link to sshd
    return root


def in_trixie(root, program, *args):
    """The daemon argv: a private mount namespace, the binds, chroot, then ``program`` (each step execs:
    the daemon keeps the shepherd as its parent)."""
    binds = " && ".join("/usr/bin/mount --rbind %s %s%s" % (p, root, p) for p in BINDS)
    script = "/usr/bin/mount --make-rprivate / && %s && exec /usr/sbin/chroot %s %s %s" % (
        binds, root, program, " ".join(args))
    return ["/usr/bin/unshare", "--mount", "/bin/sh", "-c", script]


def ssh(port, command, user=TEST_USER):
    return as_user(user, SSH + ["-p", str(port), "127.0.0.1", command], capture_output=True, text=True, timeout=60)


@pytest.fixture
def spool(tmp_path):
    os.chmod(tmp_path, 0o755)
    return make_spool(tmp_path, 64321, TEST_USER)


def env_of(spool):
    return {"PATH": "/usr/bin:/bin", "SGE_JOB_SPOOL_DIR": spool, "JOB_ID": "4711", "SGE_TASK_ID": "undefined"}


def test_on_openssh_10_the_launcher_ties_the_owner_s_session_and_refuses_another_user(trixie, installed, spool):
    launcher = os.path.join(installed, methods.JOB_SSHD_NAME)
    mark = auth_log_size()
    with host_lock():
        with Shepherd(in_trixie(trixie, launcher, "-i"), env=env_of(spool), cwd=spool) as sh:
            proc = ssh(sh.port, "id -G; echo FOO=$FOO_FROM_JOB; cat /etc/debian_version")
            assert proc.returncode == 0, proc.stderr
            monitor = sh.daemon_pid
        groups, foo, release = proc.stdout.split("\n")[:3]
        assert "64321" in groups.split() and foo == "FOO=hello" and release.startswith("13")
        with Shepherd(in_trixie(trixie, launcher, "-i"), env=env_of(spool), cwd=spool) as sh:
            other = ssh(sh.port, "echo INSIDE", user=OTHER_USER)
    assert other.returncode == 255 and "INSIDE" not in other.stdout
    assert wait_until(lambda: "sshd %d" % monitor in auth_log_since(mark)
                      and "user '%s' is not %s, the owner of job 4711.1" % (OTHER_USER, TEST_USER)
                      in auth_log_since(mark), 10, 0.05), auth_log_since(mark)[-2000:]


def test_on_openssh_10_a_link_to_sshd_runs_the_site_s_service_which_the_launcher_closes(
        trixie, installed, spool):
    """0.2's sge-sshd (a link to sshd) on Debian 13: /etc/pam.d/sshd, no job group, another user in."""
    link = os.path.join(installed, "sshd-link")
    with host_lock():
        with Shepherd(in_trixie(trixie, link, "-i"), env=env_of(spool), cwd=spool) as sh:
            other = ssh(sh.port, "id -G; echo INSIDE", user=OTHER_USER)
    assert other.returncode == 0 and "INSIDE" in other.stdout and "64321" not in other.stdout.split()


def test_the_same_launcher_and_module_serve_openssh_9_2_here(installed, spool):
    """The other direction: the same files on this Debian 12 host (no sshd-session here)."""
    assert not os.path.exists(methods.SSHD_SESSION)
    with host_lock():
        pam.install_job_stack(installed)
        with Shepherd([os.path.join(installed, methods.JOB_SSHD_NAME), "-i"], env=env_of(spool), cwd=spool) as sh:
            proc = ssh(sh.port, "id -G")
    assert proc.returncode == 0 and "64321" in proc.stdout.split(), proc.stderr
    assert pwd.getpwnam(TEST_USER)
