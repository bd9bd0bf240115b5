"""sgewrap.rootside.jobspool: what root may believe about a job, read from its spool directory."""
import os
import pwd
import stat

import pytest

from lib import make_spool, need_root
from sgewrap.rootside import jobspool


@pytest.fixture
def spool(tmp_path):
    """A fake job spool directory: active_jobs/8.1 with addgrpid, environment and config."""
    for p in (tmp_path, tmp_path.parent):
        assert not os.stat(p).st_mode & 0o022 or os.stat(p).st_mode & stat.S_ISVTX
    return make_spool(tmp_path, 65499, "sgetest", job_id=8)


def trust(*args):
    return jobspool.Trust(*args)


class Ctx:
    def __init__(self, job):
        self.spool, self.gid = job.spool, job.gid


def job_context(environ, t):
    value = environ.get("SGE_JOB_SPOOL_DIR")
    if not value:
        raise jobspool.NoJob("SGE_JOB_SPOOL_DIR is not set")
    return Ctx(jobspool.read_job(value, t, max_bytes=1011))


# --- the job context (node_access session reads it from the shepherd's cwd) -----------------


def test_valid_job_context(spool):
    ctx = job_context({"SGE_JOB_SPOOL_DIR": spool}, trust())
    assert (ctx.spool, ctx.gid) == (spool, 65499)


