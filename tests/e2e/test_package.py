"""The Debian package, built from this tree (make deb: debhelper, dh-python, lintian), installed with
apt-get, used the way README.rst says (``sgewrap config ssh --tight --apply``), and purged.

Proved: installing changes neither Grid Engine's configuration nor any PAM file; the packaged
programs are root-owned with an isolated interpreter; the man pages are where man finds them; a
tight ``qrsh`` runs through the packaged wrappers and carries its job's group; ``config
--restore`` and ``apt-get purge`` leave nothing of the package behind.
"""
import glob
import os
import re
import shutil
import stat
import subprocess

import pytest

from lib import REPO, sge
from sgewrap.admin import sgeconf

pytestmark = [pytest.mark.cluster]

PACKAGED = "/usr/lib/sgewrap"
APT_ENV = dict(os.environ, DEBIAN_FRONTEND="noninteractive")


def _pam_files():
    found = {}
    for path in sorted(glob.glob("/etc/pam.d/*")):
        with open(path, "rb") as f:
            found[path] = f.read()
    return found


def _apt(*args):
    proc = subprocess.run(["apt-get", "-y", "-q", *args], env=APT_ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc


@pytest.fixture(scope="module")
def package():
    """The built .deb (lintian errors fail the build)."""
    proc = subprocess.run(["make", "-s", "-C", REPO, "deb"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    debs = glob.glob(os.path.join(REPO, "build", "deb", "sgewrap_*_*.deb"))
    assert len(debs) == 1, debs
    return debs[0]


def test_the_package_installs_works_tight_and_purges_clean(cluster, package):
    assert subprocess.run(["dpkg", "-s", "sgewrap"], capture_output=True).returncode != 0, "already installed"
    pam_before, conf_before = _pam_files(), sge.show_global()
    _apt("install", "--no-install-recommends", package)
    try:
        files = subprocess.run(["dpkg", "-L", "sgewrap"], capture_output=True, text=True, check=True).stdout.split()
        # 1. installing changed nothing of Grid Engine or PAM
        assert _pam_files() == pam_before and sge.show_global() == conf_before
        # 2. root-owned programs, isolated interpreter, sgewrap on PATH, man pages where man looks
        for name in os.listdir(PACKAGED):
            path = os.path.join(PACKAGED, name)
            st = os.lstat(path)
            assert st.st_uid == 0, path
            if not stat.S_ISLNK(st.st_mode):          # (a link's own mode is always 0777)
                assert not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH), path
            if name == "sge-sshd":                    # the job sshd's launcher: static, no interpreter
                kind = subprocess.run(["file", path], capture_output=True, text=True).stdout
                assert "static-pie linked" in kind, kind
            elif stat.S_ISREG(st.st_mode):
                with open(path) as f:
                    assert f.readline() == "#!/usr/bin/python3 -I\n", path
        modules = [f for f in files if f.endswith("/security/pam_sgewrap.so")]
        assert len(modules) == 1 and os.stat(modules[0]).st_uid == 0, modules
        version = subprocess.run(["/usr/bin/sgewrap", "--version"], capture_output=True, text=True)
        assert version.returncode == 0 and "sgewrap" in version.stdout
        for page in ("sgewrap-wrappers", "qrsh_ssh", "sgewrap", "node_access"):
            where = subprocess.run(["man", "-w", page], capture_output=True, text=True)
            assert where.stdout.startswith("/usr/share/man/"), (page, where.stdout, where.stderr)
        # 3. README's second line: the packaged wrappers, tight, on this host
        env = dict(sge.ENV)
        applied = subprocess.run(["/usr/bin/sgewrap", "config", "ssh", "--tight", "--apply"], env=env,
                                 capture_output=True, text=True, timeout=120)
        assert applied.returncode == 0, applied.stdout + applied.stderr
        backup = re.search(r"^saved the previous global configuration to (\S+)$", applied.stdout, re.M).group(1)
        entries = sgeconf.entries("ssh", PACKAGED, tight=True)
        assert {k: sgeconf.parse(sge.show_global()).get(k) for k in sgeconf.SLOTS} == entries
        sge.restart_execd()
        sge.probe(entries)
        proc = sge.qrsh("echo gid=$(cat $SGE_JOB_SPOOL_DIR/addgrpid) groups=$(id -G | tr ' ' ,)",
                        stdin=subprocess.DEVNULL, text=True)
        found = re.search(r"gid=(\d+) groups=(\S+)", proc.stdout)
        assert proc.returncode == 0 and found and found.group(1) in found.group(2).split(","), \
            proc.stdout + proc.stderr
        # 4. back as it was: restore, then purge
        restored = subprocess.run(["/usr/bin/sgewrap", "config", "--restore", backup], env=env,
                                  capture_output=True, text=True, timeout=120)
        assert restored.returncode == 0, restored.stdout + restored.stderr
        sge.restart_execd()
        assert sge.show_global() == conf_before
    finally:     # the host exactly as before, whatever failed (other tests use its configuration)
        if sge.show_global() != conf_before:
            sge.restore(conf_before)
        for path, data in pam_before.items():
            if _pam_files().get(path) != data:
                with open(path, "wb") as f:
                    f.write(data)
        for path in set(_pam_files()) - set(pam_before):
            os.unlink(path)
        if subprocess.run(["dpkg", "-s", "sgewrap"], capture_output=True).returncode == 0:
            _apt("purge", "sgewrap")
    left = [f for f in files if os.path.lexists(f) and not os.path.isdir(f)]
    assert not left, "files of the package left after purge: %s" % left[:10]
    assert not os.path.exists(PACKAGED) and not os.path.exists("/usr/lib/python3/dist-packages/sgewrap")
    assert _pam_files() == pam_before


def test_the_package_built_on_debian_12_installs_and_runs_on_debian_13(package, tmp_path):
    """One package for both releases: the .deb built here (Debian 12: Python 3.11, glibc 2.36) installed with
    dpkg on a copy of node4's Debian 13 root (Python 3.13, glibc 2.41, PAM 1.7, plumbum 1.9): its
    dependencies hold there, its programs run under trixie's Python, the module lands in trixie's PAM
    directory, and purging leaves nothing.  (The launcher and module it carries are the ones
    test_debian13.py ties OpenSSH 10 sessions with.)"""
    root = str(tmp_path / "trixie")
    subprocess.run(["cp", "-a", "--reflink=auto", sge.NODE4_ROOT, root], check=True, timeout=300)
    shutil.copy(package, os.path.join(root, "tmp", "sgewrap.deb"))

    def inside(*argv):
        script = "mount --make-rprivate / && mount --rbind /proc %s/proc && mount --rbind /dev %s/dev && " \
                 "exec chroot %s \"$@\"" % (root, root, root)
        return subprocess.run(["unshare", "--mount", "sh", "-c", script, "sh", *argv], capture_output=True,
                              text=True, timeout=300, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    installed = inside("dpkg", "-i", "/tmp/sgewrap.deb")
    assert installed.returncode == 0, installed.stdout[-2000:] + installed.stderr[-2000:]
    assert inside("python3", "-c", "import sys; assert sys.version_info[:2] >= (3, 13)").returncode == 0
    version = inside("/usr/bin/sgewrap", "--version")
    assert version.returncode == 0 and "sgewrap" in version.stdout, version.stdout + version.stderr
    printed = inside("/usr/bin/sgewrap", "config", "ssh", "--tight")
    assert printed.returncode == 0 and "%s/sge-sshd -i" % PACKAGED in printed.stdout, printed.stdout + printed.stderr
    for program in ("qrsh_ssh", "ssh_wrapper", "node_access", "rshdwrapper"):
        helped = inside(os.path.join(PACKAGED, program), "--help")
        assert helped.returncode == 0 and "usage" in helped.stdout.lower(), (program, helped.stderr)
    listed = inside("dpkg", "-L", "sgewrap").stdout.split()
    assert "/usr/lib/x86_64-linux-gnu/security/pam_sgewrap.so" in listed
    kind = subprocess.run(["file", root + PACKAGED + "/sge-sshd"], capture_output=True, text=True).stdout
    assert "static-pie linked" in kind, kind
    purged = inside("dpkg", "--purge", "sgewrap")
    assert purged.returncode == 0, purged.stderr
    left = [f for f in listed if os.path.lexists(root + f) and not os.path.isdir(root + f)]
    assert not left, left[:10]
