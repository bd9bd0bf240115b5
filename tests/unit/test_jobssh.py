"""qssh's job names, lookups and refusals; the adopt hook's records and the /proc socket table."""
import os
import socket
import subprocess
import sys

import pytest

from sgewrap import jobssh
from sgewrap.errors import BAD_HOST, WrapperError
from sgewrap.jobssh import Refused, Target, choose, parse_name, task_lines
from sgewrap.rootside import adopt, procs


@pytest.mark.parametrize("name,target", [
    ("1234.job", Target("1234")),
    ("1234.7.job", Target("1234", "7")),
    ("node3.1234.job", Target("1234", None, "node3")),
    ("node3.1234.7.job", Target("1234", "7", "node3")),
    ("Node3.Example.ORG.99.JOB", Target("99", None, "node3.example.org")),
])
def test_job_names(name, target):
    assert parse_name(name) == target


@pytest.mark.parametrize("name", ["job", ".job", "1234", "1234.job.node3", "abc.job", "node3.job", "0.job",
                                  "1.2.3.job", "-x.1.job", "a..1.job", "1234.x7.job", "12345678901.job",
                                  "node;rm.1.job", "1\u0661.job", "node3.10.job.job"])
def test_garbage_is_no_job_name(name):
    with pytest.raises(WrapperError) as err:
        parse_name(name)
    assert err.value.code == BAD_HOST and "is not a job name" in str(err.value)


QSTAT_G_T = """job-ID  prior   name       user         state submit/start at     queue         master ja-task-ID
------------------------------------------------------------------------------------------------------------------
   2662 0.25000 sleep      sgetest      r     11/30/2026 19:31:53 open.q@node3                   MASTER 1
   2662 0.25000 sleep      sgetest      r     11/30/2026 19:31:53 open.q@node3                   MASTER 2
   2663 0.75000 sleep      sgetest      r     11/30/2026 19:31:53 open.q@node3                   MASTER
   2661 0.25000 sleep      sgetest      s     11/30/2026 19:31:53 test.q@vm                      MASTER
   2663 0.75000 sleep      sgetest      r     11/30/2026 19:31:53 test.q@vm                      SLAVE
   2664 0.75000 sleep      sgetest      qw    11/30/2026 19:31:50                                    1
   2665 0.75000 sleep      sgetest      dr    11/30/2026 19:31:53 test.q@vm                      MASTER
"""


@pytest.mark.parametrize("name,answer", [
    ("2662.2.job", ("2", "node3")),
    ("2663.job", ("1", "node3")),
    ("vm.2663.job", ("1", "vm")),
    ("2662.job", "job 2662 is an array job: name a task, 2662.TASK.job (running: 1, 2)"),
    ("2662.5.job", "job 2662 has no task 5 running"),
    ("node2.2663.job", "job 2663 does not run on node2 (it runs on node3, vm)"),
    ("2661.job", "job 2661 is suspended (state s)"),
    ("2664.job", "job 2664 is not running yet (state qw)"),
    ("2665.job", "job 2665 is being deleted"),
    ("2666.job", "job 2666 is not running"),
])
def test_choose_a_task_or_say_why_not(name, answer):
    tasks = task_lines(QSTAT_G_T)
    if isinstance(answer, tuple):
        assert choose(parse_name(name), "sgetest", "sgetest", tasks) == answer
    else:
        with pytest.raises(Refused) as err:
            choose(parse_name(name), "sgetest", "sgetest", tasks)
        assert str(err.value) == answer and err.value.code == jobssh.REFUSED


def test_another_users_job_is_refused_whatever_runs():
    with pytest.raises(Refused, match=r"^job 2663 is not yours \(it is sgeother's\)$"):
        choose(parse_name("2663.job"), "sgeother", "sgetest", task_lines(QSTAT_G_T))


def test_record_names_match_what_the_node_reads():
    assert jobssh.record_name("10.201.0.1", 40000) == adopt.record_name(("10.201.0.1", 40000)) \
        == "qssh_10.201.0.1_40000"
    assert jobssh.record_name("::ffff:10.0.0.1", 5) == "qssh_10.0.0.1_5"
    assert jobssh.RECORD_PREFIX == adopt.RECORD_PREFIX


