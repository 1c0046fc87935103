# Entry points. `make lab` deploys to local lab hosts on this machine; `make test` runs every test layer.
VENV    := .venv
PYTHON  := $(VENV)/bin/python
PYINFRA := $(VENV)/bin/pyinfra
LAB     := python3 tests/lab/lab.py
# Debian packages the local lab needs on this machine (the deploy itself needs none of them).
LAB_PACKAGES := debootstrap systemd-container apt-cacher-ng zstd openssh-client iproute2
# Debian's promtool and Prometheus server (alerting tests), rsync (gitlab-ci-local), shellcheck
TEST_PACKAGES := prometheus prometheus-alertmanager rsync shellcheck libvirt-daemon libseccomp-dev pkg-config

.PHONY: venv checkov pipeline-tools host-packages lab lab-up lab-down lab-status test unit

venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt requirements-dev.txt constraints.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check \
		-r requirements.txt -r requirements-dev.txt -c constraints.txt
	touch $@

# checkov in its own virtualenv: its pins would conflict with the deploy's
checkov: .venv-checkov/.installed
.venv-checkov/.installed: requirements-checkov.txt constraints-checkov.txt
	python3 -m venv .venv-checkov
	.venv-checkov/bin/pip install --quiet --disable-pip-version-check -r requirements-checkov.txt -c constraints-checkov.txt
	touch $@

# npm test tools, pinned in tests/pipeline/package-lock.json: gitlab-ci-local (4.73.0, the newest that runs
# on Node 20), TypeScript and @grafana/schema (dashboard type-check)
pipeline-tools: tests/pipeline/node_modules/.installed
tests/pipeline/node_modules/.installed: tests/pipeline/package.json tests/pipeline/package-lock.json
	cd tests/pipeline && npm ci --no-audit --no-fund --loglevel=error
	touch $@

host-packages:
	@if ! command -v debootstrap >/dev/null || ! command -v systemd-nspawn >/dev/null \
		|| [ ! -x /usr/sbin/apt-cacher-ng ] || ! command -v zstd >/dev/null || ! command -v promtool >/dev/null \
		|| ! command -v rsync >/dev/null || ! command -v shellcheck >/dev/null || [ ! -x /usr/sbin/libvirtd ] \
		|| [ ! -e /usr/include/seccomp.h ]; then \
		echo "installing Debian packages: $(LAB_PACKAGES) $(TEST_PACKAGES)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(LAB_PACKAGES) $(TEST_PACKAGES); \
	fi

# The main job on the local default: four lab hosts on this machine, deployed with the sandbox inventory.
lab: venv host-packages lab-up
	$(PYINFRA) -y inventories/sandbox.py deploy.py

lab-up: host-packages
	$(LAB) up

lab-down:
	$(LAB) down

lab-status:
	$(LAB) status

# Everything that runs on one machine: unit, gitops validation, the real deploy to the lab (twice), testinfra.
test: venv checkov pipeline-tools host-packages
	$(VENV)/bin/pytest

unit: venv
	$(VENV)/bin/pytest tests/unit
