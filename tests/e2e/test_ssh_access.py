"""node_access on the real cluster: ssh to node2 only while the user has a job there.

fw.q (node2's queue) gets node_access as its prolog and epilog, run as root by
node2's shepherd; /etc/pam.d/sshd gets the account rules.  node2's own sshd
(port 22, what users would ssh to for debugging) then refuses the test user
until a job of theirs runs on node2, lets them in while one does, keeps
letting them in while the second of two jobs still runs, and refuses them
again when the last one ends.
"""
import os
import subprocess

import pytest

from lib import sge, wait_until
from sgewrap.rootside import nodeaccess
from sgewrap.admin import pam

pytestmark = [pytest.mark.cluster]
STATE = nodeaccess.DEFAULT_DIR
USERS = os.path.join(STATE, nodeaccess.USERS)


@pytest.fixture
def restricted(cluster, tmp_path):
    """``sgewrap node-access --queue fw.q --apply``: fw.q runs node_access as prolog and epilog, the
    PAM rules are in place; ``sgewrap node-access --restore`` undoes both afterwards."""
    for name in (nodeaccess.USERS, nodeaccess.JOBS):
        try:
            os.unlink(os.path.join(STATE, name))
        except FileNotFoundError:
            pass
    before = sge.qconf("-sq", sge.FW_QUEUE)
    backups = str(tmp_path / "backups")
    proc = sge.sgewrap(cluster, "node-access", "--queue", sge.FW_QUEUE, "--apply", "--backup-dir", backups)
    try:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert pam.has_node_access()
        yield cluster
    finally:
        for saved in sorted(os.listdir(backups)) if os.path.isdir(backups) else []:
            proc = sge.sgewrap(cluster, "node-access", "--restore", os.path.join(backups, saved))
            assert proc.returncode == 0, proc.stdout + proc.stderr
        pam.remove_node_access()
        sge.clean_queue()
    assert sge.qconf("-sq", sge.FW_QUEUE) == before and not pam.has_node_access()


def ssh_node2():
    """``ssh node2 hostname`` as the test user: (exit status, output)."""
    proc = sge.user_run(["/usr/bin/ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=20", sge.NODE2, "hostname"],
                        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    return proc.returncode, proc.stdout + proc.stderr


def allowed():
    try:
        return sge.TEST_USER in open(USERS).read().split()
    except FileNotFoundError:
        return False


def submit(name):
    proc = sge.user_run(["/usr/bin/qsub", "-q", sge.FW_QUEUE, "-N", name, "-b", "y", "-o", "/dev/null",
                         "-j", "y", "/bin/sleep", "600"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_ssh_to_a_node_only_while_a_job_of_the_user_runs_there(restricted):
    proc = sge.sgewrap(restricted, "check")
    assert proc.returncode == 0 and "node_access" not in proc.stdout, proc.stdout   # nothing half set up
    code, out = ssh_node2()
    assert code == 255 and sge.NODE2 not in out.split(), "no job on node2: ssh must be refused (%s)" % out

    submit("access1")
    assert wait_until(allowed, 60, 0.2), "the prolog of the first job never added the user"
    assert ssh_node2() == (0, sge.NODE2 + "\n")

    submit("access2")
    assert wait_until(lambda: open(os.path.join(STATE, nodeaccess.JOBS)).read().count(" %s " % sge.TEST_USER) == 2,
                      60, 0.2), "the prolog of the second job never ran"
    sge.user_run(["/usr/bin/qdel", "access1"], capture_output=True, check=True)
    assert sge.job_gone("access1")
    assert allowed(), "the first epilog must not lock out the owner of the second job"
    assert ssh_node2() == (0, sge.NODE2 + "\n")

    sge.user_run(["/usr/bin/qdel", "access2"], capture_output=True, check=True)
    assert sge.job_gone("access2")
    assert wait_until(lambda: not allowed(), 60, 0.2), "the last epilog did not remove the user"
    code, out = ssh_node2()
    assert code == 255 and sge.NODE2 not in out.split(), out
