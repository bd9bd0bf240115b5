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
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import sge  # noqa: E402
from support import host_lock  # noqa: E402

PERL_ANCHOR = "/usr/share/gridengine/util/resources/wrappers/rshd-wrapper"
TASKS = 16


def configurations(wrappers):
    from sgewrap import sgeconf
    bare = {"rsh_command": "/usr/bin/ssh", "rsh_daemon": "/usr/sbin/sshd -i"}
    configs = {
        "builtin": sgeconf.entries("builtin", wrappers),
        "bare ssh + sshd -i": bare,
        "bare ssh + Perl rshd-wrapper": dict(bare, rsh_daemon=PERL_ANCHOR),
        "bare ssh + sge-sshd (tight)": dict(bare, rsh_daemon=os.path.join(wrappers, "sge-sshd") + " -i"),
        "ssh_wrapper + sshd -i": sgeconf.entries("ssh", wrappers, x11=False),
        "ssh_wrapper + sge-sshd (tight)": sgeconf.entries("ssh", wrappers, tight=True, x11=False),
        "ssh_wrapper --tunnel + sge-sshd": sgeconf.entries("ssh", wrappers, tight=True, x11=False, tunnel=True),
    }
    if not os.access(PERL_ANCHOR, os.X_OK):
        del configs["bare ssh + Perl rshd-wrapper"]
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


def end_to_end(rounds=None, per_round=None, wrappers=None):
    rounds = rounds or int(os.environ.get("BENCH_E2E_ROUNDS", "3"))
    per_round = per_round or int(os.environ.get("BENCH_E2E_RUNS", "10"))
    subprocess.run([os.path.join(os.path.dirname(HERE), "cluster", "up")], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if wrappers is None:
        root = "/opt/sgewrap-test"
        subprocess.run(["make", "-s", "-C", os.path.dirname(os.path.dirname(HERE)), "install",
                        "SGE_ROOT=" + root], check=True, stdout=subprocess.DEVNULL)
        wrappers = os.path.join(root, "util", "resources", "wrappers")
    configs = configurations(wrappers)
    tmp = tempfile.mkdtemp(prefix="sgewrap-bench-e2e.")
    os.chmod(tmp, 0o755)
    master = _fanout_script(tmp)
    qrsh = ["/usr/bin/qrsh", "-now", "yes", "-q", sge.QUEUE]
    latency = {label: [] for label in configs}
    fanout = {label: [] for label in configs}
    from sgewrap import pam
    with host_lock():
        saved = sge.show_global()
        stack = pam.is_job_stack()
        added = pam.add_line()            # the Perl anchor needs the module line in /etc/pam.d/sshd
        sge.job_stack(wrappers)           # the job sshds' own PAM service
        try:
            for r in range(rounds):
                for label, entries in configs.items():
                    print("  round %d/%d: %s" % (r + 1, rounds, label), file=sys.stderr)
                    sge.apply(entries)
                    _timed(qrsh + ["true"])                      # warm-up, not counted
                    latency[label] += [_timed(qrsh + ["true"]) for _ in range(per_round)]
                    fanout[label].append(_timed(qrsh + ["-pe", sge.PE, str(TASKS + 1), master]))
        finally:
            sge.restore(saved)
            if added:
                pam.remove_line()
            if not stack:
                pam.remove_job_stack()
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
