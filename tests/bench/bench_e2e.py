"""make bench, part 2: end-to-end latency on the real one-host cluster (root).

For each configuration: ``qrsh -now yes true`` (median of many) and a 16-task
``qrsh -inherit`` fan-out (a PE job whose master starts 16 tasks at once;
the time of the whole qrsh).  A configuration change costs an execd restart,
so "alternating" here is by blocks: every round visits every configuration
once, in turn, and the medians are over all rounds.

``--tunnel`` goes through this host's own sshd on port 22 (as it would to a
firewalled execution host): its row against the tight row above it is the
price of the tunnel per session.

Ratios: against bare ssh (``/usr/bin/ssh`` + ``/usr/sbin/sshd -i``, no wrapper
on either side) and against the Perl ``rshd-wrapper`` Grid Engine ships
(Debian: /usr/share/gridengine/util/resources/wrappers/rshd-wrapper) with the
same bare ssh client, which is the anchor ``rshdwrapper`` must stay within 5% of.
"""
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from lib import CLUSTER_UP, REPO, host_lock, sge  # noqa: E402


@contextlib.contextmanager
def bench_host(wrappers, perl_anchor=False):
    """The host as a comparison needs it, for a while (holding the host lock): the job sshds' PAM
    service and, for the Perl anchor, its module line in /etc/pam.d/sshd; the global configuration
    and both PAM files put back after."""
    from sgewrap.admin import pam
    with host_lock():
        saved = sge.show_global()
        stack = pam.is_job_stack()
        added = pam.add_line() if perl_anchor else False
        sge.job_stack(wrappers)
        try:
            yield
        finally:
            sge.restore(saved)
            if added:
                pam.remove_line()
            if not stack:
                pam.remove_job_stack()


PERL_ANCHOR = "/usr/share/gridengine/util/resources/wrappers/rshd-wrapper"
TASKS = 16


def _anchors(wrappers):
    """The configurations every comparison has: builtin, bare ssh + sshd -i, and bare ssh + the Perl
    rshd-wrapper Grid Engine ships (when it is installed)."""
    from sgewrap.admin import sgeconf
    bare = {"rsh_command": "/usr/bin/ssh", "rsh_daemon": "/usr/sbin/sshd -i"}
    configs = {"builtin": sgeconf.entries("builtin", wrappers), "bare ssh + sshd -i": bare}
    if os.access(PERL_ANCHOR, os.X_OK):
        configs["bare ssh + Perl rshd-wrapper"] = dict(bare, rsh_daemon=PERL_ANCHOR)
    return configs, bare


def configurations(wrappers):
    from sgewrap.admin import sgeconf
    configs, bare = _anchors(wrappers)
    configs.update({
        "bare ssh + sge-sshd (tight)": dict(bare, rsh_daemon=os.path.join(wrappers, "sge-sshd") + " -i"),
        "ssh_wrapper + sshd -i": sgeconf.entries("ssh", wrappers, x11=False),
        "ssh_wrapper + sge-sshd (tight)": sgeconf.entries("ssh", wrappers, tight=True, x11=False),
        "ssh_wrapper --tunnel (plain) + sge-sshd": sgeconf.entries("ssh", wrappers, tight=True, x11=False,
                                                                   tunnel=True, tunnel_persist=0),
        "ssh_wrapper --tunnel (shared) + sge-sshd": sgeconf.entries("ssh", wrappers, tight=True, x11=False,
                                                                    tunnel=True),
    })
    return configs


def _fanout_script(tmp):
    master = os.path.join(tmp, "fanout.sh")
    with open(master, "w") as f:
        f.write("#!/bin/sh\npids=\nfor i in $(seq %d); do /usr/bin/qrsh -inherit -nostdin %s /bin/true & "
                "pids=\"$pids $!\"; done\nfail=0\nfor p in $pids; do wait $p || fail=1; done\nexit $fail\n"
                % (TASKS, sge.HOST))
    os.chmod(master, 0o755)
    return master


def _timed(argv):
    start = time.perf_counter()
    proc = sge.user_run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=300)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(argv), proc.returncode, proc.stderr.decode()))
    return took


def _test_install(root="/opt/sgewrap-test"):
    """The wrappers installed as the tests install them (root-owned, readable by the test user)."""
    subprocess.run(["make", "-s", "-C", REPO, "install", "SGE_ROOT=" + root], check=True, stdout=subprocess.DEVNULL)
    return os.path.join(root, "util", "resources", "wrappers")


