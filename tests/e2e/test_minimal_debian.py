"""README.rst's first command on the most minimal Debian 12 an administrator starts from: a
debootstrap ``minbase`` root with empty apt lists and no ``make``.

What runs there: the command's apt prelude and ``make deps`` (everything the demo and the tests
install from apt), then a wrapper from the tree.  The demo's cluster itself
(daemons, network namespaces) runs on the CI machine, not in the chroot.
"""
import os
import re
import shutil
import subprocess

import pytest

from lib import REPO, need, need_root

pytestmark = [pytest.mark.cluster]

ROOT = "/var/tmp/sgewrap-minimal-debian"


def first_command():
    """The first command of README.rst's opening block."""
    with open(os.path.join(REPO, "README.rst")) as f:
        text = f.read()
    block = text.split("::\n\n", 1)[1]
    return block.splitlines()[0].split("#")[0].strip()


def mirror():
    """This machine's Debian mirror (its apt sources)."""
    for path in ("/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"):
        if os.path.exists(path):
            found = re.search(r"^(?:URIs:\s*|deb\s+)(\S+/debian)\s*$", open(path).read(), re.M)
            if found:
                return found.group(1)
    return "http://deb.debian.org/debian"


def test_the_first_readme_command_works_from_a_minimal_debian_12():
    need_root()
    need(shutil.which("debootstrap"), "debootstrap missing", "apt-get install debootstrap (make deps)")
    command = first_command()
    assert command.startswith("apt-get update && apt-get install") and command.endswith("make deps demo"), command
    shutil.rmtree(ROOT, ignore_errors=True)
    subprocess.run(["debootstrap", "--variant=minbase", "bookworm", ROOT, mirror()], check=True,
                   capture_output=True, timeout=900)
    try:
        for name in os.listdir(os.path.join(ROOT, "var/lib/apt/lists")):      # as a fresh image has them
            path = os.path.join(ROOT, "var/lib/apt/lists", name)
            if os.path.isfile(path):
                os.unlink(path)
        assert not os.path.exists(os.path.join(ROOT, "usr/bin/make"))
        # no daemon starts inside the chroot (the demo's own cluster runs on the machine itself)
        with open(os.path.join(ROOT, "usr/sbin/policy-rc.d"), "w") as f:
            f.write("#!/bin/sh\nexit 101\n")
        os.chmod(os.path.join(ROOT, "usr/sbin/policy-rc.d"), 0o755)
        tree = os.path.join(ROOT, "root/sgewrap")
        os.makedirs(tree)
        subprocess.run("tar -C %s -cf - --exclude=./.venv --exclude=./build --exclude=./.git . | tar -C %s -xf -"
                       % (REPO, tree), shell=True, check=True)
        prelude_and_deps = command[:-len(" demo")]           # the demo's cluster needs the machine
        script = ("cd /root/sgewrap && export DEBIAN_FRONTEND=noninteractive && %s && cd wrappers && "
                  "python3 -c 'import sys; sys.argv[1:] = sys.argv[1:]; from sgewrap.client import ssh_wrapper; "
                  "ssh_wrapper()' --dry-run -p 4711 node01 hostname" % prelude_and_deps)
        proc = subprocess.run(["chroot", ROOT, "/bin/sh", "-c", script], capture_output=True, text=True,
                              timeout=1800, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root"})
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert proc.stdout.strip().splitlines()[-1] == "/usr/bin/ssh -p 4711 -- node01 hostname"
    finally:
        shutil.rmtree(ROOT, ignore_errors=True)