def test_symlinked_spool_dir_is_given_canonical(spool, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(spool)
    assert job_context({"SGE_JOB_SPOOL_DIR": str(link)}, trust()).spool == spool


def no_job(environ, why):
    with pytest.raises(jobspool.NoJob) as e:
        job_context(environ, trust())
    assert why in str(e.value)


def test_no_job_without_variable():
    no_job({}, "not set")
    no_job({"SGE_JOB_SPOOL_DIR": ""}, "not set")


def test_no_job_relative(spool):
    no_job({"SGE_JOB_SPOOL_DIR": "active_jobs/8.1"}, "not absolute")


@pytest.mark.parametrize("bad", ["/tmp/x\n/etc", "/tmp/x\r", "/tmp/\x1b[31m", "/tmp/\x7f"])
def test_no_job_control_characters(bad):
    no_job({"SGE_JOB_SPOOL_DIR": bad}, "control characters")


def test_no_job_symlink_to_a_name_with_newline(spool, tmp_path):
    evil = tmp_path / "a\nb"
    os.rename(spool, evil)
    (tmp_path / "link").symlink_to(evil)
    no_job({"SGE_JOB_SPOOL_DIR": str(tmp_path / "link")}, "control characters")


def test_no_job_too_long_for_the_pam_module(tmp_path):
    no_job({"SGE_JOB_SPOOL_DIR": "/" + "a" * 1011}, "too long")


def test_no_job_missing_or_not_a_directory(spool):
    no_job({"SGE_JOB_SPOOL_DIR": spool + "/nope"}, "No such file")
    no_job({"SGE_JOB_SPOOL_DIR": spool + "/addgrpid"}, "not a directory")


@pytest.mark.parametrize("name", ["addgrpid", "environment"])
def test_no_job_without_each_file(spool, name):
    os.unlink(os.path.join(spool, name))
    no_job({"SGE_JOB_SPOOL_DIR": spool}, name)


@pytest.mark.parametrize("name", ["addgrpid", "environment"])
def test_no_job_when_a_file_is_a_symlink(spool, tmp_path, name):
    target = tmp_path / "elsewhere"
    target.write_text("42\n")
    os.unlink(os.path.join(spool, name))
    os.symlink(target, os.path.join(spool, name))
    no_job({"SGE_JOB_SPOOL_DIR": spool}, "not a regular file")


@pytest.mark.parametrize("content", ["0\n", "abc\n", "-5\n", "99999999999\n", "", "4294967295\n", "12 13\n",
                                     "\u0661\u0662\n"])
def test_no_job_bad_addgrpid(spool, content):
    with open(os.path.join(spool, "addgrpid"), "w", encoding="utf-8") as f:
        f.write(content)
    no_job({"SGE_JOB_SPOOL_DIR": spool}, "not a group id")


@pytest.mark.parametrize("target,mode,why", [
    ("spool", 0o777, "writable by group or others"),
    ("spool", 0o775, "writable by group or others"),
    ("parent", 0o777, "above the job spool directory is writable"),
    ("addgrpid", 0o666, "writable by group or others"),
    ("environment", 0o664, "writable by group or others"),
])
def test_no_job_when_writable_by_others(spool, target, mode, why):
    path = {"spool": spool, "parent": os.path.dirname(spool)}.get(target, os.path.join(spool, target))
    os.chmod(path, mode)
    no_job({"SGE_JOB_SPOOL_DIR": spool}, why)


def test_sticky_world_writable_parent_is_fine(spool):
    os.chmod(os.path.dirname(spool), 0o1777)
    assert job_context({"SGE_JOB_SPOOL_DIR": spool}, trust()).gid == 65499


def test_no_job_when_owned_by_a_user(spool):
    """An ordinary user's directory (here: nobody's) must not pass, or she picks any gid."""
    need_root()
    os.chown(spool, pwd.getpwnam("nobody").pw_uid, -1)
    no_job({"SGE_JOB_SPOOL_DIR": spool}, "owned by uid %d" % pwd.getpwnam("nobody").pw_uid)


@pytest.mark.parametrize("target", ["parent", "addgrpid", "environment"])
def test_no_job_when_anything_is_owned_by_a_user(spool, target):
    need_root()
    path = os.path.dirname(spool) if target == "parent" else os.path.join(spool, target)
    os.chown(path, pwd.getpwnam("nobody").pw_uid, -1)
    no_job({"SGE_JOB_SPOOL_DIR": spool}, "owned by uid")


def test_admin_owned_spool_tree_is_trusted(spool):
    need_root()
    nobody = pwd.getpwnam("nobody").pw_uid
    for path in (spool, os.path.dirname(spool), os.path.join(spool, "addgrpid")):
        os.chown(path, nobody, -1)
    assert job_context({"SGE_JOB_SPOOL_DIR": spool}, jobspool.Trust(None, ["nobody"])).gid == 65499


def test_admin_from_bootstrap_is_trusted(spool, tmp_path):
    need_root()
    nobody = pwd.getpwnam("nobody").pw_uid
    os.chown(spool, nobody, -1)
    root = tmp_path / "sge"
    write_bootstrap(root, "default", "nobody")
    assert job_context({"SGE_JOB_SPOOL_DIR": spool}, jobspool.Trust(str(root))).gid == 65499
    with pytest.raises(jobspool.NoJob) as e:
        job_context({"SGE_JOB_SPOOL_DIR": spool}, jobspool.Trust(None))
    assert "give --sge-root or --admin-user" in str(e.value)


def test_read_job_names_owner_key_and_gid(spool):
    job = jobspool.read_job(spool, trust())
    assert (job.key, job.job_id, job.owner, job.gid) == ("8.1", "8", "sgetest", 65499)


def test_a_parallel_task_is_keyed_below_its_job(spool):
    pe = os.path.join(spool, "1.vm")
    os.mkdir(pe, 0o755)
    config = "job_owner=sgetest\njob_id=8\npe_task_id=1.vm\n"
    for name, text in (("addgrpid", "65500\n"), ("environment", ""), ("config", config)):
        with open(os.path.join(pe, name), "w") as f:
            f.write(text)
        os.chmod(os.path.join(pe, name), 0o644)
    job = jobspool.read_job(pe, trust())
    assert (job.key, job.gid) == ("8.1/1.vm", 65500)


@pytest.mark.parametrize("config,why", [
    ("job_id=8\n", "job_owner"), ("job_owner=-rf\njob_id=8\n", "job_owner"),
    ("job_owner=sgetest\njob_id=9\n", "not the spool directory of job"),
])
def test_a_config_that_does_not_fit_is_no_job(spool, config, why):
    with open(os.path.join(spool, "config"), "w") as f:
        f.write(config)
    with pytest.raises(jobspool.NoJob) as e:
        jobspool.read_job(spool, trust())
    assert why in str(e.value)


# --- SGE_ROOT and the admin user ------------------------------------------------------------


def test_sge_root_from_the_installed_location(fake_sge_root):
    script = fake_sge_root / "util" / "resources" / "wrappers" / "rshdwrapper"
    assert jobspool.sge_root_from(str(script)) == str(fake_sge_root)


def test_sge_root_through_a_symlinked_util_directory(fake_sge_root, tmp_path):
    """Debian: /var/lib/gridengine/util -> /usr/share/gridengine/util."""
    elsewhere = tmp_path / "share"
    elsewhere.mkdir()
    os.rename(fake_sge_root / "util", elsewhere / "util")
    (fake_sge_root / "util").symlink_to(elsewhere / "util")
    script = fake_sge_root / "util" / "resources" / "wrappers" / "rshdwrapper"
    assert jobspool.sge_root_from(str(script)) == str(fake_sge_root)


def test_no_sge_root_without_markers_or_layout(tmp_path):
    wrappers = tmp_path / "util" / "resources" / "wrappers"
    wrappers.mkdir(parents=True)
    assert jobspool.sge_root_from(str(wrappers / "rshdwrapper"), ()) is None      # no utilbin, no bootstrap
    (tmp_path / "utilbin").mkdir()
    assert jobspool.sge_root_from(str(wrappers / "rshdwrapper"), ()) == str(tmp_path)
    assert jobspool.sge_root_from(str(tmp_path / "rshdwrapper"), ()) is None      # not in util/resources/wrappers
    assert jobspool.sge_root_from("rshdwrapper", ()) is None
    assert jobspool.sge_root_from("", ()) is None


def test_packaged_sge_root_is_the_fallback(tmp_path):
    packaged = tmp_path / "gridengine"
    assert jobspool.sge_root_from(str(tmp_path / "x" / "rshdwrapper"), (str(packaged),)) is None
    write_bootstrap(packaged, "default", "nobody")
    assert jobspool.sge_root_from(str(tmp_path / "x" / "rshdwrapper"), (str(packaged),)) == str(packaged)
    assert jobspool.FALLBACK_SGE_ROOTS == ("/var/lib/gridengine",)


def write_bootstrap(root, cell, admin, mode=0o644):
    common = root / cell / "common"
    common.mkdir(parents=True, exist_ok=True)
    path = common / "bootstrap"
    path.write_text("# Version: 8.1.9\nadmin_user              %s\ndefault_domain none\n" % admin)
    path.chmod(mode)
    return path


def test_admin_user_from_every_cell_bootstrap(tmp_path):
    me = pwd.getpwuid(os.geteuid()).pw_name
    write_bootstrap(tmp_path, "default", me)
    write_bootstrap(tmp_path, "other", "none")
    assert jobspool.admin_uids(str(tmp_path)) == {os.geteuid()}


def test_group_writable_or_foreign_bootstrap_is_ignored(tmp_path):
    me = pwd.getpwuid(os.geteuid()).pw_name
    write_bootstrap(tmp_path, "default", me, mode=0o664)
    logged = []
    assert jobspool.admin_uids(str(tmp_path), log=lambda p, m: logged.append(m)) == set()
    assert "bootstrap" in logged[0]


def test_bootstrap_naming_someone_else_than_its_owner_is_ignored(tmp_path):
    need_root()
    path = write_bootstrap(tmp_path, "default", "nobody")
    os.chown(path, 1, 1)      # daemon: neither root nor nobody
    assert jobspool.admin_uids(str(tmp_path), log=lambda p, m: None) == set()
    os.chown(path, 0, 0)
    assert jobspool.admin_uids(str(tmp_path)) == {pwd.getpwnam("nobody").pw_uid}


def test_admin_user_option(tmp_path):
    assert jobspool.admin_uids(None, ["nobody"]) == {pwd.getpwnam("nobody").pw_uid}
    logged = []
    assert jobspool.admin_uids(None, ["no-such-user-xyz"], log=lambda p, m: logged.append(m)) == set()
    assert logged
