"""The job sshd's launcher (wrappers/native/sge_sshd.c), built with its paths pointed into a scratch
directory: it decides at each start how sshd selects the job PAM service (Debian 13 issue, step 2)
and starts it with a fixed environment, writing nothing to the client's socket (fds 1 and 2)."""
import subprocess

import pytest

from sgewrap import methods
from sgewrap.admin import pammodule

#: a stand-in sshd (compiled: a script would lose its argv[0]) writing its argv and environment to "ran"
FAKE_SSHD = r"""
#include <stdio.h>
#include <string.h>
extern char **environ;
int main(int argc, char **argv) {
    char path[4096];
    snprintf(path, sizeof path, "%s", RAN);
    FILE *f = fopen(path, "w");
    for (int i = 0; i < argc; i++) fprintf(f, "%s\n", argv[i]);
    fprintf(f, "ENV\n");
    for (char **e = environ; *e; e++) fprintf(f, "%s\n", *e);
    fclose(f);
    return 0;
}
"""


@pytest.fixture
def tree(tmp_path):
    """A launcher whose sshd, sshd-session marker and job sshd configuration are in ``tmp_path``."""
    assert pammodule.can_build() is None, pammodule.can_build()
    header = pammodule.header()
    paths = {"SSHD": tmp_path / "sshd", "SSHD_SESSION": tmp_path / "sshd-session",
             "JOB_SSHD_CONFIG": tmp_path / "sge-sshd_config"}
    for name, path in paths.items():
        header = header.replace('#define SGEWRAP_%s "%s"' % (name, getattr(methods, name)),
                                '#define SGEWRAP_%s "%s"' % (name, path))
        assert str(path) in header
    inc = tmp_path / "inc"
    inc.mkdir()
    (inc / pammodule.HEADER).write_text(header)
    exe = tmp_path / "sge-sshd"
    argv = pammodule.build_argv(str(exe), str(inc), source=pammodule.LAUNCHER_SOURCE)
    proc = subprocess.run(argv, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    (tmp_path / "fake.c").write_text(FAKE_SSHD)
    subprocess.run(["cc", "-DRAN=\"%s\"" % (tmp_path / "ran"), "-o", str(paths["SSHD"]), str(tmp_path / "fake.c")],
                   check=True)
    paths["exe"] = exe
    paths["ran"] = tmp_path / "ran"
    return paths


def launch(tree, *args, env=None):
    proc = subprocess.run([str(tree["exe"])] + list(args), capture_output=True, text=True,
                          env=env if env is not None else {"LD_PRELOAD": "/nonexistent/evil.so", "PYTHONPATH": "/x",
                                                           "SGE_TASK_ID": "1", "PATH": "/home/u/bin"})
    ran = tree["ran"].read_text().split("ENV\n") if tree["ran"].exists() else None
    return proc, ran


def test_openssh_9_2_the_name_selects_the_service_and_the_environment_is_fixed(tree):
    proc, ran = launch(tree, "-i")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")     # no loader message: static
    assert ran[0].split("\n")[:-1] == [methods.JOB_SSHD_NAME, "-i"]
    assert ran[1].split() == ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]


def test_openssh_9_8_and_later_get_the_option_before_the_daemon_value_s_words(tree):
    tree["SSHD_SESSION"].write_text("")
    proc, ran = launch(tree, "-i", "-o", "PamServiceName=sshd")
    assert proc.returncode == 0
    assert ran[0].split("\n")[:-1] == [methods.JOB_SSHD_NAME, "-o", "PamServiceName=sge-sshd", "-i", "-o",
                                       "PamServiceName=sshd"]        # sshd keeps the first value: ours


def test_the_job_sshd_configuration_is_given_when_it_is_root_s_and_refused_when_others_may_write_it(tree):
    tree["JOB_SSHD_CONFIG"].write_text("Include /etc/ssh/sshd_config\n")
    tree["JOB_SSHD_CONFIG"].chmod(0o644)
    proc, ran = launch(tree, "-i")
    assert proc.returncode == 0 and ran[0].split("\n")[:-1] == [
        methods.JOB_SSHD_NAME, "-f", str(tree["JOB_SSHD_CONFIG"]), "-i"]
    tree["ran"].unlink()
    tree["JOB_SSHD_CONFIG"].chmod(0o666)
    proc, ran = launch(tree, "-i")
    assert (proc.returncode, proc.stdout, proc.stderr, ran) == (1, "", "", None)


def test_no_sshd_refuses_silently_to_the_client(tree):
    tree["SSHD"].unlink()
    proc, ran = launch(tree, "-i")
    assert (proc.returncode, proc.stdout, proc.stderr, ran) == (1, "", "", None)
