"""make bench, part 3: what the daemon side costs per session (root, real sshd and PAM, no Grid Engine).

A stand-in shepherd (sgewrap.admin.shepherd: bind, accept one connection, start
the daemon with the connection on fds 0-2 and a job spool directory as cwd)
serves each daemon configuration in turn, alternating, for:

- time to banner: from the client's connect() to the first bytes of the
  SSH banner (``SSH-2.0-``), what every ``qrsh`` waits for before anything;
- resident memory of an open session: ``Pss`` and ``Private_Clean`` +
  ``Private_Dirty`` (``/proc/PID/smaps_rollup``) summed over every process
  the daemon side keeps alive while the user's command runs (the wrapper, if
  one stays, and sshd's own processes; the user's command excluded), and of
  the wrapper alone.

- a whole session: ``ssh -p PORT HOST true`` as the test user, from start to
  exit (key authentication, the PAM stacks, the command, the close): what
  each ``qrsh -inherit`` of a parallel job pays on the daemon side.

Configurations: bare ``sshd -i``; Grid Engine's Perl ``rshd-wrapper`` (the
anchor, with the module line in /etc/pam.d/sshd as it needs); the job sshd
``sge-sshd -i`` (the launcher) with its PAM service and pam_sgewrap; the same
sshd with the PAM side of 0.2.1 (``pam_exec`` running ``node_access session``
in Python, pam_sge-qrsh-setup reading its setup file: a service of its own,
/etc/pam.d/sge-sshd-0.2.1, for the run); ``rshdwrapper`` (the exec shim) in
front of the job sshd.
"""
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from lib import SSH, TEST_USER, host_lock, make_spool, sge, wait_until  # noqa: E402

PERL_ANCHOR = "/usr/share/gridengine/util/resources/wrappers/rshd-wrapper"
WRAPPER_NAMES = ("perl", "rshd-wrapper", "python3", "rshdwrapper")


#: the PAM side of 0.2.1, for comparison: a Python start per session through pam_exec
OLD_SERVICE = "sge-sshd-0.2.1"
OLD_STACK = ("auth     required  pam_sge-qrsh-setup.so\n@include common-auth\n"
             "account  required  pam_exec.so quiet %s/node_access session\n@include common-account\n"
             "@include common-session-noninteractive\n@include common-password\n")


def configurations(wrappers, old_link=None):
    configs = {
        "bare sshd -i": ["/usr/sbin/sshd", "-i"],
        "Perl rshd-wrapper + sshd -i": [PERL_ANCHOR],
        "sge-sshd -i (launcher + pam_sgewrap)": [os.path.join(wrappers, "sge-sshd"), "-i"],
        "sshd -i + 0.2.1's PAM side (pam_exec hook)": [old_link, "-i"],
        "rshdwrapper -> sge-sshd": [os.path.join(wrappers, "rshdwrapper")],
    }
    if old_link is None:
        del configs["sshd -i + 0.2.1's PAM side (pam_exec hook)"]
    if not os.access(PERL_ANCHOR, os.X_OK):
        del configs["Perl rshd-wrapper + sshd -i"]
    return configs


def descendants(pid):
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            with open("/proc/%d/task/%d/children" % (p, p)) as f:
                kids = [int(c) for c in f.read().split()]
        except OSError:
            kids = []
        found += kids
        todo += kids
    return found


def rollup(pid):
    """(pss, private) in bytes."""
    values = {}
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                    values[parts[0][:-1]] = int(parts[1]) * 1024
    except OSError:
        return 0, 0
    return values.get("Pss", 0), values.get("Private_Clean", 0) + values.get("Private_Dirty", 0)


