"""Trust between the cluster's hosts for ssh, from what each host's root published (its record,
:mod:`sgewrap.admin.hostfacts`): the host keys every ssh client knows, and host-based authentication.

**Host keys** (every method).  A job sshd listens on a random port, so a user's ssh looks up
``[node]:PORT``: the system-wide ``/etc/ssh/ssh_known_hosts`` gets a managed block listing, for
every recorded host of the cluster, its names and addresses, each also as ``[NAME]:*``, with the
public keys that host's root published: never a key learnt on first use.

**Host-based authentication** (``--hostbased``; remote_startup(5) recommends it): scoped to what
needs it.

- the job sshds: ``HostbasedAuthentication yes`` and ``HostbasedUsesNameFromPacketOnly yes`` in their
  own configuration (``/etc/ssh/sge-sshd_config``, which the site's port-22 sshd never reads);
- who may come in: ``/etc/ssh/shosts.equiv`` gets a managed block of the cluster's hosts (submit and
  execution hosts, ``qconf -ss``/``-sel``, each by its names and addresses), and nothing else;
  ``IgnoreRhosts`` stays as it is (users' ``.rhosts``/``.shosts`` are not read); root never logs in
  this way (sshd does not honour ``shosts.equiv`` for root);
- the client side: a drop-in ``/etc/ssh/ssh_config.d/sgewrap-hostbased.conf`` (``EnableSSHKeysign
  yes``, read by the setuid ``ssh-keysign``, and ``HostbasedAuthentication yes`` for the cluster's
  hosts only).

**The port-22 sshd** keeps ``HostbasedAuthentication no`` (STIG and CIS baselines require it) unless
the administrator asks (``--hostbased-port22``): ``--tunnel`` reaches a job sshd through port 22, and
that hop of a user without a key then needs it.  A drop-in ``/etc/ssh/sshd_config.d/sgewrap-hostbased.conf``
says ``HostbasedAuthentication yes`` there (read first by Debian's sshd_config); the same equivalence
block limits it to the cluster's hosts; the peer is named by its address (``UseDNS no``), which the
block and ``ssh_known_hosts`` list for every recorded host.  The listening sshd is reloaded.
**Kerberos** (``--gssapi``, ``--gssapi-delegate``; remote_startup(5) names GSSAPI as a reason to use ssh):
the job sshds get ``GSSAPIAuthentication yes`` (and ``GSSAPICleanupCredentials yes``: a delegated cache
goes with its session) in their own configuration; the *_command entries carry the wrappers' option.
The realm, the KDC and the hosts' keytabs are the site's: :func:`gssapi_problems` says what this host
lacks (the job sshd's options, ``/etc/krb5.conf``, a ``host/NAME`` key in ``/etc/krb5.keytab``).

Each file is a managed block or a drop-in; removing it gives the file back as it was.
"""
import os

from .. import methods
from . import pam, sgeconf

KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"
SHOSTS_EQUIV = "/etc/ssh/shosts.equiv"
CLIENT_DROPIN = "/etc/ssh/ssh_config.d/sgewrap-hostbased.conf"
SSH_KEYSIGN = "/usr/lib/openssh/ssh-keysign"
BEGIN = "# sgewrap: begin %s (written by sgewrap; do not edit inside, sgewrap config --restore takes it out)"
END = "# sgewrap: end %s"
KNOWN_HOSTS_WHAT = "the cluster's host keys"
SHOSTS_WHAT = "the cluster's hosts, for host-based authentication of the job sshds"
DROPIN_MARK = "# sgewrap: host-based authentication to the cluster's hosts"
#: the job sshds' own options for host-based authentication (above the Include of the site's file)
JOB_SSHD_HOSTBASED = ("HostbasedAuthentication yes", "HostbasedUsesNameFromPacketOnly yes")
SSHD_DROPIN = "/etc/ssh/sshd_config.d/sgewrap-hostbased.conf"
SSHD_DROPIN_MARK = "# sgewrap: host-based authentication on port 22, for the --tunnel hop"
SSHD_PID_FILE = "/run/sshd.pid"
#: the job sshds' own options for Kerberos (GSSAPI): the port-22 sshd's setting stays the site's
JOB_SSHD_GSSAPI = ("GSSAPIAuthentication yes", "GSSAPICleanupCredentials yes")
KRB5_CONF = "/etc/krb5.conf"
KRB5_KEYTAB = "/etc/krb5.keytab"


