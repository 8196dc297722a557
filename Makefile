# xxterocpp: `make run` starts the service with the shipped example config,
# `make test` sets up and runs the whole test suite on both stacks (current
# PyPI releases in .venv, then Debian bookworm's packaged libraries).

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
CONFIG ?= etc/xxterocpp/xxterocpp.toml
TRIAL_ARGS ?=
# Debian's own interpreter and packages, never the pyenv/venv ones.
DEBIAN_PATH := /usr/sbin:/usr/bin:/sbin:/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends

# Debian packages the tests need: a bus-less knxd, and the bookworm stack.
SYSTEM_PACKAGES := knxd knxd-tools python3 python3-venv \
	python3-twisted python3-autobahn python3-openssl python3-service-identity \
	python3-attr python3-cryptography

.PHONY: run test test-pypi test-debian system-deps venv clean

$(VENV)/.stamp: requirements.txt requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -r requirements-test.txt
	touch $@

venv: $(VENV)/.stamp

run: $(VENV)/.stamp
	PYTHONPATH=. $(VENV)/bin/twistd --nodaemon --pidfile= xxterocpp --config $(CONFIG)

system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -q && $(APT) $$missing; \
	fi

test: test-pypi test-debian

test-pypi: system-deps $(VENV)/.stamp
	$(VPY) -m twisted.trial --temp-directory=_trial_temp.pypi $(TRIAL_ARGS) tests

test-debian: system-deps
	env PATH=$(DEBIAN_PATH) python3 -m twisted.trial --temp-directory=_trial_temp.debian $(TRIAL_ARGS) tests

clean:
	rm -rf $(VENV) _trial_temp* twisted/plugins/dropin.cache
