"""128 concurrent tight sessions: a parallel job whose master starts 64, then 128 ``qrsh -inherit``
at once, half to this host and half to node3, through ssh_wrapper and the job sshd.

Every task runs, exits 0 and carries its own task's group; no session is refused (the job sshd is
started per session by the shepherd: sshd's MaxStartups does not apply to it); afterwards no setup
file, no process and no spool directory of the job is left.  What a host needs for this is in
README.rst (Scale) and ``sgewrap check``: a gid_range with an id for every task that may run on it
at once, and enough slots.
"""
import collections

import pytest

from lib import sge, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.slot("rsh"), pytest.mark.methods("ssh-tight")]


@pytest.mark.parametrize("tasks", [64, 128])
def test_a_master_starts_many_tight_tasks_at_once_on_two_hosts(method, tasks):
    setup_before = sge.setup_files()
    sge.wait_queues_up(sge.QUEUE, sge.OPEN_QUEUE)
    sge.wait_no_user_jobs()                  # the slots of the jobs before this one are free
    proc, found = sge.fan_out(tasks, (sge.HOST, sge.NODE3), "-pe", sge.OPEN_PE, str(tasks + 2), "-masterq",
                              "%s@%s" % (sge.QUEUE, sge.HOST), queue="%s,%s" % (sge.QUEUE, sge.OPEN_QUEUE),
                              timeout=600)
    assert proc.returncode == 0 and "master on %s failed=0" % sge.HOST in proc.stdout, \
        proc.stdout[-2000:] + proc.stderr[-2000:]
    assert sorted(t.number for t in found) == list(range(1, tasks + 1))
    per_host = collections.Counter(t.host for t in found)
    assert per_host == {sge.HOST: tasks // 2, sge.NODE3: tasks // 2}, per_host
    assert all(t.gid in t.groups for t in found), "every task carries its own group"
    for host in per_host:       # a group id names one task of a host at a time
        gids = [t.gid for t in found if t.host == host]
        assert len(set(gids)) == len(gids), host
    assert "refused" not in proc.stderr and "Connection closed" not in proc.stderr, proc.stderr[-2000:]
    assert min(t.pid for t in found) > 150000
    # nothing left once the job's sessions have closed: setup files, processes, the job
    wait_until(lambda: not (sge.setup_files() - setup_before or _left() or sge.user_jobs()), 60, 0.5)
    assert not sge.setup_files() - setup_before, "setup files left"
    assert not _left(), _left()
    assert not sge.user_jobs(), sge.user_jobs()


def _left():
    return sge.processes_of(sge.TEST_USER, sge.SSHD_PROCESSES + ("task.sh", "qrsh", "ssh", "sleep"))