def patterns(record):
    """The known_hosts patterns of a host: each name and address, plain and as ``[x]:*`` (any port)."""
    words = list(record.get("names") or [record["host"]]) + list(record.get("addresses") or [])
    out = []
    for word in words:
        for pattern in (word, "[%s]:*" % word):
            if pattern not in out:
                out.append(pattern)
    return out


def known_hosts_body(records):
    """The lines of the known-hosts block: one per host key of every record."""
    lines = []
    for name in sorted(records):
        record = records[name]
        for key in record.get("host_keys") or ():
            lines.append("%s %s" % (",".join(patterns(record)), key))
    return lines


#: the line of the shosts.equiv block that keeps ``--hosts`` for later refreshes (sshd skips comments)
HOSTS_NOTE = "# --hosts "


def parse_hosts(spec):
    """``--hosts`` (``H1,H2``: only these; ``+H1,H2``: these besides Grid Engine's submit and execution
    hosts) as (add, [names]); ValueError with the reason."""
    import re
    add = spec.startswith("+")
    names = [n for n in spec[add:].split(",") if n]
    bad = [n for n in names if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.:-]*", n)]
    if not names or bad:
        raise ValueError("--hosts %r: expected host names separated by commas, a leading + to add them to Grid "
                         "Engine's hosts%s" % (spec, " (not a host name: %s)" % ", ".join(bad) if bad else ""))
    return add, names


def chosen_hosts(spec, grid_engine_hosts):
    """The hosts host-based logins cover: Grid Engine's (qconf -ss, -sel), or as ``--hosts`` ``spec`` says."""
    if not spec:
        return list(grid_engine_hosts)
    add, names = parse_hosts(spec)
    return list(dict.fromkeys((list(grid_engine_hosts) if add else []) + names))


def equiv_words(equiv=SHOSTS_EQUIV):
    """The names and addresses the shosts.equiv block admits."""
    return [line for line in block_lines(equiv, SHOSTS_WHAT) if not line.startswith("#")]


def hosts_spec(equiv=SHOSTS_EQUIV):
    """The ``--hosts`` the block of ``equiv`` was written with, or None."""
    return next((line[len(HOSTS_NOTE):] for line in block_lines(equiv, SHOSTS_WHAT)
                 if line.startswith(HOSTS_NOTE)), None)


def equiv_body(records, hosts):
    """The lines of the shosts.equiv block: every name and address of ``hosts`` (recorded ones by their
    records, the others by name)."""
    lines = []
    for host in sorted(set(hosts)):
        record = records.get(host) or {}
        for word in list(record.get("names") or [host]) + list(record.get("addresses") or []):
            if word not in lines:
                lines.append(word)
    return lines


def client_text(records, hosts):
    words = " ".join(equiv_body(records, hosts))
    return "\n".join((
        DROPIN_MARK + " (written by sgewrap config ssh --hostbased --apply;",
        "# removed by sgewrap config --restore).  ssh-keysign reads EnableSSHKeysign outside any Host block.",
        "EnableSSHKeysign yes",
        "Host " + words,
        "    HostbasedAuthentication yes",
        ""))


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return None


def without_block(text, what):
    """``text`` with sgewrap's block ``what`` taken out (exactly as it was before the block went in)."""
    begin, end = BEGIN % what, END % what
    lines = text.splitlines(True)
    out, inside = [], False
    for line in lines:
        bare = line.rstrip("\n")
        if bare == begin:
            inside = True
        elif inside and bare == end:
            inside = False
        elif not inside:
            out.append(line)
    return "".join(out)


