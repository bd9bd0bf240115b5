# Remote-startup wrappers for Grid Engine. `make help` lists the targets.
PYTHON ?= /usr/bin/python3
VENV ?= .venv
VPY := $(VENV)/bin/python
# packages the tests and the test cluster need on Debian 12 (tests/cluster/up adds Grid Engine itself)
APT_PACKAGES := python3 python3-venv python3-pip make git openssh-client openssh-server tmux procps \
	zsh fish tcsh csh rsyslog iproute2 nftables groff-base man-db rsync libpam-oath oathtool \
	clustershell python3-ipyparallel krb5-kdc krb5-admin-server krb5-user

.PHONY: help deps venv install uninstall test unit cluster cluster-down bench demo clean man deb deb-deps

help:
	@echo "make install SGE_ROOT=DIR [PYTHON=/usr/bin/python3]  install the wrappers into DIR/util/resources/wrappers"
	@echo "make uninstall SGE_ROOT=DIR                            remove exactly what install put there"
	@echo "make test        (as root) everything: unit, loopback daemons, real one-host Grid Engine"
	@echo "make man         regenerate the man pages in wrappers/man (from the programs' tables)"
	@echo "make deb         build the Debian package (debhelper) into build/deb"
	@echo "make unit        the tests that need neither root nor Grid Engine"
	@echo "make cluster     (as root) bring up the one-host test cluster; cluster-down stops it"
	@echo "make bench       start-to-exec and end-to-end latency table (CSV + PNG in bench/)"
	@echo "make demo        (as root) fresh Debian -> cluster -> wrappers -> qrsh through ssh + tight integration"

install:
	@test -n "$(SGE_ROOT)" || { echo "make install: set SGE_ROOT=DIR" >&2; exit 64; }
	cd wrappers && $(PYTHON) -m sgewrap.admin.installer "$(abspath $(SGE_ROOT))" "$(PYTHON)"

uninstall:
	@test -n "$(SGE_ROOT)" || { echo "make uninstall: set SGE_ROOT=DIR" >&2; exit 64; }
	cd wrappers && $(PYTHON) -m sgewrap.admin.installer --uninstall "$(abspath $(SGE_ROOT))"

deps:
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(APT_PACKAGES) $(DEB_PACKAGES)

$(VPY): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --disable-pip-version-check -e '.[test,bench]'
	touch $(VPY)

venv: $(VPY)

test: $(VPY)
	$(VPY) -m pytest

unit: $(VPY)
	$(VPY) -m pytest tests/unit

cluster:
	tests/cluster/up

cluster-down:
	tests/cluster/down

bench: $(VPY)
	$(VPY) tests/bench/bench.py

demo: $(VPY)
	tests/cluster/up
	$(MAKE) install SGE_ROOT=/var/lib/gridengine
	$(VPY) -m tests.demo

man: $(VPY)
	cd wrappers && ../$(VPY) -m sgewrap.admin.manpages man

# The Debian package, from this tree with Debian's own tooling (debhelper, dh-python); the packaging
# is in wrappers/debian, put in place in a copy of the tree under build/deb.  Needs: apt-get install
# debhelper dh-python python3-all dpkg-dev fakeroot (make deb-deps), lintian to check it.
DEB_VERSION = $(shell sed -n '1s/.*(\(.*\)).*/\1/p' wrappers/debian/changelog)
DEB := build/deb/sgewrap_$(DEB_VERSION)_$(shell dpkg --print-architecture).deb
DEB_PACKAGES := debhelper dh-python python3-all dpkg-dev fakeroot lintian gcc libc6-dev libpam0g-dev python3-plumbum python3-shellingham \
	debootstrap

deb-deps:
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(DEB_PACKAGES)

deb:
	rm -rf build/deb && mkdir -p build/deb/src
	tar -cf - --exclude=./.venv --exclude=./build --exclude=./.git --exclude=__pycache__ --exclude='*.egg-info' . \
		| tar -xf - -C build/deb/src
	cp -r wrappers/debian build/deb/src/debian
	cd build/deb/src && dpkg-buildpackage -us -uc -b -rfakeroot >../build.log 2>&1 \
		|| { tail -30 ../build.log >&2; exit 1; }
	lintian --fail-on error --suppress-tags-from-file wrappers/debian/lintian-justified $(DEB) \
		|| { echo "make deb: lintian reports errors" >&2; exit 1; }
	@echo "built $(DEB)"

clean:
	rm -rf $(VENV) build *.egg-info wrappers/*.egg-info .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
