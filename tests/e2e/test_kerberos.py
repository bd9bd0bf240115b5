"""Kerberos (GSSAPI) to the job sshds with a real MIT KDC (tests/cluster/up: realm SGEWRAP.TEST, krb5kdc on
this host, host/vm in /etc/krb5.keytab, a keytab for ``sgenokey``), set up by ``sgewrap config ssh --tight
--gssapi [--gssapi-delegate] --apply``.

Proved, for a user with no ssh key and no ~/.ssh (``sgenokey``) who holds a ticket (``kinit -k -t``, into a
cache of their own: the default one, ``/tmp/krb5cc_UID``, is made sure not to exist, or a session without
delegation would find it on this one-host file system): ``qrsh`` and ``qlogin`` get in through
gssapi-with-mic (the auth log says so), tied to the job; without a ticket they are refused; without
delegation the session has no credentials; with ``--gssapi-delegate`` it has the user's, in a cache of its
own that is gone once the session ends.  ``qrsh -V CMD`` from a shell with its own ``KRB5CCNAME`` is an
expected failure: Grid Engine's qrsh_starter sets every variable of the job's environment file after sshd
set the delegated cache's name (README: Kerberos, limits).  The job sshds' options are in their own file
only: the port-22 sshd's ``gssapiauthentication`` is unchanged; ``check`` finds nothing missing; taking
``--gssapi`` out gives the job sshds' file back byte for byte.
"""
import os
import pwd
import re
import shutil
import subprocess
import tempfile

import pytest

from lib import auth_log_since, auth_log_size, sge
from sgewrap import methods
from sgewrap.admin import sshtrust

pytestmark = [pytest.mark.cluster, pytest.mark.slot("rsh"), pytest.mark.methods("ssh-tight")]

USER = "sgenokey"
KEYTAB = "/run/sgewrap-cluster/krb5/%s.keytab" % USER
PRINCIPAL = USER + "@SGEWRAP.TEST"
TIED = ('test $$ -gt 150000 && id -G | tr " " "\\n" | grep -qx "$(cat $SGE_JOB_SPOOL_DIR/addgrpid)" '
        '&& echo TIED-$((6*7))-$(hostname)')
#: what a session says of its credentials: the cache it is given and klist's answer
KLIST = 'echo "CC=$KRB5CCNAME"; klist 2>&1; echo "KLIST=$?"'


def home():
    return pwd.getpwnam(USER).pw_dir


def sgewrap_here(cluster, *args):
    return subprocess.run([os.path.join(cluster, "sgewrap"), *args], env=sge.ENV, capture_output=True, text=True,
                          timeout=180)


def port22_gssapi():
    return re.search(r"^gssapiauthentication \S+$", subprocess.run(
        ["/usr/sbin/sshd", "-T"], capture_output=True, text=True).stdout, re.M).group(0)


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def apply(cluster, *options):
    proc = sgewrap_here(cluster, "config", "ssh", "--tight", "--no-x11", *options, "--apply")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def kerberos(method, cluster):
    assert not os.path.exists(os.path.join(home(), ".ssh")), "sgenokey has an ~/.ssh"
    default_cache = "/tmp/krb5cc_%d" % pwd.getpwnam(USER).pw_uid
    if os.path.exists(default_cache):
        os.unlink(default_cache)
    apply(cluster)      # the job sshds' file as --apply writes it without --gssapi: what must come back
    before, gssapi_22 = read(methods.JOB_SSHD_CONFIG), port22_gssapi()
    try:
        out = apply(cluster, "--gssapi")
        assert "Kerberos (GSSAPI) for the job sshds" in out, out
        yield
    finally:
        apply(cluster)
    assert read(methods.JOB_SSHD_CONFIG) == before, "the job sshds' file is not given back byte for byte"
    assert port22_gssapi() == gssapi_22