def put_block(path, what, body):
    """Put sgewrap's block ``what`` holding ``body`` (lines) at the end of ``path`` (made if missing),
    replacing an earlier one; the rest of the file is kept byte for byte.  True if changed."""
    from ..rootside.frame import write_atomic
    old = _read(path)
    rest = without_block(old or "", what)
    if rest and not rest.endswith("\n"):
        rest += "\n"
    new = rest + "\n".join([BEGIN % what] + list(body) + [END % what]) + "\n"
    if new == old:
        return False
    write_atomic(path, new.encode(), 0o644)
    return True


def take_block(path, what):
    """Take sgewrap's block ``what`` out of ``path`` (the file goes if nothing else was in it); True if
    changed."""
    from ..rootside.frame import write_atomic
    old = _read(path)
    if old is None or (BEGIN % what) not in old.splitlines():
        return False
    rest = without_block(old, what)
    if rest:
        write_atomic(path, rest.encode(), 0o644)
    else:
        os.unlink(path)
    return True


def has_block(path, what):
    return (BEGIN % what) in (_read(path) or "").splitlines()


def block_lines(path, what):
    """The lines inside sgewrap's block ``what`` of ``path`` (empty if none)."""
    text = _read(path) or ""
    inside = text.split(BEGIN % what + "\n", 1)
    return inside[1].split(END % what, 1)[0].splitlines() if len(inside) == 2 else []


def write_known_hosts(records, path=KNOWN_HOSTS):
    return put_block(path, KNOWN_HOSTS_WHAT, known_hosts_body(records))


def write_hostbased(records, hosts, equiv=SHOSTS_EQUIV, dropin=CLIENT_DROPIN, spec=None):
    """shosts.equiv's block (with ``spec``, the ``--hosts`` that chose ``hosts``, kept in it) and the client
    drop-in; True if either changed."""
    changed = put_block(equiv, SHOSTS_WHAT, ([HOSTS_NOTE + spec] if spec else []) + equiv_body(records, hosts))
    return pam.write_marked(dropin, client_text(records, hosts), DROPIN_MARK) or changed


def remove_hostbased(equiv=SHOSTS_EQUIV, dropin=CLIENT_DROPIN):
    changed = take_block(equiv, SHOSTS_WHAT)
    return pam.remove_marked(dropin, DROPIN_MARK) or changed


def port22_problem(settings, tunnel):
    """A sentence when this host's port-22 sshd and ``--tunnel`` with host-based logins do not fit, else None:
    ``settings`` is this host's ``sshd -T`` (a dict); ``tunnel``: some slot uses --tunnel."""
    hostbased = settings.get("hostbasedauthentication", "no") == "yes"
    if tunnel and not hostbased:
        return ("the --tunnel hop to this host's port-22 sshd refuses host-based logins (HostbasedAuthentication "
                "no): users without a key cannot cross it (config ssh --hostbased --hostbased-port22, or user keys)")
    if not tunnel and os.path.exists(SSHD_DROPIN):
        return ("%s lets the port-22 sshd accept host-based logins, but no slot uses --tunnel: take it out "
                "(config ssh --hostbased --apply without --hostbased-port22)" % SSHD_DROPIN)
    return None


def sshd_dropin_text():
    return "\n".join((
        SSHD_DROPIN_MARK + " (written by sgewrap config ssh --hostbased",
        "# --hostbased-port22 --apply; removed without it).  Who: the cluster's hosts in /etc/ssh/shosts.equiv.",
        "HostbasedAuthentication yes",
        ""))


