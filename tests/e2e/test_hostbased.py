"""Host-based authentication as remote_startup(5) recommends, for a user with no ssh key and no ~/.ssh
(``sgenokey``), between two hosts with distinct host keys: this Debian 12 host and node4 (Debian 13,
its own /etc/ssh).  Set up by ``sgewrap config ssh --tight --hostbased --apply`` run on each host,
then ``sgewrap facts --record`` on the first (it learns the second's key): each host's record
publishes its host keys in the cell's common directory, and every host's ssh_known_hosts lists them
(never a key learnt on first use).

Proved: the key-less user's ``qrsh``, ``qlogin`` and a parallel job's ``qrsh -inherit`` both ways,
tied; refused before ``--apply``, and after ``--apply`` without ``--hostbased``; refused from a host
the equivalence block does not list; root refused host-based by the job sshd; the port-22 sshd's
settings unchanged; ``check`` finds nothing missing; taking it out gives every file back byte for byte.
"""
import os
import pwd
import re
import signal
import subprocess
import time

import pytest

from lib import sge
from sgewrap.admin import sshtrust

pytestmark = [pytest.mark.cluster, pytest.mark.slot("rsh"), pytest.mark.methods("ssh-tight")]

USER = "sgenokey"
TIED = ('test $$ -gt 150000 && id -G | tr " " "\\n" | grep -qx "$(cat $SGE_JOB_SPOOL_DIR/addgrpid)" '
        '&& echo TIED-$((6*7))-$(hostname)')
FILES = (sshtrust.KNOWN_HOSTS, sshtrust.SHOSTS_EQUIV, sshtrust.CLIENT_DROPIN)


def snapshot(root=""):
    found = {}
    for path in FILES:
        try:
            with open(root + path, "rb") as f:
                found[path] = f.read()
        except FileNotFoundError:
            found[path] = None
    return found


def sgewrap_here(cluster, *args):
    return subprocess.run([os.path.join(cluster, "sgewrap"), *args], env=sge.ENV, capture_output=True, text=True,
                          timeout=180)


def sgewrap_node4(cluster, *args):
    return sge.on_node4([os.path.join(cluster, "sgewrap"), *args], capture_output=True, text=True, timeout=180)


def qrsh(queue, command=TIED, timeout=120):
    return sge.user_run(["/usr/bin/qrsh", "-now", "yes", "-q", queue, command], user=USER,
                        env={"HOME": pwd.getpwnam(USER).pw_dir}, capture_output=True, text=True, timeout=timeout,
                        stdin=subprocess.DEVNULL)


def take_out(cluster):
    """--apply without --hostbased on both hosts (the host keys stay known: every ssh method wants them)."""
    for run in (sgewrap_here, sgewrap_node4):
        proc = run(cluster, "config", "ssh", "--tight", "--no-x11", "--apply")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "took host-based authentication out (no --hostbased): /etc/ssh/shosts.equiv: as it was before " \
            "sgewrap (byte for byte)" in proc.stdout or "took host-based" not in proc.stdout, proc.stdout


def given_back(before, root=""):
    """The host-based files as they were; the known-hosts file as it was but for sgewrap's block."""
    now = snapshot(root)

    def plain(files):
        return sshtrust.without_block((files[sshtrust.KNOWN_HOSTS] or b"").decode(), sshtrust.KNOWN_HOSTS_WHAT)
    return plain(now) == plain(before) and all(now[p] == before[p] for p in (sshtrust.SHOSTS_EQUIV,
                                                                             sshtrust.CLIENT_DROPIN))


def selftest(run, cluster):
    return run(cluster, "selftest", "--user", USER, "ssh", "--tight", "--hostbased")


def test_before_apply_selftest_hostbased_fails_and_says_what_is_missing(cluster):
    """Runs before the module's --apply (the fixture below): the key-less user is refused, and the
    selftest says why, in check's words."""
    proc = selftest(sgewrap_here, cluster)
    assert proc.returncode == 1 and "FAIL" in proc.stdout, proc.stdout + proc.stderr
    assert "selftest: host-based: /etc/ssh/sge-sshd_config lacks 'HostbasedAuthentication yes'" in proc.stderr, \
        proc.stderr


