"""Parallel jobs for tests/e2e/test_mpi.py and the bench: the MPI ring program, the launchers and
their job scripts.  The settings through qrsh_ssh are qrshssh.TOOLS, what ``qrsh_ssh --help`` and
README.rst give administrators; the ones through Grid Engine's own integration are here.
"""
import os
import re
import subprocess

from sgewrap import qrshssh
from sgewrap.methods import JOB_SSH_DIR

from . import DATA

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