def write_port22(path=SSHD_DROPIN):
    """The port-22 drop-in; True if changed.  sshd -t must accept the result, else it goes again."""
    changed = pam.write_marked(path, sshd_dropin_text(), SSHD_DROPIN_MARK)
    if changed and path == SSHD_DROPIN:
        import subprocess
        test = subprocess.run(["/usr/sbin/sshd", "-t"], capture_output=True, text=True)
        if test.returncode != 0:
            os.unlink(path)
            raise OSError("sshd -t refused the configuration with %s (taken out again): %s" % (
                path, (test.stderr.strip().splitlines() or ["exit %d" % test.returncode])[-1]))
    return changed


def remove_port22(path=SSHD_DROPIN):
    return pam.remove_marked(path, SSHD_DROPIN_MARK)


def reload_sshd():
    """Tell the listening port-22 sshd to read its configuration again; a sentence saying what was done."""
    import signal
    import subprocess
    if os.path.isdir("/run/systemd/system"):
        done = subprocess.run(["systemctl", "reload-or-restart", "ssh.service"], capture_output=True, text=True)
        if done.returncode == 0:
            return "reloaded the port-22 sshd (systemctl reload-or-restart ssh.service)"
        return "could not reload the port-22 sshd (systemctl: %s): reload it" % (
            done.stderr.strip().splitlines() or ["exit %d" % done.returncode])[-1]
    try:
        with open(SSHD_PID_FILE) as f:
            pid = int(f.read().split()[0])
        with open("/proc/%d/comm" % pid) as f:
            if f.read().strip() != "sshd":
                raise ValueError("not sshd")
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError, IndexError):
        return "reload the port-22 sshd for it to take effect (no systemd, no sshd in %s)" % SSHD_PID_FILE
    return "reloaded the port-22 sshd (SIGHUP to %d, %s)" % (pid, SSHD_PID_FILE)


def _signing(dropin, keysign):
    """What this host's ssh lacks to sign host-based requests: sentences."""
    import stat
    found = []
    try:
        st = os.stat(keysign)
        if not (st.st_mode & stat.S_ISUID and st.st_uid == 0):
            found.append("%s is not setuid root: ssh cannot sign with this host's key" % keysign)
    except OSError as err:
        found.append("%s: %s (openssh-client)" % (keysign, err.strerror))
    if "EnableSSHKeysign yes" not in (_read(dropin) or "").splitlines():
        found.append("%s lacks EnableSSHKeysign yes (sgewrap config ssh --hostbased --apply writes it)" % dropin)
    return found


def _accepting(job_sshd_config):
    """What this host's job sshds lack to accept host-based logins: sentences."""
    config = (_read(job_sshd_config) or "").splitlines()
    return ["%s lacks '%s': the job sshds refuse host-based logins" % (job_sshd_config, option)
            for option in JOB_SSHD_HOSTBASED if option not in config]


def hostbased_problems(records, hosts, job_sshd_config=methods.JOB_SSHD_CONFIG, equiv=SHOSTS_EQUIV,
                       dropin=CLIENT_DROPIN, known_hosts=KNOWN_HOSTS, keysign=SSH_KEYSIGN):
    """What host-based authentication between the cluster's hosts lacks on this host: sentences."""
    found = _signing(dropin, keysign) + _accepting(job_sshd_config)
    covered = set(equiv_words(equiv))
    missing = [h for h in sorted(set(hosts)) if h not in covered]
    if missing:
        found.append("%s does not list %s: logins from there are refused" % (equiv, ", ".join(missing)))
    known = " ".join(block_lines(known_hosts, KNOWN_HOSTS_WHAT))
    unknown = [h for h in sorted(records) if "[%s]:*" % h not in known]
    if unknown:
        found.append("%s has no key of %s: ssh to its job sshds asks or refuses" % (known_hosts, ", ".join(unknown)))
    return found


