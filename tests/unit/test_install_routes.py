"""However the project is installed, what runs as root starts an isolated interpreter.

pip writes console scripts as ``#!PYTHON`` (it drops interpreter options, so
``-I`` cannot survive it): pip therefore installs only what users run, and
``sgewrap install`` writes the root programs with ``#!PYTHON -I``.  A planted
``sitecustomize`` on the caller's PYTHONPATH is the attack each test tries.
"""
import os
import subprocess
import sys

from lib import REPO

ROOT_PROGRAMS = ("rshdwrapper", "node_access")


def planted(tmp_path):
    d = tmp_path / "planted"
    d.mkdir()
    marker = tmp_path / "owned"
    (d / "sitecustomize.py").write_text("open(%r, 'w').write('the caller ran code here')\n" % str(marker))
    return d, marker


def test_pip_installs_no_root_program_and_sgewrap_install_writes_isolated_ones(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", REPO],
                         capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr
    bindir = venv / "bin"
    assert (bindir / "ssh_wrapper").exists() and (bindir / "sgewrap").exists()
    assert not [p for p in ROOT_PROGRAMS if (bindir / p).exists()]
    root = tmp_path / "sge"
    done = subprocess.run([str(bindir / "sgewrap"), "install", "--sge-root", str(root), "--python",
                           str(bindir / "python3"), "--no-deps"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    wrappers = root / "util" / "resources" / "wrappers"
    directory, marker = planted(tmp_path)
    for name in ROOT_PROGRAMS:
        first = (wrappers / name).read_text().splitlines()[0]
        assert first.startswith("#!") and first.endswith(" -I"), first
        proc = subprocess.run([str(wrappers / name), "--help"], capture_output=True, timeout=60,
                              env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(directory)})
        assert proc.returncode == 0 and b"usage" in proc.stdout.lower(), proc.stderr
        assert not marker.exists(), name
    # the attack is real: a non-isolated interpreter runs the planted code
    subprocess.run([str(bindir / "python3"), "-c", "pass"], env={"PYTHONPATH": str(directory)}, timeout=60)
    assert marker.exists()


def test_make_install_writes_isolated_interpreter_lines(tmp_path):
    root = tmp_path / "sge"
    subprocess.run(["make", "-s", "-C", REPO, "install", "SGE_ROOT=" + str(root), "PYTHON=/usr/bin/python3"],
                   check=True, stdout=subprocess.DEVNULL, timeout=600)
    wrappers = root / "util" / "resources" / "wrappers"
    for name in ROOT_PROGRAMS:
        assert (wrappers / name).read_text().splitlines()[0].endswith(" -I")
    # the job sshd's launcher (static: no loader variable acts on it) and the PAM module, built here
    launcher = subprocess.run(["file", str(wrappers / "sge-sshd")], capture_output=True, text=True).stdout
    assert not os.path.islink(wrappers / "sge-sshd") and "static-pie linked" in launcher
    assert os.path.isfile(wrappers / "pam_sgewrap.so")


def test_the_packaged_programs_import_the_package_s_own_sgewrap_first(tmp_path):
    """The Debian package's programs run '/usr/bin/python3 -I', which searches /usr/local's
    dist-packages before Debian's own site: a sgewrap that pip put there would run as root instead of
    the package's.  Each program puts the package's site before every other site, the standard
    library still first.  Proved on the generated text: a stand-in for /usr/local's site (placed
    where python3 -I has it) holds a sgewrap that must not be the one imported."""
    from sgewrap.admin import installer
    dest = tmp_path / "usr-lib-sgewrap"
    site, local = tmp_path / "site" / "dist-packages", tmp_path / "local" / "dist-packages"
    for where, who in ((site, "the package's"), (local, "/usr/local's")):
        (where / "sgewrap" / "rootside").mkdir(parents=True)
        (where / "sgewrap" / "__init__.py").write_text("WHO = %r\n" % who)
        (where / "sgewrap" / "rootside" / "__init__.py").write_text("")
        (where / "sgewrap" / "rootside" / "nodeaccess.py").write_text(
            "import sgewrap, sys, json\ndef main():\n    print(json.dumps([sgewrap.WHO, sys.path]))\n")
    installer.write_programs(str(dest), sys.executable, str(site), report=lambda *a: None)
    text = (dest / "node_access").read_text()
    lines = text.splitlines()
    assert lines[0] == "#!%s -I" % sys.executable and lines[1].startswith('"""node_access: ')
    assert lines[2].startswith("import sys") and repr(str(site)) in lines[3]
    assert lines.index("from sgewrap.rootside.nodeaccess import main") > 3
    # /usr/local's site where python3 -I has it: the first site directory, after the standard library
    stand_in = "import sys; sys.path.insert(%d, %r)\n" % (
        next(i for i, p in enumerate(sys.path + ["-packages"]) if p.endswith("-packages")), str(local))
    proc = subprocess.run([sys.executable, "-I", "-c", stand_in + text.split("\n", 1)[1]], capture_output=True,
                          text=True, timeout=60, cwd=str(tmp_path))
    import json
    who, path = json.loads(proc.stdout)
    assert who == "the package's", proc.stderr
    assert path.index(str(site)) < path.index(str(local))
    assert all(path.index(p) < path.index(str(site)) for p in path if p.endswith(("lib-dynload", ".zip")))


def test_an_offline_host_takes_the_dependencies_from_the_distribution(tmp_path):
    """An execution host often reaches no package index (node4, the Debian 13 host of the test cluster,
    reaches none): where PYTHON has Debian's python3-plumbum and python3-shellingham, make install copies
    them into the wrappers' environment instead of asking pip; a PYTHON without them still gets pip."""
    from sgewrap.admin import installer
    found = installer._system_dependencies("/usr/bin/python3")
    assert sorted(found) == ["plumbum", "shellingham"], "make deps installs python3-plumbum, python3-shellingham"
    assert all(os.path.isfile(os.path.join(p, "__init__.py")) for p in found.values()), found
    without = tmp_path / "python-without"
    without.write_text("#!/bin/sh\nexit 1\n")
    without.chmod(0o755)
    assert installer._system_dependencies(str(without)) == {}
    root = tmp_path / "sge"
    out = subprocess.run(["make", "-s", "-C", REPO, "install", "SGE_ROOT=" + str(root), "PYTHON=/usr/bin/python3"],
                         capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, PIP_INDEX_URL="http://0.0.0.0:9/"))     # no index: pip would fail
    assert out.returncode == 0, out.stdout + out.stderr
    assert "copied plumbum, shellingham from /usr/bin/python3's own packages" in out.stdout, out.stdout
