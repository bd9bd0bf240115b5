"""sgewrap.admin.pam: find, add and remove the pam_sge-qrsh-setup line, on temporary files."""
import os
import stat

import pytest

from sgewrap.admin import pam

DEBIAN_SSHD = """# PAM configuration for the Secure Shell service

# Standard Un*x authentication.
@include common-auth

account    required     pam_nologin.so
@include common-account
session [success=ok ignore=ignore module_unknown=ignore default=bad]        pam_selinux.so close
@include common-session
@include common-password
"""


@pytest.fixture
def pamfile(tmp_path):
    path = tmp_path / "sshd"
    path.write_text(DEBIAN_SSHD)
    path.chmod(0o644)
    return path


def test_defaults():
    assert pam.PAM_FILE == "/etc/pam.d/sshd"
    assert pam.PAM_LINE == "auth required pam_sge-qrsh-setup.so"


@pytest.mark.parametrize("line,active", [
    ("auth required pam_sge-qrsh-setup.so", True),
    ("  auth\trequired\tpam_sge-qrsh-setup.so  ", True),
    ("auth optional pam_sge-qrsh-setup.so debug", True),
    ("-auth required pam_sge-qrsh-setup.so", True),
    ("AUTH required pam_sge-qrsh-setup.so", True),
    ("auth [success=ok default=die] pam_sge-qrsh-setup.so", True),
    ("auth required /lib/x86_64-linux-gnu/security/pam_sge-qrsh-setup.so", True),
    ("auth required pam_sge-qrsh-setup.so # tight integration", True),
    ("#auth required pam_sge-qrsh-setup.so", False),
    ("# auth required pam_sge-qrsh-setup.so", False),
    ("session required pam_sge-qrsh-setup.so", False),
    ("account required pam_sge-qrsh-setup.so", False),
    ("auth required pam_sge-qrsh-setup.so.bak", False),
    ("auth required pam_unix.so pam_sge-qrsh-setup.so", False),
    ("@include common-auth", False),
    ("", False),
])
def test_is_module_line(line, active):
    assert pam.is_module_line(line) is active


def test_has_line(pamfile):
    assert not pam.has_line(str(pamfile))
    pamfile.write_text("#" + pam.PAM_LINE + "\n" + DEBIAN_SSHD)
    assert not pam.has_line(str(pamfile))
    pamfile.write_text(DEBIAN_SSHD + pam.PAM_LINE + "\n")
    assert pam.has_line(str(pamfile))


def test_add_line_puts_it_on_top_once(pamfile):
    assert pam.add_line(str(pamfile)) is True
    assert pamfile.read_text() == pam.PAM_LINE + "\n" + DEBIAN_SSHD
    assert pam.has_line(str(pamfile))
    assert pam.add_line(str(pamfile)) is False
    assert pamfile.read_text() == pam.PAM_LINE + "\n" + DEBIAN_SSHD


def test_add_line_keeps_an_existing_active_line_anywhere(pamfile):
    text = DEBIAN_SSHD + "auth optional pam_sge-qrsh-setup.so\n"
    pamfile.write_text(text)
    assert pam.add_line(str(pamfile)) is False
    assert pamfile.read_text() == text


def test_add_line_ignores_a_commented_one(pamfile):
    text = "# " + pam.PAM_LINE + "\n" + DEBIAN_SSHD
    pamfile.write_text(text)
    assert pam.add_line(str(pamfile)) is True
    assert pamfile.read_text() == pam.PAM_LINE + "\n" + text


def test_remove_line_restores_the_original(pamfile):
    pam.add_line(str(pamfile))
    assert pam.remove_line(str(pamfile)) is True
    assert pamfile.read_text() == DEBIAN_SSHD
    assert pam.remove_line(str(pamfile)) is False
    assert pamfile.read_text() == DEBIAN_SSHD


def test_remove_line_takes_every_active_auth_line_and_keeps_comments(pamfile):
    text = ("auth required pam_sge-qrsh-setup.so\n# auth required pam_sge-qrsh-setup.so\n" + DEBIAN_SSHD
            + "-auth optional /lib/security/pam_sge-qrsh-setup.so\nsession optional pam_sge-qrsh-setup.so\n")
    pamfile.write_text(text)
    assert pam.remove_line(str(pamfile)) is True
    assert pamfile.read_text() == ("# auth required pam_sge-qrsh-setup.so\n" + DEBIAN_SSHD
                                   + "session optional pam_sge-qrsh-setup.so\n")


@pytest.mark.parametrize("mode", [0o644, 0o600, 0o640])
def test_mode_is_preserved(pamfile, mode):
    pamfile.chmod(mode)
    assert pam.add_line(str(pamfile))
    assert stat.S_IMODE(os.stat(pamfile).st_mode) == mode
    assert pam.remove_line(str(pamfile))
    assert stat.S_IMODE(os.stat(pamfile).st_mode) == mode