def hostbased_facts(job_sshd_config=methods.JOB_SSHD_CONFIG, equiv=SHOSTS_EQUIV, dropin=CLIENT_DROPIN,
                    known_hosts=KNOWN_HOSTS, keysign=SSH_KEYSIGN):
    """This host's side of host-based logins, for its record (None where nothing of it is set up here):
    ``client``: what its ssh lacks to sign (sentences); ``server``: what its job sshds lack to accept;
    ``to``: the names its ssh uses host-based for; ``from``: the names and addresses its equivalence block
    admits; ``known``: the hosts whose keys its ssh_known_hosts lists (by the ``[NAME]:*`` patterns)."""
    dropin_text = _read(dropin)
    if dropin_text is None and not has_block(equiv, SHOSTS_WHAT):
        return None
    lines = (dropin_text or "").splitlines()
    to = next((line.split()[1:] for line in lines if line.startswith("Host ")), [])
    known = list(dict.fromkeys(word[1:-3] for line in block_lines(known_hosts, KNOWN_HOSTS_WHAT)
                               for word in line.split()[0].split(",") if word.startswith("[") and word.endswith("]:*")))
    return {"client": _signing(dropin, keysign), "server": _accepting(job_sshd_config), "to": to,
            "from": equiv_words(equiv), "known": known}


def _names(record):
    return set(record.get("names") or [record.get("host")]) | set(record.get("addresses") or [])


def pair_problems(records, submit_hosts, exec_hosts):
    """Host-based logins from each submit host to each execution host, judged by both hosts' records:
    ``[(severity, host, sentence)]``: a ``warning`` once per host whose record shows no host-based setup
    (or that has no record), an ``error`` per pair of set-up hosts that would be refused, saying what is
    missing where.  Empty when no record shows host-based logins set up (the cluster does not use them)."""
    if not any((r.get("hostbased") or None) for r in records.values()):
        return []
    found, ready = [], set()
    for host in list(dict.fromkeys(list(submit_hosts) + list(exec_hosts))):
        record = records.get(host)
        roles = " and ".join(role for role, hosts in (("submit", submit_hosts), ("execution", exec_hosts))
                             if host in hosts)
        if record is None:
            found.append(("warning", host, "%s (%s host) has no record: its host-based side is not known here; "
                          "sgewrap config ssh --tight --hostbased --apply there" % (host, roles)))
        elif not record.get("hostbased"):
            found.append(("warning", host, "%s (%s host) has no host-based setup: key-less users' logins %s it are "
                          "refused; sgewrap config ssh --tight --hostbased --apply there" % (
                              host, roles, "from and to" if roles.startswith("submit and") else
                              "from" if roles == "submit" else "to")))
        else:
            ready.add(host)
    for client in submit_hosts:
        for server in exec_hosts:
            if client not in ready or server not in ready:
                continue
            c, e = records[client], records[server]
            cb, eb = c["hostbased"], e["hostbased"]
            missing = ["%s: %s" % (client, why) for why in cb.get("client") or ()]
            if not _names(e) & set(cb.get("to") or ()):
                missing.append("%s's ssh does not try host-based logins to %s (its drop-in)" % (client, server))
            if server not in (cb.get("known") or ()):
                missing.append("%s does not know %s's host keys" % (client, server))
            missing += ["%s: %s" % (server, why) for why in eb.get("server") or ()]
            if not _names(c) & set(eb.get("from") or ()):
                missing.append("%s's shosts.equiv block does not admit %s" % (server, client))
            if client not in (eb.get("known") or ()):
                missing.append("%s does not know %s's host keys (it checks the client's signature with them)"
                               % (server, client))
            if missing:
                found.append(("error", server, "host-based %s -> %s is refused: %s" % (
                    client, server, "; ".join(missing))))
    return found


def cluster_hosts():
    """The cluster's submit and execution hosts (qconf -ss, -sel)."""
    from .common import UNREADABLE, run
    hosts = []
    for option in ("-ss", "-sel"):
        rc, out, _ = run([sgeconf.QCONF, option], code=UNREADABLE, retcode=None)
        hosts += [h for h in out.split() if rc == 0 and h not in hosts]
    return hosts