@pytest.fixture
def ticket():
    """A ticket of the user's in a cache of its own (a private directory); the env that names it."""
    directory = tempfile.mkdtemp(prefix="sgewrap-krb5.")
    pw = pwd.getpwnam(USER)
    os.chown(directory, pw.pw_uid, pw.pw_gid)
    env = {"HOME": pw.pw_dir, "KRB5CCNAME": "FILE:%s/cc" % directory}
    try:
        proc = sge.user_run(["/usr/bin/kinit", "-k", "-t", KEYTAB, PRINCIPAL], user=USER, env=env,
                            capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
        yield env
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def qrsh(env, command=TIED, *options, timeout=120):
    return sge.user_run(["/usr/bin/qrsh", "-now", "yes", "-q", sge.QUEUE, *options, command], user=USER, env=env,
                        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_qrsh_with_a_ticket_gets_in_through_gssapi_tied(kerberos, ticket):
    mark = auth_log_size()
    proc = qrsh(ticket)
    assert proc.returncode == 0 and "TIED-42-%s" % sge.HOST in proc.stdout, proc.stdout + proc.stderr
    assert "Accepted gssapi-with-mic for %s" % USER in auth_log_since(mark)


def test_qlogin_with_a_ticket_gets_in_tied(kerberos, ticket):
    mark = auth_log_size()
    assert sge.login(["/usr/bin/qlogin", "-now", "yes", "-q", sge.QUEUE], command=TIED,
                     expect="TIED-42-%s" % sge.HOST, user=USER, env=ticket) == 0
    assert "Accepted gssapi-with-mic for %s" % USER in auth_log_since(mark)


def test_without_a_ticket_the_key_less_user_is_refused(kerberos, tmp_path):
    os.chmod(tmp_path, 0o777)
    proc = qrsh({"HOME": home(), "KRB5CCNAME": "FILE:%s/none" % tmp_path}, timeout=150)
    assert proc.returncode != 0 and "TIED-42" not in proc.stdout, proc.stdout


def test_without_delegation_the_session_has_no_credentials(kerberos, ticket):
    proc = qrsh(ticket, KLIST)
    assert proc.returncode == 0 and "KLIST=1" in proc.stdout and PRINCIPAL not in proc.stdout, proc.stdout


def test_the_job_sshds_alone_take_gssapi_and_check_finds_nothing_missing(kerberos, cluster):
    job = subprocess.run(["/usr/sbin/sshd", "-T", "-f", methods.JOB_SSHD_CONFIG], capture_output=True,
                         text=True).stdout
    assert "gssapiauthentication yes" in job and "gssapicleanupcredentials yes" in job
    proc = sgewrap_here(cluster, "check")
    assert "note: %s: Kerberos (GSSAPI) to the job sshds is complete here" % sge.HOST in proc.stdout, proc.stdout
    assert not [line for line in proc.stdout.splitlines() if line.startswith("error") and "Kerberos" in line]


@pytest.fixture(scope="module")
def delegating(kerberos, cluster):
    out = apply(cluster, "--gssapi", "--gssapi-delegate")
    assert "ssh_wrapper --gssapi-delegate" in out, out
    yield
    apply(cluster, "--gssapi")


def delegated_cache(stdout):
    """The session's cache (its path) and whether klist found the user's credentials in it."""
    cache = re.search(r"^CC=(?:FILE:)?(\S*)$", stdout, re.M)
    return cache and cache.group(1), "KLIST=0" in stdout and "Default principal: %s" % PRINCIPAL in stdout


def test_with_delegation_qrsh_has_the_user_s_credentials_until_it_ends(delegating, ticket):
    proc = qrsh(ticket, KLIST)
    cache, found = delegated_cache(proc.stdout)
    assert proc.returncode == 0 and found, proc.stdout + proc.stderr
    assert cache and cache != ticket["KRB5CCNAME"].split(":", 1)[1], proc.stdout
    assert not os.path.exists(cache), "the delegated cache %s outlived its session" % cache


def test_with_delegation_qrsh_V_with_a_command_sees_the_delegated_cache(delegating, ticket):
    """Grid Engine's qrsh_starter sets every variable of the job's environment file after sshd: before the
    front handed KRB5CCNAME over (config ssh --gssapi-delegate), qrsh -V CMD saw the submitting shell's
    cache name, not the delegated one (measured)."""
    proc = qrsh(ticket, KLIST, "-V")
    cache, found = delegated_cache(proc.stdout)
    assert proc.returncode == 0 and found, proc.stdout + proc.stderr
    assert cache and cache != ticket["KRB5CCNAME"].split(":", 1)[1], proc.stdout


@pytest.mark.parametrize("argv", [["/usr/bin/qlogin"], ["/usr/bin/qrsh"]], ids=["qlogin", "qrsh-login"])
def test_with_delegation_a_login_has_the_user_s_credentials_until_it_ends(delegating, ticket, argv):
    """A login (qlogin, qrsh without a command: Grid Engine 8.1.9 takes neither -V nor -v there) has sshd's
    delegated cache, gone once the login ended."""
    shown = sge.login(argv + ["-now", "yes", "-q", sge.QUEUE], user=USER, env=ticket, capture=True,
                      command='echo "CC=$KRB5CCNAME"; klist -s && echo DELEGATED-$((6*7))', expect="DELEGATED-42")
    cache = re.search(r"CC=(?:FILE:)?(/[^\s\x1b]+)", shown)
    assert cache and cache.group(1) != ticket["KRB5CCNAME"].split(":", 1)[1], shown
    assert not os.path.exists(cache.group(1)), "the delegated cache %s outlived its session" % cache.group(1)


def test_the_keytab_reader_sees_what_klist_sees(kerberos):
    listed = subprocess.run(["/usr/bin/klist", "-k", sshtrust.KRB5_KEYTAB], capture_output=True, text=True).stdout
    assert set(sshtrust.keytab_principals()) == set(re.findall(r"^\s*\d+ (\S+)$", listed, re.M))