@pytest.fixture(scope="module")
def hostbased(node4, cluster):
    assert not os.path.exists(os.path.join(pwd.getpwnam(USER).pw_dir, ".ssh")), "sgenokey has an ~/.ssh"
    here_before, node4_before = snapshot(), snapshot(sge.NODE4_ROOT)
    refused = qrsh(sge.DEB13_QUEUE)
    assert refused.returncode != 0 and "TIED-42" not in refused.stdout, "a key-less user got in before --apply"
    try:
        for run in (sgewrap_node4, sgewrap_here, sgewrap_node4):   # node4 again: it learns this host's key
            proc = run(cluster, "config", "ssh", "--tight", "--no-x11", "--hostbased", "--apply")
            assert proc.returncode == 0, proc.stdout + proc.stderr
        yield
        take_out(cluster)
        after = qrsh(sge.DEB13_QUEUE)
        assert after.returncode != 0 and "TIED-42" not in after.stdout, "still in after --hostbased was taken out"
    finally:
        if not (given_back(here_before) and given_back(node4_before, sge.NODE4_ROOT)):
            take_out(cluster)
    assert given_back(here_before) and given_back(node4_before, sge.NODE4_ROOT), "files not given back"


def test_the_records_publish_each_host_s_keys_and_every_host_knows_them(hostbased):
    here = open(sshtrust.KNOWN_HOSTS).read()
    there = open(sge.NODE4_ROOT + sshtrust.KNOWN_HOSTS).read()
    node4_key = open(sge.NODE4_ROOT + "/etc/ssh/ssh_host_ed25519_key.pub").read().split()[1]
    my_key = open("/etc/ssh/ssh_host_ed25519_key.pub").read().split()[1]
    assert node4_key != my_key, "the two hosts have distinct host keys"
    assert re.search(r"^node4,\[node4\]:\*,.*10\.203\.0\.2.* ssh-ed25519 %s$" % re.escape(node4_key), here, re.M)
    assert re.search(r"^%s,\[%s\]:\*,.* ssh-ed25519 %s$" % (sge.HOST, sge.HOST, re.escape(my_key)), there, re.M)


@pytest.mark.parametrize("queue", [sge.DEB13_QUEUE, sge.QUEUE], ids=["to-debian13", "to-debian12"])
def test_a_user_without_a_key_runs_qrsh_tied(hostbased, queue):
    proc = qrsh(queue)
    assert proc.returncode == 0 and "TIED-42-" in proc.stdout, proc.stdout + proc.stderr


def test_a_user_without_a_key_gets_a_qlogin_on_debian_13(hostbased):
    assert sge.login(["/usr/bin/qlogin", "-now", "yes", "-q", sge.DEB13_QUEUE], command=TIED,
                     expect="TIED-42-node4", user=USER) == 0


MASTER = """#!/bin/sh
/usr/bin/qrsh -inherit -nostdin "$1" 'echo "task on $(hostname) gid=$(cat $SGE_JOB_SPOOL_DIR/addgrpid)\
 groups=$(id -G | tr " " ,)"'
echo "master done $?"
"""


@pytest.mark.parametrize("master, target", [(sge.HOST, sge.NODE4), (sge.NODE4, sge.HOST)],
                         ids=["debian12-to-debian13", "debian13-to-debian12"])
def test_a_user_without_a_key_runs_qrsh_inherit_both_ways(hostbased, master, target):
    script = os.path.join(pwd.getpwnam(USER).pw_dir, "hostbased-master.sh")
    with open(script, "w") as f:
        f.write(MASTER)
    os.chmod(script, 0o755)
    master_queue = "%s@%s" % (sge.DEB13_QUEUE if master == sge.NODE4 else sge.QUEUE, master)
    try:
        sge.wait_no_user_jobs(USER)
        proc = sge.user_run(["/usr/bin/qrsh", "-now", "yes", "-q", "%s,%s" % (sge.QUEUE, sge.DEB13_QUEUE),
                             "-pe", sge.MIXED_PE, "2", "-masterq", master_queue, script, target], user=USER,
                            env={"HOME": pwd.getpwnam(USER).pw_dir}, capture_output=True, text=True, timeout=180,
                            stdin=subprocess.DEVNULL)
    finally:
        os.unlink(script)
    found = re.search(r"^task on (\S+) gid=(\d+) groups=(\S+)$", proc.stdout, re.M)
    assert proc.returncode == 0 and "master done 0" in proc.stdout and found, proc.stdout + proc.stderr
    assert found.group(1) == target and found.group(2) in found.group(3).split(","), proc.stdout


def test_a_host_the_equivalence_block_does_not_list_is_refused(hostbased):
    """node4's block without this host's names and addresses: the same qrsh from here is refused."""
    path = sge.NODE4_ROOT + sshtrust.SHOSTS_EQUIV
    with open(path) as f:
        before = f.read()
    from sgewrap.admin import hostfacts
    record = hostfacts.load(hostfacts.directory(sge.SGE_ROOT, sge.SGE_CELL))[sge.HOST]
    mine = set(record["names"]) | set(record["addresses"])
    try:
        with open(path, "w") as f:
            f.write("".join(line for line in before.splitlines(True) if line.strip() not in mine))
        proc = qrsh(sge.DEB13_QUEUE)
        assert proc.returncode != 0 and "TIED-42" not in proc.stdout, proc.stdout
    finally:
        with open(path, "w") as f:
            f.write(before)
    assert qrsh(sge.DEB13_QUEUE).returncode == 0


