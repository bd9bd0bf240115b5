"""What each execution host's job sshd will be, as that host's root saw it: so that ``sgewrap check``,
run on one host, can say for every host whether its job sessions run under the job PAM service.

``sgewrap config ssh --tight --apply`` (and ``sgewrap facts --record``) run as root on a host record
its facts into the cell's common directory, ``$SGE_ROOT/$SGE_CELL/common/sgewrap-hosts/HOST``
(root-owned, one JSON object): its OpenSSH (version, whether it takes the PAM service from
``PamServiceName``: 9.8 and later), the job sshd it would run (the launcher, a link to sshd, or
missing), its job PAM stack, the PAM module, and an identity of its sshd (size and modification
time of ``sshd`` and ``sshd-session``).  A record is stale once the host's sshd changed (an in-place
upgrade): ``sgewrap facts`` on that host compares, and ``sgewrap check`` reports the record's age
and what it was taken from.  The launcher makes a stale record harmless for the PAM service (it
decides when each session starts); a host without the launcher is exactly the case a stale record
would hide, which is why ``check`` names the record it judged by.
"""
import json
import os
import socket
import subprocess
import time

from .. import __version__, methods
from . import pam, sgeconf
from .common import UNREADABLE, AdminError

#: below the cell's common directory
DIRECTORY = "sgewrap-hosts"
#: facts kept, in this order
KEYS = ("host", "recorded", "sgewrap", "os", "sshd", "pam_service_name", "sshd_id", "wrappers", "job_sshd",
        "job_stack", "module", "names", "addresses", "host_keys", "hostbased", "port22")
#: what the other hosts' check needs of this host's port-22 sshd (``sshd -T``): --tunnel's far end,
#: ssh -L/-D into jobs (job-ssh), host-based logins on port 22
PORT22_KEYS = ("allowtcpforwarding", "maxstartups", "hostbasedauthentication")
#: sshd's public host keys (what the cluster's ssh_known_hosts lists for this host)
HOST_KEYS = "/etc/ssh/ssh_host_*_key.pub"


def directory(sge_root=None, cell=None):
    """The cell's record directory."""
    sge_root = sge_root or os.environ.get("SGE_ROOT") or ""
    if not os.path.isabs(sge_root):
        raise AdminError("SGE_ROOT is not set: source $SGE_ROOT/$SGE_CELL/common/settings.sh", UNREADABLE)
    return os.path.join(sge_root, cell or os.environ.get("SGE_CELL") or "default", "common", DIRECTORY)


def _os_name(root):
    try:
        with open(os.path.join(root, "etc/os-release")) as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "unknown"