def _banner(argv, env, cwd):
    from sgewrap.admin.shepherd import Shepherd
    with Shepherd(argv, env=env, cwd=cwd) as sh:
        start = time.perf_counter()
        with socket.create_connection(("127.0.0.1", sh.port), timeout=30) as s:
            data = b""
            while not data.startswith(b"SSH-2.0-") and len(data) < 8:
                chunk = s.recv(8 - len(data))
                if not chunk:
                    break
                data += chunk
            took = time.perf_counter() - start
        if not data.startswith(b"SSH-2.0-"):
            raise RuntimeError("%s: no SSH banner (%r)" % (argv[0], data))
        return took


def _session(argv, env, cwd):
    """Seconds for a whole ``ssh ... true`` through the daemon ``argv``."""
    from sgewrap.admin.shepherd import Shepherd
    import pwd
    pw = pwd.getpwnam(TEST_USER)
    with Shepherd(argv, env=env, cwd=cwd) as sh:
        start = time.perf_counter()
        proc = subprocess.run(["/usr/sbin/runuser", "-u", TEST_USER, "--"] + SSH +
                              ["-p", str(sh.port), socket.gethostname(), "true"], capture_output=True,
                              env={"HOME": pw.pw_dir, "PATH": "/usr/bin:/bin"}, timeout=60)
        took = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError("%s: the session failed: %s" % (argv[0], proc.stderr[-500:]))
        return took