def test_root_is_refused_host_based_by_a_job_sshd(hostbased, cluster, tmp_path):
    """A job sshd here (the stand-in shepherd hands it one connection) with the host-based options: the
    key-less user of a job of theirs gets in; root, for a job of root's, is refused: sshd never honours
    shosts.equiv for root."""
    from lib import make_spool
    from sgewrap.admin.shepherd import Shepherd, as_user
    ssh = ["/usr/bin/ssh", "-o", "BatchMode=yes", "-o", "PreferredAuthentications=hostbased",
           "-o", "HostbasedAuthentication=yes", "-o", "StrictHostKeyChecking=yes"]
    results = {}
    for user in (USER, "root"):
        base = tmp_path / user
        base.mkdir()
        os.chmod(base, 0o755)
        spool = make_spool(base, 64999, user)
        env = {"PATH": "/usr/bin:/bin", "SGE_JOB_SPOOL_DIR": spool, "JOB_ID": "4711", "SGE_TASK_ID": "undefined"}
        with Shepherd([os.path.join(cluster, "sge-sshd"), "-i"], env=env, cwd=spool) as sh:
            argv = ssh + ["-p", str(sh.port), sge.HOST, "echo INSIDE-$(id -un)"]
            if user == "root":
                results[user] = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                                               stdin=subprocess.DEVNULL)
            else:
                results[user] = as_user(user, argv, capture_output=True, text=True, timeout=60,
                                        env={"HOME": pwd.getpwnam(user).pw_dir, "PATH": "/usr/bin:/bin"})
    assert "INSIDE-%s" % USER in results[USER].stdout, results[USER].stderr
    assert results["root"].returncode == 255 and "INSIDE" not in results["root"].stdout


def test_the_port_22_sshd_is_unchanged_and_check_finds_nothing_missing(hostbased, cluster):
    for argv in (["/usr/sbin/sshd", "-T"],):
        here = subprocess.run(argv, capture_output=True, text=True).stdout
        there = sge.on_node4(argv, capture_output=True, text=True).stdout
        assert "hostbasedauthentication no" in here and "hostbasedauthentication no" in there
    job = subprocess.run(["/usr/sbin/sshd", "-T", "-f", "/etc/ssh/sge-sshd_config"], capture_output=True,
                         text=True).stdout
    assert "hostbasedauthentication yes" in job and "hostbasedusesnamefrompacketonly yes" in job
    proc = sgewrap_here(cluster, "check")
    assert "note: %s: host-based authentication to the job sshds is complete here" % sge.HOST in proc.stdout, \
        proc.stdout
    assert not [line for line in proc.stdout.splitlines() if line.startswith("error") and "host-based" in line]
    # every submit x execution pair, judged by both ends' records: node2 and node3 have no host-based side
    assert re.search(r"node3 \((submit and )?execution host\) has no (record|host-based setup)", proc.stdout), \
        proc.stdout


def test_check_names_the_pair_and_the_end_that_breaks_it(hostbased, cluster):
    """node4's job sshds lose an option, and node4 records that: check here (which cannot look at node4's
    files) says that logins to node4 are refused, and why."""
    path = sge.NODE4_ROOT + "/etc/ssh/sge-sshd_config"
    with open(path) as f:
        before = f.read()
    try:
        with open(path, "w") as f:
            f.write(before.replace("HostbasedUsesNameFromPacketOnly yes\n", ""))
        assert sgewrap_node4(cluster, "facts", "--record").returncode == 0
        proc = sgewrap_here(cluster, "check")
        assert proc.returncode == 1, proc.stdout
        assert "host-based %s -> node4 is refused: node4: /etc/ssh/sge-sshd_config lacks " \
               "'HostbasedUsesNameFromPacketOnly yes'" % sge.HOST in proc.stdout, proc.stdout
    finally:
        with open(path, "w") as f:
            f.write(before)
        sgewrap_node4(cluster, "facts", "--record")
    assert "host-based %s -> node4 is refused" % sge.HOST not in sgewrap_here(cluster, "check").stdout


@pytest.mark.parametrize("run", [sgewrap_here, sgewrap_node4], ids=["debian12", "debian13"])
def test_selftest_hostbased_proves_it_live_for_the_user_without_a_key(hostbased, cluster, run):
    proc = selftest(run, cluster)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("authenticated host-based only") == 3, proc.stdout


