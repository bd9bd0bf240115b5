"""make bench: what a wrapper costs, as medians and ratios from one run.

Part 1, start-to-exec (no root needed beyond an installed copy): each entry
point run with SGE's exact words and ``--client=/bin/true`` (so the exec'd
program costs nothing), against ``python3 -I -c pass`` and the shipped
3-line sh ``qlogin_wrapper`` (exec'ing /bin/true likewise).  Repetitions
alternate between the commands so that drift hits all of them alike.

Part 2, end to end (root, real one-host Grid Engine): ``qrsh true`` per
method and a 16-task ``qrsh -inherit`` fan-out per method; see
tests/bench/bench_e2e.py.  Skipped with a note when not root.

Writes build/bench/bench.csv and, with matplotlib (``pip install .[bench]``),
build/bench/bench.png.  Benchmarks are not tests: nothing fails on a time.
"""
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(REPO, "build", "bench")
SHIPPED_QLOGIN = "#!/bin/sh\nHOST=$1\nPORT=$2\nexec /bin/true -X -p $PORT $HOST\n"
STARTER = "'/usr/lib/gridengine/utilbin/lx-amd64/qrsh_starter'"
JOBDIR = "'/var/spool/gridengine/execd/vm/active_jobs/1.1'"


def installed_wrappers():
    """An installed copy (make install into a scratch SGE_ROOT), as an admin would have it."""
    root = os.environ.get("BENCH_SGE_ROOT") or os.path.join(tempfile.gettempdir(), "sgewrap-bench")
    subprocess.run(["make", "-s", "-C", REPO, "install", "SGE_ROOT=" + root], check=True,
                   stdout=subprocess.DEVNULL)
    return os.path.join(root, "util", "resources", "wrappers")


def alternate(commands, rounds):
    """{label: [seconds...]} running each command once per round, in turn."""
    times = {label: [] for label in commands}
    devnull = subprocess.DEVNULL
    for _ in range(rounds):
        for label, argv in commands.items():
            start = time.perf_counter()
            rc = subprocess.run(argv, stdin=devnull, stdout=devnull, stderr=devnull).returncode
            times[label].append(time.perf_counter() - start)
            if rc != 0:
                raise SystemExit("bench: %s exited %d: %s" % (label, rc, argv))
    return times


def start_to_exec(rounds=200):
    w = installed_wrappers()
    tmp = tempfile.mkdtemp(prefix="sgewrap-bench-")
    shipped = os.path.join(tmp, "qlogin_wrapper.sh")
    with open(shipped, "w") as f:
        f.write(SHIPPED_QLOGIN)
    os.chmod(shipped, 0o755)
    true = "--client=/bin/true"
    commands = {
        "python3 -I -c pass": ["/usr/bin/python3", "-I", "-c", "pass"],
        "shipped sh qlogin_wrapper": [shipped, "vm", "4711"],
        "qlogin_wrapper": [os.path.join(w, "qlogin_wrapper"), true, "vm", "4711"],
        "ssh_wrapper (rsh_command)": [os.path.join(w, "ssh_wrapper"), true, "-n", "-p", "4711", "vm", "exec",
                                      STARTER, JOBDIR, "noshell"],
        "ssh_wrapper (rlogin_command)": [os.path.join(w, "ssh_wrapper"), true, "-p", "4711", "vm"],
        "telnet_adapter": [os.path.join(w, "telnet_adapter"), true, "vm", "4711"],
        "rlogin_adapter": [os.path.join(w, "rlogin_adapter"), true, "-p", "4711", "vm"],
        "rsh_adapter": [os.path.join(w, "rsh_adapter"), true, "-p", "4711", "vm", "exec", STARTER, JOBDIR],
    }
    rshd = os.path.join(w, "rshdwrapper")
    if os.path.exists(rshd):
        commands["rshdwrapper (exec /bin/true)"] = [rshd, "/bin/true"]
    times = alternate(commands, rounds)
    base = statistics.median(times["python3 -I -c pass"])
    sh = statistics.median(times["shipped sh qlogin_wrapper"])
    rows = []
    for label, samples in times.items():
        med = statistics.median(samples)
        rows.append(("start-to-exec", label, med * 1000, med / base, med / sh))
    return rows


def print_table(rows, title, second="vs sh"):
    print(title)
    print("  %-16s %-38s %10s %10s %10s" % ("part", "what", "median", "ratio", second))
    for part, label, ms, r1, r2 in rows:
        ratios = ["%.2fx" % r if r else "" for r in (r1, r2)]
        print("  %-16s %-38s %10.2f %10s %10s" % (part, label, ms, *ratios))


