"""What the kernel says about a process, for root-run code that trusts nothing else.

A process's name (``comm``), its command line and its environment are the
user's to choose or overwrite (sshd itself overwrites its environment with
its process title).  What a user cannot fake: the real uid, the start time
(clock ticks since boot: with the PID it names one process for good, a
reused PID has another start time), the executable the kernel mapped
(``/proc/PID/exe``) and the working directory (``/proc/PID/cwd``).

A **shepherd** is a process whose real uid is 0 and whose executable is a
file named ``sge_shepherd`` that belongs to root and that nobody else may
write: execd starts one per job task (and per parallel task) with the task's
spool directory as its working directory.  Stdlib only.
"""
import os
import stat

SHEPHERD = "sge_shepherd"


class Stat:
    """The fields of ``/proc/PID/stat`` this project reads."""

    __slots__ = ("pid", "state", "ppid", "sid", "start")

    def __init__(self, pid, state, ppid, start, sid=None):
        self.pid, self.state, self.ppid, self.start, self.sid = pid, state, ppid, start, sid


def parse_stat(data):
    """(state, ppid, sid, start) from the bytes of ``/proc/PID/stat``, or None if malformed.  comm may
    hold spaces and ')': the fields start after the last ')'."""
    fields = data.rsplit(b")", 1)[-1].split() if b")" in data else []
    try:
        return fields[0].decode(), int(fields[1]), int(fields[3]), int(fields[19])
    except (IndexError, ValueError, UnicodeError):
        return None