def refresh_trust(records):
    """After this host recorded anew (sgewrap facts --record): the blocks already here, from every record
    (``records``: a host that recorded after this one's --apply becomes known)."""
    if has_block(KNOWN_HOSTS, KNOWN_HOSTS_WHAT) and write_known_hosts(records):
        print("refreshed the cluster's host keys in %s (%s)" % (KNOWN_HOSTS, ", ".join(sorted(records))))
    spec = hosts_spec()
    if has_block(SHOSTS_EQUIV, SHOSTS_WHAT) and write_hostbased(
            records, chosen_hosts(spec, cluster_hosts()), spec=spec):
        print("refreshed %s and %s" % (SHOSTS_EQUIV, CLIENT_DROPIN))


def gssapi_configured(job_sshd_config=methods.JOB_SSHD_CONFIG):
    """True if the job sshds' configuration here has sgewrap's Kerberos options (``--gssapi``)."""
    return JOB_SSHD_GSSAPI[0] in (_read(job_sshd_config) or "").splitlines()


def keytab_principals(path=KRB5_KEYTAB):
    """The principals (``name/inst@REALM``) of a MIT keytab file (format 0x502 or 0x501); raises OSError
    (unreadable) or ValueError (not a keytab)."""
    import struct
    with open(path, "rb") as f:
        data = f.read(1 << 20)
    if data[:2] not in (b"\x05\x02", b"\x05\x01"):
        raise ValueError("not a keytab (version %r)" % data[:2])
    big = data[1] == 2
    i16, i32 = (">h", ">i") if big else ("<h", "<i")
    pos, found = 2, []
    try:
        while pos + 4 <= len(data):
            size, = struct.unpack_from(i32, data, pos)
            pos += 4
            if size <= 0:               # a hole left by a removed entry
                pos += -size
                continue
            entry, pos = data[pos:pos + size], pos + size
            count, = struct.unpack_from(i16, entry, 0)
            at, words = 2, []
            for _ in range(count + 1):  # the realm, then the components
                n, = struct.unpack_from(i16, entry, at)
                words.append(entry[at + 2:at + 2 + n].decode("utf-8", "replace"))
                at += 2 + n
            if data[1] == 1:            # 0x501 counts the realm among the components
                words = words[:-1]
            name = "/".join(words[1:]) + "@" + words[0]
            if name not in found:
                found.append(name)
    except struct.error:
        raise ValueError("a truncated keytab")
    return found


def gssapi_problems(names, commands, job_sshd_config=methods.JOB_SSHD_CONFIG, krb5_conf=KRB5_CONF,
                    keytab=KRB5_KEYTAB):
    """What Kerberos (GSSAPI) to this host's job sshds lacks here, as sentences.  ``names``: this host's
    names (the one Grid Engine gives ssh and its own host name: the client asks for ``host/NAME``, sshd
    accepts with its host name's key); ``commands``: the *_command values that run an ssh wrapper."""
    found = []
    config = (_read(job_sshd_config) or "").splitlines()
    for option in JOB_SSHD_GSSAPI:
        if option not in config:
            found.append("%s lacks '%s' (sgewrap config ssh --tight --gssapi --apply writes it)"
                         % (job_sshd_config, option))
    if not os.path.exists(krb5_conf):
        found.append("%s is missing: the job sshds know no realm" % krb5_conf)
    try:
        held = keytab_principals(keytab)
    except (OSError, ValueError) as err:
        found.append("%s: %s: the job sshds cannot accept a ticket" % (keytab, getattr(err, "strerror", None) or err))
    else:
        for name in dict.fromkeys(names):
            if not any(p.startswith("host/%s@" % name) for p in held):
                found.append("%s holds no key of host/%s: a ticket for that name is refused" % (keytab, name))
    plain = [c for c in commands if not {"--gssapi", "--gssapi-delegate"} & set(sgeconf.words(c)[1:])]
    if plain:
        found.append("%s without --gssapi or --gssapi-delegate: ssh uses the user's ticket only if an ssh_config "
                     "says so" % ", ".join(dict.fromkeys(plain)))
    return found