def _sshd_version(root):
    if root != "/":
        return None
    try:
        proc = subprocess.run([methods.SSHD, "-V"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    words = (proc.stderr or proc.stdout).split()
    return words[0].rstrip(",") if words else None


def sshd_id(root="/"):
    """What changes when the host's sshd is upgraded: size and mtime of sshd and sshd-session."""
    parts = []
    for path in (methods.SSHD, methods.SSHD_SESSION):
        try:
            st = os.stat(os.path.join(root, path.lstrip("/")))
            parts.append("%s:%d:%d" % (os.path.basename(path), st.st_size, int(st.st_mtime)))
        except OSError:
            parts.append("%s:-" % os.path.basename(path))
    return " ".join(parts)


def host_keys(root="/"):
    """This host's public host keys, ``["TYPE BASE64"...]`` (comments dropped), sorted."""
    import glob
    found = set()
    for path in glob.glob(os.path.join(root, HOST_KEYS.lstrip("/"))):
        try:
            with open(path) as f:
                words = f.read().split()
        except OSError:
            continue
        if len(words) >= 2 and words[0].startswith(("ssh-", "ecdsa-", "sk-")):
            found.add("%s %s" % (words[0], words[1]))
    return sorted(found)


def names_and_addresses(host):
    """(names, addresses) by which other hosts reach this one: its name, its fully qualified name, and the
    addresses of its interfaces but loopback and link-local ones (``ip -o addr``)."""
    import ipaddress
    names = [host]
    fqdn = socket.getfqdn(host)
    if fqdn != host and "." in fqdn and not fqdn.startswith("localhost"):
        names.append(fqdn)
    addresses = []
    try:
        out = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    for line in out.splitlines():
        words = line.split()
        if len(words) >= 4 and words[2] in ("inet", "inet6"):
            try:
                address = ipaddress.ip_interface(words[3]).ip
            except ValueError:
                continue
            if not (address.is_loopback or address.is_link_local) and str(address) not in addresses:
                addresses.append(str(address))
    return names, addresses


def job_sshd_kind(wrappers_dir):
    """``launcher``, ``link`` (to sshd: what sgewrap 0.2 installed, or make install without a compiler) or
    ``missing``."""
    path = os.path.join(wrappers_dir, methods.JOB_SSHD_NAME)
    if os.path.islink(path):
        return "link"
    return "launcher" if methods.job_sshd_is_launcher(wrappers_dir) else "missing"


def sshd_settings():
    """This host's effective sshd settings (``sshd -T``, as root), lower-case keys; AdminError if unreadable."""
    try:
        out = subprocess.run(["/usr/sbin/sshd", "-T"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as err:
        raise AdminError("sshd -T: %s" % err, UNREADABLE)
    if out.returncode != 0:
        raise AdminError("sshd -T failed: %s" % (out.stderr.strip().splitlines() or ["exit %d" % out.returncode])[-1],
                         UNREADABLE)
    return dict(line.split(None, 1) for line in out.stdout.splitlines() if " " in line)


def _port22():
    try:
        settings = sshd_settings()
    except AdminError:
        return None
    return {k: settings.get(k) for k in PORT22_KEYS}


def _hostbased():
    from .sshtrust import hostbased_facts
    return hostbased_facts()


def collect(wrappers_dir, root="/", host=None, pam_directory=None):
    """This host's facts (a dict with :data:`KEYS`); ``root`` and ``pam_directory`` for tests."""
    from . import pammodule
    problems = pam.job_stack_problems(os.path.join(root, methods.JOB_PAM_FILE.lstrip("/")))
    host = host or socket.gethostname()
    names, addresses = names_and_addresses(host) if root == "/" else ([host], [])
    return {
        "host": host,
        "recorded": int(time.time()),
        "sgewrap": __version__,
        "os": _os_name(root),
        "sshd": _sshd_version(root),
        "pam_service_name": methods.sshd_uses_pam_service_name(root),
        "sshd_id": sshd_id(root),
        "wrappers": wrappers_dir,
        "job_sshd": job_sshd_kind(wrappers_dir),
        "job_stack": problems or "ok",
        "module": pammodule.installed(pam_directory) is not None,
        "names": names,
        "addresses": addresses,
        "host_keys": host_keys(root),
        "hostbased": _hostbased() if root == "/" else None,
        "port22": _port22() if root == "/" else None,
    }


def record(facts, where=None):
    """Write ``facts`` as ``where``/HOST (root-owned, 0644), atomically; the path.

    The cell's common directory belongs to Grid Engine's admin user, who could swap ``where`` for a link
    between a check and a write: the directory is opened once (no link followed, root's, writable by
    root alone) and every step after works relative to that open directory."""
    from ..rootside import frame
    where = where or directory()
    frame.private_dir(where, create=True)
    fd = os.open(where, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            raise frame.UnsafeError("%s changed under us (uid %d, mode %o)" % (where, st.st_uid, st.st_mode))
        name = facts["host"]
        if "/" in name or name.startswith("."):
            raise ValueError("not a host name: %r" % name)
        tmp = ".%s.%d" % (name, os.getpid())
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=fd)
        try:
            os.fchmod(out, 0o644)
            frame.write_all(out, (json.dumps({k: facts[k] for k in KEYS}, indent=1) + "\n").encode())
            os.fsync(out)
        finally:
            os.close(out)
        try:
            os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
        except BaseException:
            os.unlink(tmp, dir_fd=fd)
            raise
    finally:
        os.close(fd)
    return os.path.join(where, name)


def load(where=None):
    """{host: facts} of every record that root owns and no one else can write (others are ignored:
    a record is a claim about a root-side setup)."""
    where = where or directory()
    found = {}
    try:
        names = sorted(os.listdir(where))
    except OSError:
        return found
    for name in names:
        path = os.path.join(where, name)
        try:
            st = os.lstat(path)
            if not (st.st_uid == 0 and not st.st_mode & 0o022 and os.path.isfile(path)) or name.startswith("."):
                continue
            with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)) as f:
                facts = json.load(f)
        except (OSError, ValueError):
            continue
        if isinstance(facts, dict) and facts.get("host") == name:
            found[name] = facts
    return found


def changed(old, new):
    """What of ``old`` (a record) no longer holds in ``new`` (this host now): ``[(key, old, new)]``."""
    return [(k, old.get(k), new.get(k)) for k in ("sshd_id", "pam_service_name", "job_sshd", "job_stack", "module",
                                                  "host_keys", "hostbased", "port22")
            if old.get(k) != new.get(k)]


def when(facts):
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(facts.get("recorded") or 0))


def problems(facts, daemons):
    """Why host ``facts`` would start job sessions outside the job PAM service, or fail them, with the
    daemon values in force there (``[(key, value)]``): ``[(key, message)]``."""
    found = []
    host = facts.get("host")
    said = "recorded %s: %s, %s" % (when(facts), facts.get("os"), facts.get("sshd") or "sshd of unknown version")
    for key, value in daemons:
        if not sgeconf.needs_job_stack(value):
            continue
        service = sgeconf.pam_service(value)
        launcher = sgeconf.is_job_sshd(value) and facts.get("job_sshd") == "launcher"
        if facts.get("job_stack") != "ok":
            found.append((key, "%s: %s runs the job sshd, but its job PAM service is not right: %s (%s)"
                          % (host, key, "; ".join(facts.get("job_stack") or ["?"]), said)))
        if sgeconf.is_job_sshd(value) and facts.get("job_sshd") == "missing":
            found.append((key, "%s: %s runs %s, which is missing there (%s)"
                          % (host, key, sgeconf.program(value), said)))
        elif facts.get("pam_service_name") and not launcher and service != methods.JOB_SSHD_NAME:
            found.append((key, "%s: %s runs the job sshd %s without -o %s=%s, and %s's sshd takes its PAM service "
                          "from %s (OpenSSH 9.8 or later): job sessions would run under its 'sshd' service, untied "
                          "and open to any user at the port (%s); fix: make install with a compiler there (the "
                          "launcher), or sgewrap config ssh --tight --apply on %s"
                          % (host, key, "(a link to sshd there)" if facts.get("job_sshd") == "link" else "",
                             methods.PAM_SERVICE_OPTION, methods.JOB_SSHD_NAME, host, methods.PAM_SERVICE_OPTION,
                             said, host)))
        elif not facts.get("pam_service_name") and service is not None and not launcher:
            found.append((key, "%s: %s passes -o %s=%s, which %s's sshd (older than 9.8) refuses: every job session "
                          "there fails (%s)" % (host, key, methods.PAM_SERVICE_OPTION, service, host, said)))
        if not facts.get("module"):
            found.append((key, "%s: %s runs the job sshd, but pam_sgewrap.so is not in its PAM directory (%s)"
                          % (host, key, said)))
    return found


def judge(exec_hosts, here, facts, daemons_of):
    """What the records say of each host of ``exec_hosts`` that runs a job sshd value (``daemons_of(host)``:
    its ``[(key, value)]`` in force): ``[(severity, host, key, message)]``, severity ``error``,
    ``warning`` or ``note`` (fine).  ``here`` (checked live by the caller) only for its record's age."""
    from .common import same_host
    found = []
    for host in exec_hosts:
        daemons = [(k, v) for k, v in daemons_of(host) if sgeconf.needs_job_stack(v)]
        if not daemons:
            continue
        record = facts.get(host)
        this = bool(here) and same_host(host, here)
        if record is None:
            if not this:
                found.append(("warning", host, daemons[0][0], "%s: %s run%s the job sshd, but %s's facts were "
                              "never recorded (%s/%s): whether its sessions run under the job PAM service is not "
                              "known here; run sgewrap config ssh --tight --apply (or sgewrap facts --record) on %s"
                              % (host, ", ".join(k for k, _ in daemons), "s" * (len(daemons) == 1), host,
                                 DIRECTORY, host, host)))
            continue
        if this:
            stale = changed(record, collect(record.get("wrappers") or ""))
            if stale:
                found.append(("warning", host, "facts", "%s: this host's recorded facts are stale (%s); other "
                              "hosts' check judges it by them: sgewrap facts --record" % (
                                  host, "; ".join("%s was %r, is %r" % item for item in stale))))
            continue
        elsewhere = [(k, v) for k, v in daemons if sgeconf.is_job_sshd(v)
                     and os.path.dirname(sgeconf.program(v)) != record.get("wrappers")]
        if elsewhere:
            found.append(("warning", host, elsewhere[0][0], "%s: %s run%s %s, but %s's record describes the "
                          "wrappers in %s: record again there (sgewrap facts --record --wrappers %s)" % (
                              host, ", ".join(k for k, _ in elsewhere), "s" * (len(elsewhere) == 1),
                              sgeconf.program(elsewhere[0][1]), host, record.get("wrappers"),
                              os.path.dirname(sgeconf.program(elsewhere[0][1])))))
        wrong = problems(record, [d for d in daemons if d not in elsewhere])
        found += [("error", host, key, message) for key, message in wrong]
        if not wrong and not elsewhere:
            found.append(("note", host, None, "%s: job sshd %s, %s, job PAM service %s (recorded %s)" % (
                host, record.get("job_sshd"), record.get("sshd"), record.get("job_stack"), when(record))))
    return found


def record_here(wrappers_dir, report=print):
    """Record this host's facts (as ``--apply`` does); a note instead of an error where the common directory
    cannot be written (a root-squashed NFS export): the other hosts' ``check`` then lacks this one."""
    from .common import default_wrappers
    from ..rootside.frame import Cannot
    try:
        path = record(collect(wrappers_dir or default_wrappers()))
    except (OSError, AdminError, Cannot, ValueError) as err:
        report("note: cannot record this host's facts in %s: %s; sgewrap check on other hosts will say it has "
               "none" % (_safe_directory(), getattr(err, "strerror", None) or err))
        return None
    report("recorded this host's job sshd facts in %s (sgewrap check reads them on every host)" % path)
    return path


def _safe_directory():
    try:
        return directory()
    except AdminError:
        return "$SGE_ROOT/$SGE_CELL/common/" + DIRECTORY