def test_replace_is_atomic_new_inode_no_temporary_left(pamfile):
    before = os.stat(pamfile).st_ino
    pam.add_line(str(pamfile))
    assert os.stat(pamfile).st_ino != before     # renamed over, never rewritten in place
    assert sorted(os.listdir(pamfile.parent)) == ["sshd"]


def test_symlinked_file_is_edited_through_the_link(pamfile, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(pamfile)
    assert pam.add_line(str(link))
    assert link.is_symlink()
    assert pamfile.read_text().startswith(pam.PAM_LINE + "\n")


def test_crlf_file_keeps_its_line_ends(pamfile):
    pamfile.write_bytes(DEBIAN_SSHD.replace("\n", "\r\n").encode())
    assert pam.add_line(str(pamfile))
    assert pamfile.read_bytes().startswith((pam.PAM_LINE + "\r\n# PAM").encode())
    assert pam.remove_line(str(pamfile))
    assert pamfile.read_bytes() == DEBIAN_SSHD.replace("\n", "\r\n").encode()


def test_file_without_final_newline(pamfile):
    pamfile.write_text("@include common-auth")
    assert pam.add_line(str(pamfile))
    assert pamfile.read_text() == pam.PAM_LINE + "\n@include common-auth"
    assert pam.remove_line(str(pamfile))
    assert pamfile.read_text() == "@include common-auth"


def test_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        pam.add_line(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError):
        pam.has_line(str(tmp_path / "nope"))


def test_failed_write_leaves_file_and_no_temporary(pamfile, monkeypatch):
    def boom(*a):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        pam.add_line(str(pamfile))
    assert pamfile.read_text() == DEBIAN_SSHD
    assert sorted(os.listdir(pamfile.parent)) == ["sshd"]


def test_this_hosts_pam_file_is_readable_if_present():
    if os.path.exists(pam.PAM_FILE):
        assert isinstance(pam.has_line(), bool)


# --- node access ----------------------------------------------------------------------------


def test_node_access_rules_go_before_the_first_account_rule(pamfile):
    assert pam.add_node_access(str(pamfile))
    lines = pamfile.read_text().splitlines()
    at = lines.index(pam.NODE_ACCESS_MARK)
    assert lines[at + 1:at + 4] == [
        "account [success=1 default=ignore] pam_succeed_if.so quiet uid < 1000",
        "account required pam_listfile.so item=user sense=allow file=/run/sgewrap/node-access.users onerr=fail",
        "account    required     pam_nologin.so"]
    assert pam.has_node_access(str(pamfile))
    assert stat.S_IMODE(pamfile.stat().st_mode) == 0o644


def test_node_access_add_twice_and_remove_gives_the_file_back(pamfile):
    assert pam.add_node_access(str(pamfile), users_file="/srv/x/node-access.users", min_uid=500)
    assert "uid < 500" in pamfile.read_text() and "file=/srv/x/node-access.users" in pamfile.read_text()
    assert not pam.add_node_access(str(pamfile))
    assert pam.remove_node_access(str(pamfile))
    assert pamfile.read_text() == DEBIAN_SSHD and not pam.has_node_access(str(pamfile))
    assert not pam.remove_node_access(str(pamfile))


def test_node_access_without_account_rules_goes_at_the_end(tmp_path):
    path = tmp_path / "other"
    path.write_text("auth required pam_unix.so")
    assert pam.add_node_access(str(path))
    assert path.read_text().splitlines()[0] == "auth required pam_unix.so"
    assert path.read_text().splitlines()[-1].startswith("account required pam_listfile.so")


def test_a_commented_node_access_rule_is_not_active(pamfile):
    pamfile.write_text("# account required pam_listfile.so item=user file=/run/sgewrap/node-access.users\n"
                       + DEBIAN_SSHD)
    assert not pam.has_node_access(str(pamfile))


def test_the_adopt_block_skips_the_hook_below_the_hooks_own_uid_bound(tmp_path):
    """One bound, from node_access's option table: the pam_succeed_if line and --ignore-below-uid."""
    from sgewrap.rootside.nodeaccess import TABLE
    default = TABLE.by_flag["--ignore-below-uid"].default
    assert default == 1000 and "uid < %d" % default in "\n".join(pam.adopt_lines(str(tmp_path)))
    lines = pam.adopt_lines(str(tmp_path), ["--ignore-below-uid=500", "--warn-only"])
    assert "account [success=1 default=ignore] pam_succeed_if.so quiet uid < 500" in lines
    assert lines[4].endswith("node_access --ignore-below-uid=500 --warn-only adopt")
    with pytest.raises(ValueError, match="--ignore-below-uid needs a number"):
        pam.adopt_lines(str(tmp_path), ["--ignore-below-uid=x"])
