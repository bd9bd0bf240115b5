"""Parallel jobs for tests/e2e/test_mpi.py, tests/e2e/test_qrsh_ssh_tools.py and the bench: the MPI
ring program, the launchers and their job scripts, and what a test of a job over vm and node3
(open.pe) checks.  The settings through qrsh_ssh are qrshssh.TOOLS, what ``qrsh_ssh --help`` and
README.rst give administrators; the ones through Grid Engine's own integration are here.
"""
import os
import re
import subprocess

from sgewrap import qrshssh
from sgewrap.methods import JOB_SSH_DIR

from . import DATA, sge, wait_until

#: a parallel job of open.pe: its master here (vm), its other slots on node3
QUEUES = ("-q", "%s,%s" % (sge.QUEUE, sge.OPEN_QUEUE), "-masterq", "%s@%s" % (sge.QUEUE, sge.HOST))
#: the MPI daemons and sshd a job leaves behind if its tasks escaped it
JOB_PROCESSES = ("orted", "hydra_pmi_proxy", "mpirun.openmpi", "mpiexec.hydra", "ring.openmpi", "ring.mpich",
                 "pdsh", "parallel", "perl", "sleep") + sge.SSHD_PROCESSES
#: what pdsh and GNU parallel run on each host: the task's group and this session's groups
REPORT = "echo TASK $(hostname) $(cat $SGE_JOB_SPOOL_DIR/addgrpid) $(id -G | tr \\  ,)"


def gid_range(hosts=(sge.NODE2, sge.NODE3), everywhere=True):
    """Job group ids: the nodes' own (their local configurations: they share this host's kernel) and,
    ``everywhere``, the global gid_range (this host's)."""
    ids = set()
    for conf in ([sge.show_global()] if everywhere else []) + [sge.qconf("-sconf", h, check=False) for h in hosts]:
        found = re.search(r"^gid_range\s+(\d+)-(\d+)", conf, re.M)
        if found:
            ids.update(range(int(found.group(1)), int(found.group(2)) + 1))
    return ids


def job_number(out):
    return re.search(r"^JOB (\d+)$", out, re.M).group(1)


def qdel_leaves_nothing(job, tasks, names=JOB_PROCESSES):
    """qdel ``job`` (as its owner): then no process carries a group of its ``tasks`` and no rank,
    MPI daemon, tool or sshd of the test user (``names``) is left, on either host."""
    sge.user_run(["/usr/bin/qdel", job], capture_output=True, check=True)
    assert sge.delete(job), "job %s still known after qdel" % job
    wait_until(lambda: not (sge.processes_in_groups(tasks) or sge.processes_of(sge.TEST_USER, names)), 30, 0.2)
    assert not sge.processes_in_groups(tasks), "processes of the deleted job still run"
    assert not sge.processes_of(sge.TEST_USER, names), "ranks, daemons, tools or sshd left"


RING_C = os.path.join(DATA, "ring.c")
MPICC = {"openmpi": "mpicc.openmpi", "mpich": "mpicc.mpich"}


def _tool(key, launcher):
    """qrshssh.TOOLS' line for ``key`` with the implementation's own launcher name (both MPIs are
    installed here; the generic name is whichever the alternatives system chose)."""
    line = qrshssh.TOOLS[key][2]
    return line.replace(line.split()[0], launcher, 1).replace("{command}", "{program}")


#: launcher id -> (MPI implementation, the job script's line; {program} is the ranks' command)
LAUNCHERS = {
    "openmpi": ("openmpi", "mpirun.openmpi {program}"),        # its gridengine support: qrsh -inherit
    "mpich": ("mpich", "mpiexec.hydra -launcher sge -n $NSLOTS {program}"),
    "openmpi-qrsh_ssh": ("openmpi", _tool("openmpi", "mpirun.openmpi")),
    "mpich-qrsh_ssh": ("mpich", _tool("mpich", "mpiexec.hydra")),
}

SCRIPT = """#!/bin/sh
hosts={hosts}
echo "LAUNCH $(date +%s.%N)"
{line}
echo "launcher=$?"
"""


def compile_ring(directory):
    """{implementation: ring.c built with its mpicc in ``directory``}."""
    built = {}
    for impl, mpicc in MPICC.items():
        out = os.path.join(directory, "ring." + impl)
        subprocess.run([mpicc, "-O", "-o", out, RING_C], check=True)
        built[impl] = out
    return built


def script(line, wrappers, **fields):
    """A job script running ``line`` ({qrsh_ssh}, {job_ssh}, {hosts} and ``fields`` filled in)."""
    fields = dict(fields, qrsh_ssh=os.path.join(wrappers, "qrsh_ssh"), job_ssh=os.path.join(wrappers, JOB_SSH_DIR),
                  hosts='"$hosts"')
    return SCRIPT.format(hosts=qrshssh.HOSTS_WORD, line=line.format(**fields))


def ranks_of(text):
    """The RANK lines of ring.c's output, as dicts."""
    found = re.findall(r"^RANK (\d+)/(\d+) host=(\S+) pid=\d+ groups=(\S+) allreduce=(\d+) t=([\d.]+)$", text, re.M)
    return [dict(rank=int(r), size=int(n), host=h, groups={int(g) for g in gs.split(",")}, allreduce=int(a),
                 t=float(t)) for r, n, h, gs, a, t in found]


def start_time(text):
    """Seconds from the job script's launch line to the first rank's output (ring.c's RANK line)."""
    launch = float(re.search(r"^LAUNCH ([\d.]+)$", text, re.M).group(1))
    return min(r["t"] for r in ranks_of(text)) - launch
