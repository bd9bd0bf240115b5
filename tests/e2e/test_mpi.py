"""Real parallel jobs across two hosts that reach each other (vm and node3, open.pe) in tight ssh jobs.

Open MPI and MPICH through their own Grid Engine support (``mpirun.openmpi`` calls ``qrsh -inherit
-nostdin -V``; ``mpiexec.hydra -launcher sge``) and through qrsh_ssh, pdsh and GNU parallel through
qrsh_ssh, each with the settings ``qrsh_ssh --help`` and README.rst give (qrshssh.TOOLS).  The MPI
program (tests/data/ring.c, compiled here with each implementation's mpicc) passes a token around
a ring and takes an allreduce over all ranks.  Proved for each launcher: the ranks communicate,
they run on both hosts, every rank (every remote command) carries the additional group id of a
task of its job on its own host, ``qacct`` counts the CPU of the slave tasks, and after ``qdel``
no rank, daemon or sshd of the job is left on either host.
"""
import os
import re
import shutil
import subprocess
import tempfile

import pytest

from lib import mpijobs, sge, wait_until
from lib.mpijobs import LAUNCHERS, QUEUES, REPORT, gid_range, job_number, qdel_leaves_nothing, ranks_of, script
from sgewrap import qrshssh

pytestmark = [pytest.mark.cluster, pytest.mark.slot("rsh"), pytest.mark.methods("ssh-tight")]


