# Remote-startup wrappers for Grid Engine. `make help` lists the targets.
PYTHON ?= /usr/bin/python3
VENV ?= .venv
VPY := $(VENV)/bin/python
# packages the tests and the test cluster need on Debian 12 (tests/cluster/up adds Grid Engine itself)
APT_PACKAGES := python3 python3-venv python3-pip make git openssh-client openssh-server tmux procps \
	zsh fish tcsh csh rsyslog iproute2 nftables

.PHONY: help deps venv install uninstall test unit cluster cluster-down bench demo clean man deb

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
	cd wrappers && $(PYTHON) -m sgewrap.install "$(abspath $(SGE_ROOT))" "$(PYTHON)"

uninstall:
	@test -n "$(SGE_ROOT)" || { echo "make uninstall: set SGE_ROOT=DIR" >&2; exit 64; }
	cd wrappers && $(PYTHON) -m sgewrap.install --uninstall "$(abspath $(SGE_ROOT))"

deps:
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(APT_PACKAGES)

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
	$(VPY) tests/bench.py

demo: $(VPY)
	tests/cluster/up
	$(MAKE) install SGE_ROOT=/var/lib/gridengine
	$(VPY) -m tests.demo

man: $(VPY)
	cd wrappers && ../$(VPY) -m sgewrap.manpages man

clean:
	rm -rf $(VENV) build *.egg-info wrappers/*.egg-info .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
