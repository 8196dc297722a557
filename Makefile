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

# Debian packages the tests need: a bus-less knxd, the bookworm stack,
# chromium for the status page's browser test, gettext, whose tools check
# the translations (tests/test_i18n.py), and faketime (libfaketime), which
# steps the service's system clock (tests/test_clock_steps.py).
SYSTEM_PACKAGES := knxd knxd-tools python3 python3-venv \
	python3-twisted python3-autobahn python3-openssl python3-service-identity \
	python3-attr python3-cryptography chromium gettext faketime

# Debian packages (make deb): xxterocpp and python3-knxdclient, built from a
# copy of the work tree (tracked and new files, not ignored ones) with
# Debian's interpreter, into DEB_DIR; both must pass lintian without errors.
DEB_DIR ?= dist/deb
DEB_PACKAGES := debhelper dh-python python3-all python3-setuptools \
	pybuild-plugin-pyproject python3-pip dpkg-dev lintian
# The install test: a debootstrapped bookworm root, cached in CACHE_DIR.
INSTALL_TEST_PACKAGES := debootstrap
CACHE_DIR ?= /var/cache/xxterocpp-ci

.PHONY: messages pot run test test-pypi test-debian test-faults bench soak system-deps venv clean deb deb-deps test-install

$(VENV)/.stamp: requirements.txt requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -r requirements-test.txt
	touch $@

venv: $(VENV)/.stamp

run: $(VENV)/.stamp
	PYTHONPATH=. $(VENV)/bin/twistd --nodaemon --pidfile= xxterocpp --config $(CONFIG)

# $(call apt-ensure,PACKAGES): install those of PACKAGES that are missing.
define apt-ensure
@missing=""; for p in $(1); do \
	dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
done; \
if [ -n "$$missing" ]; then \
	echo "installing:$$missing"; \
	$(SUDO) apt-get update -q && $(APT) $$missing; \
fi
endef

system-deps:
	$(call apt-ensure,$(SYSTEM_PACKAGES))

# `make demo` (tools/demo.py): the service with a bus-less knxd and one
# simulated charger, DEMO1, charging in a loop; it prints the status page to
# open and the knxtool command that shows the bus. DEMO_ARGS, e.g.
# "--web-port 8081 --cycles 2", are passed on (tools/demo.py --help).
# python3-venv first: the venv needs it; util-linux (setsid) is essential.
DEMO_PACKAGES := knxd knxd-tools python3-venv
DEMO_ARGS ?=
.PHONY: demo demo-deps

demo-deps:
	$(call apt-ensure,$(DEMO_PACKAGES))

demo: demo-deps $(VENV)/.stamp
	$(VPY) tools/demo.py $(DEMO_ARGS)

# The status page's texts (xxterocpp/web/i18n.py). `make pot` collects them
# into the template, POT (the texts are English: t("..."), t.plural(...),
# t.context(...), N_("...") in tables); `make messages` also merges it into
# every language's catalogue, whose new entries then wait for translation.
LOCALE_DIR := xxterocpp/locale
POT ?= $(LOCALE_DIR)/xxterocpp.pot
XGETTEXT := xgettext --language=Python --from-code=UTF-8 --keyword --keyword=t --keyword=N_ \
	--keyword=plural:1,2 --keyword=context:1c,2 --keyword=pgettext:1c,2 --no-location \
	--sort-output --package-name=xxterocpp --msgid-bugs-address=dev@xxterocpp.invalid

pot:
	$(XGETTEXT) --output=$(POT) xxterocpp/web/*.py

messages: pot
	for po in $(LOCALE_DIR)/*/LC_MESSAGES/xxterocpp.po; do \
		msgmerge --quiet --update --backup=none --no-location --sort-output "$$po" $(POT); \
	done

test: test-pypi test-debian

test-pypi: system-deps $(VENV)/.stamp tests/ocpprpc/node_modules/.stamp
	$(VPY) -m twisted.trial --temp-directory=_trial_temp.pypi $(TRIAL_ARGS) tests

test-debian: system-deps tests/ocpprpc/node_modules/.stamp
	env PATH=$(DEBIAN_PATH) python3 -m twisted.trial --temp-directory=_trial_temp.debian $(TRIAL_ARGS) tests

# The second back office of the upstream tests: ocpp-rpc (npm), test only.
tests/ocpprpc/node_modules/.stamp: tests/ocpprpc/package.json
	command -v npm >/dev/null || $(APT) nodejs npm
	cd tests/ocpprpc && npm install --no-audit --no-fund --silent
	touch $@

deb-deps: system-deps
	$(call apt-ensure,$(DEB_PACKAGES))

deb: deb-deps
	@v=$$(dpkg-parsechangelog -S Version); p=$$(sed -n 's/^__version__ = "\(.*\)"/\1/p' xxterocpp/__init__.py); \
	[ "$$v" = "$$p" ] || { echo "debian/changelog is at $$v, xxterocpp.__version__ at $$p: dch -v $$p"; exit 1; }
	set -e; build=$$(mktemp -d /tmp/xxterocpp-deb.XXXXXX); trap 'rm -rf "$$build"' EXIT; \
	mkdir "$$build/xxterocpp"; \
	git ls-files -z --cached --others --exclude-standard \
		| tar --null -T - --ignore-failed-read -cf - | tar -xf - -C "$$build/xxterocpp"; \
	(cd "$$build/xxterocpp" && env PATH=$(DEBIAN_PATH) dpkg-buildpackage -us -uc -b); \
	env PATH=$(DEBIAN_PATH) packaging/knxdclient/build "$$build"; \
	mkdir -p $(DEB_DIR); rm -f $(DEB_DIR)/*.deb; cp "$$build"/*.deb $(DEB_DIR)/
	env PATH=$(DEBIAN_PATH) lintian --fail-on error $(DEB_DIR)/*.deb
	@ls -l $(DEB_DIR)

test-install: system-deps
	$(call apt-ensure,$(INSTALL_TEST_PACKAGES))
	@ls $(DEB_DIR)/xxterocpp_*_all.deb $(DEB_DIR)/python3-knxdclient_*_all.deb >/dev/null 2>&1 || $(MAKE) deb
	$(SUDO) env CACHE_DIR=$(CACHE_DIR) tests/debian/install-test $(DEB_DIR)

clean:
	rm -rf $(VENV) _trial_temp* twisted/plugins/dropin.cache $(DEB_DIR)

# Fault tests alone (they are part of `make test` too), on both stacks.
test-faults: system-deps $(VENV)/.stamp
	$(VPY) -m twisted.trial --temp-directory=_trial_temp.faults.pypi tests.test_faults
	env PATH=$(DEBIAN_PATH) python3 -m twisted.trial --temp-directory=_trial_temp.faults.debian tests.test_faults

# Benchmarks (bench/run.py): every scenario against the service and the bare
# Autobahn floor, on both stacks; the load generator is Node + ws (test only).
bench/node_modules/.stamp: bench/package.json
	command -v npm >/dev/null || $(APT) nodejs npm
	cd bench && npm install --no-audit --no-fund --silent
	touch $@

bench: system-deps $(VENV)/.stamp bench/node_modules/.stamp
	ulimit -n 20000; $(VPY) bench/run.py
	ulimit -n 20000; env PATH=$(DEBIAN_PATH) python3 bench/run.py

soak: system-deps $(VENV)/.stamp bench/node_modules/.stamp
	ulimit -n 20000; $(VPY) bench/soak.py
	ulimit -n 20000; env PATH=$(DEBIAN_PATH) python3 bench/soak.py