def test_hosts_adds_a_host_that_grid_engine_does_not_list_and_refreshes_keep_it(hostbased, cluster):
    """--hosts +NAME: a login node Grid Engine does not know is admitted too; the block keeps the choice
    (a comment line, which sshd skips: host-based logins here go on), and facts --record's refresh keeps it."""
    base = ("config", "ssh", "--tight", "--no-x11", "--hostbased")
    try:
        proc = sgewrap_here(cluster, *base, "--hosts", "+login1.example.org", "--apply")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "login1.example.org" in sshtrust.equiv_words() and sshtrust.hosts_spec() == "+login1.example.org"
        proc = qrsh(sge.QUEUE)
        assert proc.returncode == 0 and "TIED-42-%s" % sge.HOST in proc.stdout, proc.stdout + proc.stderr
        assert sgewrap_here(cluster, "facts", "--record").returncode == 0
        assert "login1.example.org" in sshtrust.equiv_words() and sshtrust.hosts_spec() == "+login1.example.org"
        bad = sgewrap_here(cluster, *base, "--hosts", "a b", "--apply")
        assert bad.returncode == 2 and bad.stderr.startswith("sgewrap: error: --hosts 'a b': expected host names"), \
            bad.stderr
    finally:
        proc = sgewrap_here(cluster, *base, "--apply")
    assert proc.returncode == 0 and sshtrust.hosts_spec() is None and "login1.example.org" not in \
        sshtrust.equiv_words()


STATE = "/run/sgewrap-cluster"


def reload_port22_sshds():
    """This host's and node2's port-22 sshd read their configuration again (sgewrap reloads the one of
    systemd or /run/sshd.pid; the test cluster's run under pid files of their own)."""
    for name in ("sshd", "node2-sshd"):
        with open(os.path.join(STATE, name + ".pid")) as f:
            os.kill(int(f.read()), signal.SIGHUP)
    time.sleep(1)                      # it re-executes itself, then listens again


def in_node2(argv):
    return subprocess.run(["ip", "netns", "exec", "sgewrap-node2", "unshare", "--uts", "sh", "-c",
                           'hostname node2 && exec "$@"', "node2", *argv], env=sge.ENV, capture_output=True,
                          text=True, timeout=120)


def test_through_the_tunnel_to_the_firewalled_host_when_port_22_is_asked_to_take_host_based(hostbased, cluster):
    """node2 lets only ssh (port 22) through its firewall; --tunnel reaches the job sshd through node2's
    port-22 sshd, whose hop a key-less user can only cross host-based.  Port 22 refuses host-based logins
    until the administrator asks (--hostbased-port22); then the same qrsh is tied, and the job sshd behind
    the tunnel takes the client's name from the packet (its peer is node2 itself).  node2 shares this
    host's /etc/ssh and host keys (its record is made for the test and removed after)."""
    tunnel = ("config", "ssh", "--tight", "--no-x11", "--hostbased", "--tunnel", "--tunnel-persist", "3")
    record = in_node2([os.path.join(cluster, "sgewrap"), "facts", "--record"])
    assert record.returncode == 0, record.stdout + record.stderr
    try:
        proc = sgewrap_here(cluster, *tunnel, "--apply")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        refused = qrsh(sge.FW_QUEUE)
        assert refused.returncode != 0 and "TIED-42" not in refused.stdout, refused.stdout
        assert "the --tunnel hop to this host's port-22 sshd refuses host-based logins" in \
            sgewrap_here(cluster, "check").stdout
        proc = sgewrap_here(cluster, *tunnel, "--hostbased-port22", "--apply")
        assert proc.returncode == 0 and "wrote %s" % sshtrust.SSHD_DROPIN in proc.stdout, proc.stdout + proc.stderr
        reload_port22_sshds()
        assert "hostbasedauthentication yes" in port22()
        tied = qrsh(sge.FW_QUEUE)
        assert tied.returncode == 0 and "TIED-42-node2" in tied.stdout, tied.stdout + tied.stderr
    finally:
        proc = sgewrap_here(cluster, "config", "ssh", "--tight", "--no-x11", "--hostbased", "--apply")
        reload_port22_sshds()
        os.unlink(os.path.join(hostfacts_dir(), sge.NODE2))
        sgewrap_here(cluster, "facts", "--record")          # the blocks without node2 again
    assert "removed %s" % sshtrust.SSHD_DROPIN in proc.stdout, proc.stdout + proc.stderr
    assert not os.path.exists(sshtrust.SSHD_DROPIN)
    assert "hostbasedauthentication no" in port22()


def port22():
    return subprocess.run(["/usr/sbin/sshd", "-T"], capture_output=True, text=True).stdout


def hostfacts_dir():
    from sgewrap.admin import hostfacts
    return hostfacts.directory(sge.SGE_ROOT, sge.SGE_CELL)