@pytest.fixture(scope="module")
def ring():
    """{implementation: path of ring.c compiled with its mpicc}, where the test user can run it."""
    scratch = tempfile.mkdtemp(prefix="sgewrap-mpi.")
    try:
        os.chmod(scratch, 0o755)
        yield mpijobs.compile_ring(scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def cpu_by_host(job, timeout=90):
    """{host: CPU seconds} over the job's accounting records (master and every qrsh -inherit task)."""
    cpu = {}

    def node3_counted():
        out = subprocess.run(["/usr/bin/qacct", "-j", job], env=sge.ENV, capture_output=True, text=True).stdout
        records = [r for r in out.split("=" * 62) if r.strip()]
        cpu.clear()
        for r in records:
            host, seconds = re.search(r"^hostname\s+(\S+)", r, re.M), re.search(r"^cpu\s+([\d.]+)", r, re.M)
            if host and seconds:
                cpu[host.group(1)] = cpu.get(host.group(1), 0) + float(seconds.group(1))
        return sge.NODE3 in cpu
    wait_until(node3_counted, timeout, 1)            # qmaster writes accounting every flush_time
    return cpu


@pytest.mark.parametrize("ranks", [16, 32])
@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_mpi_ranks_communicate_on_two_hosts_each_in_a_task_of_the_job(method, cluster, ring, launcher, ranks):
    impl, line = LAUNCHERS[launcher]
    burn = 0.25       # CPU seconds per rank, for qacct
    text = script("echo JOB $JOB_ID\n" + line, cluster, program="%s %s" % (ring[impl], burn))
    with sge.user_script(text) as path:
        proc = sge.qrsh("-pe", sge.OPEN_PE, str(ranks), *QUEUES[2:], path, queue=QUEUES[1],
                        stdin=subprocess.DEVNULL, text=True, timeout=300)
    assert proc.returncode == 0 and "launcher=0" in proc.stdout, proc.stdout + proc.stderr
    found = ranks_of(proc.stdout)
    total = ranks * (ranks - 1) // 2
    assert sorted(r["rank"] for r in found) == list(range(ranks)), proc.stdout
    assert all(r["size"] == ranks and r["allreduce"] == total for r in found), proc.stdout
    assert "RING %d" % total in proc.stdout, "the token went round the ring"
    hosts = {h: sum(r["host"] == h for r in found) for h in (sge.HOST, sge.NODE3)}
    assert hosts == {sge.HOST: ranks // 2, sge.NODE3: ranks // 2}, hosts      # $round_robin
    job_gids = gid_range()
    assert all(len([g for g in r["groups"] if g in job_gids]) == 1 for r in found), \
        "every rank carries one additional group id of the job: %s" % proc.stdout
    remote = {g for r in found if r["host"] == sge.NODE3 for g in r["groups"] if g in job_gids}
    local = {g for r in found if r["host"] == sge.HOST for g in r["groups"] if g in job_gids}
    assert remote and not remote & local, "node3's ranks are in node3's tasks, not the master's"
    cpu = cpu_by_host(job_number(proc.stdout))
    assert cpu.get(sge.NODE3, 0) >= ranks // 2 * burn * 0.6, "qacct counts the slave tasks' CPU: %r" % cpu


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_qdel_of_a_running_mpi_job_leaves_nothing_on_either_host(method, cluster, ring, launcher):
    impl, line = LAUNCHERS[launcher]
    ranks = 16
    text = script(line, cluster, program="%s -1" % ring[impl])        # -1: hold after communicating
    with sge.batch_job(text, "-pe", sge.OPEN_PE, str(ranks), *QUEUES) as (job, out):
        sge.wait_for_lines(out, r"^RANK ", ranks)
        tasks = sge.task_gids(job)
        assert sge.NODE3 in tasks.values(), tasks
        live = {p: cmd for p, cmd in sge.processes_in_groups(tasks).items() if os.path.basename(
            cmd.split(" ")[0]) == os.path.basename(ring[impl])}
        assert len(live) == ranks, "every rank carries a task's group: %r" % live
        for pid in live:      # ... the group of a task on the rank's own host
            assert {tasks[g] for g in sge.proc_groups(pid) if g in tasks} == {sge.host_of(pid)}, pid
        qdel_leaves_nothing(job, tasks)


@pytest.mark.parametrize("tool", ["pdsh", "parallel"])
def test_ssh_only_tools_start_their_commands_as_tasks_through_qrsh_ssh(method, cluster, tool):
    line = qrshssh.TOOLS[tool][2]
    text = script(line, cluster, command="'%s'" % REPORT)
    with sge.user_script(text) as path:
        proc = sge.qrsh("-pe", sge.OPEN_PE, "4", *QUEUES[2:], path, queue=QUEUES[1],
                        stdin=subprocess.DEVNULL, text=True, timeout=300)
    assert proc.returncode == 0 and "launcher=0" in proc.stdout, proc.stdout + proc.stderr
    found = re.findall(r"TASK (\S+) (\d+) (\S+)$", proc.stdout, re.M)
    assert sorted(h for h, _, _ in found) == sorted([sge.HOST, sge.NODE3]), proc.stdout
    assert all(gid in groups.split(",") for _, gid, groups in found), proc.stdout
    assert len({gid for _, gid, _ in found}) == 2, "each command is a task of its own"


@pytest.mark.parametrize("tool", ["pdsh", "parallel"])
def test_qdel_of_a_job_running_an_ssh_only_tool_leaves_nothing(method, cluster, tool):
    line = qrshssh.TOOLS[tool][2]
    text = script(line, cluster, command="'exec sleep 600'")
    with sge.batch_job(text, "-pe", sge.OPEN_PE, "4", *QUEUES) as (job, _):
        tasks, sleeps = {}, []

        def one_on_each_host():
            nonlocal tasks, sleeps
            tasks = sge.task_gids(job)
            sleeps = [p for p in sge.processes_of(sge.TEST_USER, ("sleep",)) if sge.proc_groups(p) & set(tasks)]
            return {sge.host_of(p) for p in sleeps} == {sge.HOST, sge.NODE3}
        # 120 s: parallel holds a command's output until it ends
        assert wait_until(one_on_each_host, 120, 0.3), "no remote command in a task on each host: %r" % sleeps
        qdel_leaves_nothing(job, tasks)