def _memory(argv, env, cwd):
    from sgewrap.admin.shepherd import Shepherd, as_user  # noqa: F401
    import pwd
    pw = pwd.getpwnam(TEST_USER)
    with Shepherd(argv, env=env, cwd=cwd) as sh:
        client = subprocess.Popen(["/usr/sbin/runuser", "-u", TEST_USER, "--"] + SSH +
                                  ["-p", str(sh.port), socket.gethostname(), "echo ready; read x"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env={"HOME": pw.pw_dir, "PATH": "/usr/bin:/bin"})
        try:
            if client.stdout.readline() != b"ready\n":
                raise RuntimeError("%s: the session did not start: %s" % (argv[0], client.stderr.read()))
            time.sleep(0.2)
            procs = [p for p in descendants(sh.pid) if (sge.comm(p) or "") not in ("bash", "sh", "read")]
            total = [rollup(p) for p in procs]
            wrapper = [rollup(p) for p in procs if sge.comm(p) in WRAPPER_NAMES]
            return (sum(t[0] for t in total), sum(t[1] for t in total),
                    sum(w[0] for w in wrapper), sum(w[1] for w in wrapper), len(procs))
        finally:
            client.stdin.close()
            client.wait(30)


def daemon_side(rounds=None, wrappers=None):
    """Rows (part, label, value, ratio to Perl, ratio to bare sshd) for the bench table."""
    from sgewrap.admin import pam
    rounds = rounds or int(os.environ.get("BENCH_DAEMON_ROUNDS", "40"))
    tmp = tempfile.mkdtemp(prefix="sgewrap-bench-daemon.")
    os.chmod(tmp, 0o755)
    old_link = os.path.join(tmp, OLD_SERVICE)          # OpenSSH 9.2: the PAM service is the program's name
    old_pam = os.path.join("/etc/pam.d", OLD_SERVICE)
    if not os.path.exists("/usr/lib/openssh/sshd-session"):
        os.symlink("/usr/sbin/sshd", old_link)
    else:
        old_link = None
    configs = configurations(wrappers, old_link)
    spool = make_spool(tmp, 65431, TEST_USER)
    env = {"PATH": "/usr/bin:/bin", "SGE_JOB_SPOOL_DIR": spool, "JOB_ID": "4711"}
    banner = {label: [] for label in configs}
    session = {label: [] for label in configs}
    memory = {label: [] for label in configs}
    with host_lock():
        stack_before = pam.is_job_stack()
        added = pam.add_line()            # the Perl anchor needs the module line in /etc/pam.d/sshd
        try:
            pam.install_job_stack(wrappers)
            if old_link:
                with open(old_pam, "w") as f:
                    f.write(OLD_STACK % wrappers)
            for r in range(rounds):
                for label, argv in configs.items():
                    banner[label].append(_banner(argv, env, spool))
                    session[label].append(_session(argv, env, spool))
                    if r < max(3, rounds // 8):
                        memory[label].append(_memory(argv, env, spool))
        finally:
            if old_link and os.path.exists(old_pam):
                os.unlink(old_pam)
            if added:
                pam.remove_line()
            if not stack_before:
                pam.remove_job_stack()
            subprocess.run(["rm", "-rf", tmp])
    rows = []
    perl = statistics.median(banner.get("Perl rshd-wrapper + sshd -i", [0])) or None
    bare = statistics.median(banner["bare sshd -i"])
    for label in configs:
        med = statistics.median(banner[label])
        rows.append(("time to banner", label, med * 1000, med / perl if perl else None, med / bare))
    perl = statistics.median(session.get("Perl rshd-wrapper + sshd -i", [0])) or None
    bare = statistics.median(session["bare sshd -i"])
    for label in configs:
        med = statistics.median(session[label])
        rows.append(("session (ssh true)", label, med * 1000, med / perl if perl else None, med / bare))
    mib = 1024.0 * 1024.0
    perl_pss = statistics.median(m[0] for m in memory.get("Perl rshd-wrapper + sshd -i", [(0,)])) or None
    bare_pss = statistics.median(m[0] for m in memory["bare sshd -i"])
    for label in configs:
        pss = statistics.median(m[0] for m in memory[label])
        private = statistics.median(m[1] for m in memory[label])
        w_pss = statistics.median(m[2] for m in memory[label])
        w_private = statistics.median(m[3] for m in memory[label])
        rows.append(("session PSS", label, pss / mib, pss / perl_pss if perl_pss else None, pss / bare_pss))
        rows.append(("session private", label, private / mib, None, None))
        rows.append(("wrapper PSS", label, w_pss / mib, None, None))
        rows.append(("wrapper private", label, w_private / mib, None, None))
    return rows


def adopt_cost(wrappers, rounds=None):
    """An ssh login to this host's port-22 sshd with and without node_access adopt (the user has a
    running job, so the adopted login joins it): rows (part, label, ms, ratio to plain, None)."""
    from sgewrap.admin import pam, pammodule
    rounds = rounds or int(os.environ.get("BENCH_ADOPT_ROUNDS", "20"))
    login = ["/usr/sbin/runuser", "-u", TEST_USER, "--"] + SSH + [sge.HOST, "true"]
    times = {"plain ssh login": [], "ssh login + node_access adopt": []}
    with host_lock():
        with open(pam.PAM_FILE, "rb") as f:
            before = f.read()
        out = sge.user_run(["/usr/bin/qsub", "-terse", "-q", sge.QUEUE, "-b", "y", "/bin/sleep", "600"],
                           capture_output=True, text=True, timeout=60)
        job = out.stdout.strip()
        try:
            if not wait_until(lambda: sge.running(job), 90, 0.3):
                raise RuntimeError("bench: the job for the adopt figures never ran")
            for _ in range(rounds):
                for label in times:
                    with open(pam.PAM_FILE, "wb") as f:
                        f.write(before)
                    if "adopt" in label:
                        pammodule.ensure_installed(wrappers)
                        pam.add_adopt(wrappers)
                    start = time.perf_counter()
                    if subprocess.run(login, stdin=subprocess.DEVNULL, capture_output=True).returncode != 0:
                        raise RuntimeError("bench: %s failed" % label)
                    times[label].append(time.perf_counter() - start)
        finally:
            with open(pam.PAM_FILE, "wb") as f:
                f.write(before)
            subprocess.run(["/usr/bin/qdel", job], env=sge.ENV, capture_output=True)
    plain = statistics.median(times["plain ssh login"])
    return [("ssh login", label, statistics.median(v) * 1000, statistics.median(v) / plain, None)
            for label, v in times.items()]