def end_to_end(rounds=None, per_round=None, wrappers=None):
    rounds = rounds or int(os.environ.get("BENCH_E2E_ROUNDS", "3"))
    per_round = per_round or int(os.environ.get("BENCH_E2E_RUNS", "10"))
    subprocess.run([CLUSTER_UP], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wrappers = wrappers or _test_install()
    configs = configurations(wrappers)
    tmp = tempfile.mkdtemp(prefix="sgewrap-bench-e2e.")
    os.chmod(tmp, 0o755)
    master = _fanout_script(tmp)
    qrsh = ["/usr/bin/qrsh", "-now", "yes", "-q", sge.QUEUE]
    latency = {label: [] for label in configs}
    fanout = {label: [] for label in configs}
    try:
        with bench_host(wrappers, perl_anchor=True):
            for r in range(rounds):
                for label, entries in configs.items():
                    print("  round %d/%d: %s" % (r + 1, rounds, label), file=sys.stderr)
                    sge.apply(entries)
                    _timed(qrsh + ["true"])                      # warm-up, not counted
                    latency[label] += [_timed(qrsh + ["true"]) for _ in range(per_round)]
                    fanout[label].append(_timed(qrsh + ["-pe", sge.PE, str(TASKS + 1), master]))
    finally:
        subprocess.run(["rm", "-rf", tmp])
    rows = []
    bare = statistics.median(latency["bare ssh + sshd -i"])
    perl = statistics.median(latency.get("bare ssh + Perl rshd-wrapper", [0])) or None
    for label in configs:
        med = statistics.median(latency[label])
        rows.append(("qrsh true", label, med * 1000, med / bare, med / perl if perl else None))
    bare_f = statistics.median(fanout["bare ssh + sshd -i"])
    perl_f = statistics.median(fanout.get("bare ssh + Perl rshd-wrapper", [0])) or None
    for label in configs:
        med = statistics.median(fanout[label])
        rows.append(("16x -inherit", label, med * 1000, med / bare_f, med / perl_f if perl_f else None))
    return rows


#: MPI start time: (row label, sge_conf of `sgewrap config`, launcher id of tests/lib/mpijobs.LAUNCHERS)
MPI_RANKS = 16            # 2 x 8: open.pe's $round_robin over vm and node3
MPI_ROWS = (
    ("Open MPI, builtin", "builtin", "openmpi"),
    ("Open MPI, ssh_wrapper + sge-sshd", "ssh", "openmpi"),
    ("Open MPI, qrsh_ssh + sge-sshd", "ssh", "openmpi-qrsh_ssh"),
    ("MPICH, builtin", "builtin", "mpich"),
    ("MPICH, ssh_wrapper + sge-sshd", "ssh", "mpich"),
    ("MPICH, qrsh_ssh + sge-sshd", "ssh", "mpich-qrsh_ssh"),
)


def mpi_start(rounds=None, wrappers=None):
    """Launch to first rank output (ms) of a 2 x 8 rank MPI job per row; medians over ``rounds``,
    rows of one configuration alternating within a round.  Ratio: against the same MPI's builtin."""
    from lib import mpijobs
    from sgewrap.admin import sgeconf
    rounds = rounds or int(os.environ.get("BENCH_MPI_ROUNDS", "3"))
    wrappers = wrappers or _test_install()
    subprocess.run([CLUSTER_UP], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tmp = tempfile.mkdtemp(prefix="sgewrap-bench-mpi.")
    os.chmod(tmp, 0o755)
    ring = mpijobs.compile_ring(tmp)
    scripts = {}
    for label, _, launcher in MPI_ROWS:
        impl, line = mpijobs.LAUNCHERS[launcher]
        path = os.path.join(tmp, "%s.sh" % launcher)
        with open(path, "w") as f:
            f.write(mpijobs.script(line, wrappers, program=ring[impl] + " 0"))
        os.chmod(path, 0o755)
        scripts[label] = path
    qrsh = ["/usr/bin/qrsh", "-now", "yes", "-q", "%s,%s" % (sge.QUEUE, sge.OPEN_QUEUE), "-masterq",
            "%s@%s" % (sge.QUEUE, sge.HOST), "-pe", sge.OPEN_PE, str(MPI_RANKS)]
    times = {label: [] for label, _, _ in MPI_ROWS}
    try:
        with bench_host(wrappers, perl_anchor=False):
            for r in range(rounds):
                for method in ("builtin", "ssh"):
                    print("  MPI round %d/%d: %s" % (r + 1, rounds, method), file=sys.stderr)
                    sge.apply(sgeconf.entries(method, wrappers, tight=method == "ssh",
                                              x11=False if method == "ssh" else None))
                    for label, conf, _ in MPI_ROWS:
                        if conf != method:
                            continue
                        proc = sge.user_run(qrsh + [scripts[label]], stdin=subprocess.DEVNULL, capture_output=True,
                                            text=True, timeout=300)
                        if proc.returncode != 0 or "launcher=0" not in proc.stdout:
                            raise RuntimeError("%s failed: %s" % (label, (proc.stdout + proc.stderr)[-400:]))
                        times[label].append(mpijobs.start_time(proc.stdout))
    finally:
        subprocess.run(["rm", "-rf", tmp])
    rows = []
    for label, _, launcher in MPI_ROWS:
        base = statistics.median(times[label.split(",")[0] + ", builtin"])
        med = statistics.median(times[label])
        rows.append(("MPI start 2x8", label, med * 1000, med / base, None))
    return rows


#: fan-out at scale: tasks over vm and node3, each configuration (README: Scale)
FAN_OUT_COUNTS = (16, 64, 128)


def fan_out_configurations(wrappers):
    from sgewrap.admin import sgeconf
    configs, _ = _anchors(wrappers)
    configs.update({
        "ssh_wrapper + rshdwrapper (tight)": dict(sgeconf.entries("ssh", wrappers, tight=True, x11=False),
                                                  rsh_daemon=os.path.join(wrappers, "rshdwrapper")),
        "ssh_wrapper + sge-sshd (tight)": sgeconf.entries("ssh", wrappers, tight=True, x11=False),
        "--tunnel, plain": sgeconf.entries("ssh", wrappers, tight=True, x11=False, tunnel=True, tunnel_persist=0),
        "--tunnel, shared": sgeconf.entries("ssh", wrappers, tight=True, x11=False, tunnel=True),
    })
    return configs


def fan_out_curve(rounds=None, wrappers=None, counts=FAN_OUT_COUNTS):
    """Seconds from the master's first qrsh -inherit to the last task's exit (the master script
    times itself), for each configuration and task count; rows ("fan-out N", label, ms, ratio to
    bare ssh, ratio to the Perl anchor)."""
    rounds = rounds or int(os.environ.get("BENCH_FANOUT_ROUNDS", "1"))
    wrappers = wrappers or _test_install()
    configs = fan_out_configurations(wrappers)
    times = {(label, n): [] for label in configs for n in counts}
    failed = []
    with bench_host(wrappers, perl_anchor=True):
        for r in range(rounds):
            for label, entries in configs.items():
                print("  fan-out round %d/%d: %s" % (r + 1, rounds, label), file=sys.stderr)
                sge.apply(entries)
                for n in counts:
                    sge.wait_queues_up(sge.QUEUE, sge.OPEN_QUEUE)
                    sge.wait_no_user_jobs()
                    proc, tasks = sge.fan_out(n, (sge.HOST, sge.NODE3), "-pe", sge.OPEN_PE, str(n + 2),
                                              "-masterq", "%s@%s" % (sge.QUEUE, sge.HOST),
                                              queue="%s,%s" % (sge.QUEUE, sge.OPEN_QUEUE), timeout=900)
                    if proc.returncode != 0 or len(tasks) != n:    # reported, not measured; the run goes on
                        print("  fan-out %s, %d tasks: %d ran, exit %d: %s" % (
                            label, n, len(tasks), proc.returncode, proc.stderr.strip()[-200:]), file=sys.stderr)
                        failed.append((label, n))
                        continue
                    times[(label, n)].append(sge.fan_out_seconds(proc.stdout))
    rows = []
    median = lambda key: statistics.median(times[key]) if times.get(key) else None  # noqa: E731
    for n in counts:
        bare, perl = median(("bare ssh + sshd -i", n)), median(("bare ssh + Perl rshd-wrapper", n))
        for label in configs:
            med = median((label, n))
            if med is None:
                continue           # every run of it failed (printed above)
            rows.append(("fan-out %d" % n, label, med * 1000, med / bare if bare else None,
                         med / perl if perl else None))
    if failed:
        print("  fan-out runs that failed (not in the figures): %s"
              % ", ".join("%s x%d" % f for f in failed), file=sys.stderr)
    return rows