def write_outputs(rows):
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "bench.csv"), "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["part", "what", "median_ms_or_mib", "ratio_to_baseline", "ratio_to_second_baseline"])
        for row in rows:
            out.writerow([row[0], row[1], "%.3f" % row[2]] + ["%.3f" % r if r else "" for r in row[3:]])
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(no matplotlib: pip install .[bench] for build/bench/bench.png)")
        return
    curve = [r for r in rows if r[0].startswith("fan-out ")]
    rows = [r for r in rows if not r[0].startswith("fan-out ")]
    parts = sorted({r[0] for r in rows}, key=[r[0] for r in rows].index)
    heights = [1.2 + 0.32 * len([r for r in rows if r[0] == p]) for p in parts] + ([4.5] if curve else [])
    fig, axes = plt.subplots(len(heights), 1, figsize=(10, sum(heights) + 1), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    if curve:      # the curve a user wants to see: fan-out time against task count, one line per configuration
        ax = axes[-1, 0]
        counts = sorted({int(r[0].split()[1]) for r in curve})
        for label in sorted({r[1] for r in curve}, key=[r[1] for r in curve].index):
            points = [(n, r[2] / 1000) for n in counts for r in curve if r[1] == label and r[0] == "fan-out %d" % n]
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
        ax.set_xticks(counts)
        ax.set_xlabel("qrsh -inherit tasks started at once (half on each of two hosts)")
        ax.set_ylabel("seconds, first start to last exit")
        ax.set_title("fan-out: time against task count (median)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    for ax, part in zip(axes[:len(parts), 0], parts):
        mine = [r for r in rows if r[0] == part]
        ax.barh([r[1] for r in mine][::-1], [r[2] for r in mine][::-1], color="#4a7ab5")
        ax.set_title(part)
        ax.set_xlabel("median MiB per open session" if part.startswith(("session", "wrapper")) else "median ms")
        ax.tick_params(axis="y", labelsize=8)
        for y, r in enumerate(mine[::-1]):
            ax.text(r[2], y, " %.1f" % r[2], va="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(OUT, "bench.png"), dpi=110)


def main():
    rounds = int(os.environ.get("BENCH_ROUNDS", "200"))
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    machine = "%s, %d cores, Python %s" % (os.uname().machine, os.cpu_count(), sys.version.split()[0])
    rows = start_to_exec(rounds)
    print_table(rows, "start-to-exec, %d alternating rounds, %s, %s (ratio: vs python3 -I -c pass)"
                % (rounds, stamp, machine))
    e2e = []
    if os.geteuid() == 0 and os.environ.get("BENCH_E2E", "1") == "1":
        try:
            from bench_e2e import end_to_end
        except ImportError as err:
            print("(end-to-end part unavailable: %s)" % err)
        else:
            from bench_daemon import adopt_cost, daemon_side
            daemon = daemon_side(wrappers=installed_wrappers())
            daemon += adopt_cost(installed_wrappers())
            print_table(daemon, "\ndaemon side per session, stand-in shepherd, real sshd + PAM (time to banner in ms, "
                                "memory in MiB; ratio: vs Perl rshd-wrapper)", second="vs sshd -i")
            e2e = daemon + end_to_end()
            print_table(e2e[len(daemon):], "\nend to end on the one-host cluster (ratio: vs bare ssh)",
                        second="vs Perl")
            from bench_e2e import mpi_start
            mpi = mpi_start()
            print_table(mpi, "\nMPI job start, launch to first rank output, 2 x 8 ranks over vm and node3 "
                             "(ratio: vs the same MPI under builtin)", second="")
            e2e += mpi
            from bench_e2e import fan_out_curve
            fan = fan_out_curve()
            print_table(fan, "\nfan-out over vm and node3: the master's first qrsh -inherit to the last task's exit "
                             "(ratio: vs bare ssh)", second="vs Perl")
            e2e += fan
    else:
        print("\n(end-to-end part needs root and the test cluster: sudo make bench)")
    write_outputs(rows + e2e)
    print("\nwrote %s/bench.csv%s" % (OUT, " and bench.png" if os.path.exists(os.path.join(OUT, "bench.png")) else ""))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("bench: interrupted")
    except SystemExit:
        raise
    except Exception as err:      # one line, never a traceback (the cause is in the message)
        sys.exit("bench: error: %s: %s" % (type(err).__name__, str(err).strip().splitlines()[-1] if str(err).strip()
                                           else "(no message)"))
