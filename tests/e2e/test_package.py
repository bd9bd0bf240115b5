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