def stat_of(pid):
    """The process's :class:`Stat`, or None if there is no such process (or only a zombie)."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read()
    except (OSError, ValueError, OverflowError):
        return None
    parsed = parse_stat(data)
    if parsed is None or parsed[0] in ("Z", "X"):
        return None
    state, ppid, sid, start = parsed
    return Stat(pid, state, ppid, start, sid)


def real_uid(pid):
    """The real uid of the process (a setuid program run by a user keeps the user's), or None."""
    try:
        with open("/proc/%d/status" % pid, "rb") as f:
            for line in f:
                if line.startswith(b"Uid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def link(pid, name):
    """``/proc/PID/NAME`` (``exe``, ``cwd``) as the kernel resolves it, or None."""
    try:
        target = os.readlink("/proc/%d/%s" % (pid, name))
    except OSError:
        return None
    return None if target.endswith(" (deleted)") else target


def is_root_owned_program(path):
    """True for a regular file owned by root that neither group nor others may write."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_uid == 0 and not st.st_mode & 0o022


def is_shepherd(pid):
    """True if ``pid`` is a Grid Engine shepherd (by real uid and executable, never by name)."""
    exe = link(pid, "exe")
    return (exe is not None and os.path.basename(exe) == SHEPHERD and real_uid(pid) == 0
            and is_root_owned_program(exe))


def shepherd_spool(pid):
    """The spool directory a shepherd works in (its cwd), or None if ``pid`` is no shepherd."""
    if not is_shepherd(pid):
        return None
    return link(pid, "cwd")


def shepherds():
    """{PID: spool directory} of every running shepherd."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            spool = shepherd_spool(int(entry))
            if spool:
                found[int(entry)] = spool
    return found


def connection_monitor(pid):
    """The sshd monitor that ``pid`` (the process running PAM's account step) serves: ``pid`` itself,
    or, for a keyboard-interactive login, whose PAM conversation OpenSSH runs in a forked ``[pam]``
    child of the monitor (measured on 9.2 and 10), that child's parent.  The child is recognised by
    what its user cannot set: it runs the monitor's own executable as root and is in the monitor's
    session without leading one (the monitor of a listening sshd leads its session; a job sshd's
    parent is a shepherd, another executable).  (PID, Stat) or None."""
    st = stat_of(pid)
    if st is None:
        return None
    parent = st.ppid
    if (st.sid == parent and st.sid != pid and real_uid(pid) == 0 and real_uid(parent) == 0
            and link(pid, "exe") is not None and link(pid, "exe") == link(parent, "exe")):
        pst = stat_of(parent)
        return (parent, pst) if pst is not None else None
    return pid, st


def alive_as(pid, start):
    """True if the process ``pid`` that started at ``start`` (clock ticks) still runs as root."""
    st = stat_of(pid)
    return st is not None and st.start == start and real_uid(pid) == 0


def groups_of(pid):
    """The supplementary group ids of process ``pid`` (an empty set if it is gone or a zombie: a
    zombie runs nothing and cannot be killed again)."""
    try:
        with open("/proc/%d/status" % pid, "rb") as f:
            for line in f:
                if line.startswith(b"State:") and line.split()[1:2] == [b"Z"]:
                    return set()
                if line.startswith(b"Groups:"):
                    return {int(g) for g in line.split()[1:]}
    except (OSError, ValueError):
        pass
    return set()


def kill_group(gid, sig=9, rounds=20):
    """Send ``sig`` to every process carrying the supplementary group ``gid`` (what Grid Engine's
    ENABLE_ADDGRP_KILL does), again until none is left (a process may fork meanwhile) or
    ``rounds`` are done; the PIDs signalled.  Only root gives a process a job's group id; which ids
    are jobs' is the caller's to check (:func:`sgewrap.rootside.gidrange.reapable`), and 0 never is."""
    if not 0 < gid <= 0x7fffffff:
        raise ValueError("not a job's group id: %r" % gid)
    me = os.getpid()
    signalled = set()
    for _ in range(rounds):
        found = [pid for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
                 if pid != me and gid in groups_of(pid)]
        if not found:
            break
        for pid in found:
            try:
                os.kill(pid, sig)
                signalled.add(pid)
            except OSError:
                pass
    return sorted(signalled)


#: ``/proc/PID/net/tcp`` state of an established connection
TCP_ESTABLISHED = "01"


def _hex_address(text):
    """An address of ``/proc/net/tcp[6]`` (each 32-bit word printed in the host's byte order) as a string;
    an IPv4-mapped IPv6 address as IPv4 (what a peer reaching a dual-stack sshd over IPv4 looks like)."""
    import ipaddress
    import sys
    raw = bytes.fromhex(text)
    if len(raw) not in (4, 16):
        raise ValueError("not an address: %r" % text)
    if sys.byteorder == "little":
        raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    ip = ipaddress.ip_address(raw)
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return str(ip)


def parse_tcp_table(data):
    """[(local (address, port), remote (address, port), state, inode)] of the bytes of
    ``/proc/PID/net/tcp`` or ``tcp6``; malformed lines are skipped."""
    found = []
    for line in data.decode("ascii", "replace").splitlines()[1:]:
        fields = line.split()
        try:
            (la, lp), (ra, rp) = (f.split(":") for f in fields[1:3])
            found.append(((_hex_address(la), int(lp, 16)), (_hex_address(ra), int(rp, 16)), fields[3],
                          int(fields[9])))
        except (ValueError, IndexError):
            continue
    return found


def socket_inodes(pid):
    """The inodes of the sockets process ``pid`` holds open (``/proc/PID/fd/N -> socket:[INODE]``)."""
    found = set()
    try:
        names = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return found
    for name in names:
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, name))
        except OSError:
            continue
        if target.startswith("socket:[") and target.endswith("]") and target[8:-1].isdigit():
            found.add(int(target[8:-1]))
    return found


def connection_peer(pid, start=None):
    """(address, port) of the one established TCP connection process ``pid`` holds (an sshd monitor: its
    client), from the kernel's socket table in the process's own network namespace; None if it holds
    none or several, or is not (any more) the process that started at ``start``.  The client chose
    these numbers only as the source of its connection: nothing it sends is read."""
    inodes = socket_inodes(pid)
    peers = set()
    for table in ("tcp", "tcp6"):
        try:
            with open("/proc/%d/net/%s" % (pid, table), "rb") as f:
                data = f.read()
        except OSError:
            continue
        peers.update((remote, inode) for _, remote, state, inode in parse_tcp_table(data)
                     if state == TCP_ESTABLISHED and inode in inodes)
    if start is not None and not alive_as(pid, start):
        return None
    return next(iter(peers))[0] if len(peers) == 1 else None