def test_qssh_passes_ssh_options_and_the_command():
    assert jobssh._split_ssh(["-L", "8888:localhost:8888", "-vN", "-oX=y", "-p22", "--", "ls", "-l"]) == (
        ["-L", "8888:localhost:8888", "-vN", "-oX=y", "-p22"], ["ls", "-l"])
    assert jobssh._split_ssh(["-vl", "me", "hostname"]) == (["-vl", "me"], ["hostname"])


TCP = b"""  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0 100 0 0 10 0
   1: 0100007F:0016 0100007F:9C40 01 00000000:00000000 02:000A7F3A 00000000     0        0 2222 2 0 20 4 30 10 -1
   2: 020011AC:0016 010011AC:C350 06 00000000:00000000 02:000A7F3A 00000000     0        0 0 3 0
garbage
"""
TCP6 = b"\n".join([
    b"  sl  local_address                         remote_address                        st tx_queue rx_queue ...",
    b"   0: 0000000000000000FFFF00000100007F:0016 0000000000000000FFFF00000201A8C0:A411 01 00000000:00000000 "
    b"00:00000000 00000000     0        0 3333 1 0 20 4 30 10 -1",
    b"   1: 00000000000000000000000001000000:0016 00000000000000000000000001000000:A412 01 00000000:00000000 "
    b"00:00000000 00000000     0        0 4444 1 0 20 4 30 10 -1", b""])


@pytest.mark.skipif(sys.byteorder != "little", reason="the sample tables are a little-endian host's")
def test_the_proc_socket_tables_parse():
    rows = procs.parse_tcp_table(TCP)
    assert rows[1] == (("127.0.0.1", 22), ("127.0.0.1", 40000), "01", 2222)
    assert rows[2][1] == ("172.17.0.1", 50000) and len(rows) == 3
    rows6 = procs.parse_tcp_table(TCP6)
    assert rows6[0][1] == ("192.168.1.2", 42001) and rows6[1][1] == ("::1", 42002)


def test_the_peer_of_a_process_holding_one_connection_is_read_from_proc():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    child = subprocess.Popen([sys.executable, "-c", "import socket, sys, time; s = socket.create_connection("
                              "('127.0.0.1', %d)); print(s.getsockname()[1], flush=True); time.sleep(30)"
                              % listener.getsockname()[1]], stdout=subprocess.PIPE, text=True)
    try:
        conn, address = listener.accept()
        port = int(child.stdout.readline())
        assert procs.connection_peer(child.pid) == ("127.0.0.1", listener.getsockname()[1])
        assert address == ("127.0.0.1", port)
        assert procs.connection_peer(os.getpid()) == ("127.0.0.1", port)      # the accepted end
        assert procs.connection_peer(child.pid, start=procs.stat_of(child.pid).start + 1) is None
        second = socket.create_connection(listener.getsockname())
        assert procs.connection_peer(os.getpid()) is None         # two connections: none is the one
        second.close()
        conn.close()
    finally:
        child.kill()
        child.wait()
        listener.close()


QSTAT_J = """==============================================================
job_number:                 2661
owner:                      sgetest
context:                    qssh_10.0.0.1_40000=1@vm,other=x
==============================================================
job_number:                 2662
owner:                      sgetest
job-array tasks:            1-2:1
context:                    qssh_10.0.0.1_40001=2@node3
"""


def test_records_are_read_per_job():
    assert adopt.job_blocks(QSTAT_J) == [("2661", "sgetest", {"qssh_10.0.0.1_40000": "1@vm", "other": "x"}),
                                         ("2662", "sgetest", {"qssh_10.0.0.1_40001": "2@node3"})]


class FakeJob:
    def __init__(self, key):
        self.key, self.job_id = key, key.split(".")[0]


def test_a_record_picks_its_task_here_or_refuses():
    tasks = [FakeJob("7.1/2.vm"), FakeJob("7.1"), FakeJob("8.3")]
    assert adopt.recorded_task([("7", "1")], tasks, ("10.0.0.1", 5)).key == "7.1"     # the oldest
    assert adopt.recorded_task([("8", "3")], tasks, ("10.0.0.1", 5)).key == "8.3"
    with pytest.raises(adopt.Decision, match="for job 8.2 .qssh., which has no task running on this host"):
        adopt.recorded_task([("8", "2")], tasks, ("10.0.0.1", 5))
    with pytest.raises(adopt.Decision, match="2 of your jobs record this connection"):
        adopt.recorded_task([("7", "1"), ("8", "3")], tasks, ("10.0.0.1", 5))
