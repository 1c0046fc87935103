# Entry points. `make lab` builds the local lab on this machine and deploys to it; `make test` runs every test
# layer (what CI runs). Python packages come from hash-pinned locks; Debian packages from tools/host-packages.txt.
VENV    := .venv
PYTHON  := $(VENV)/bin/python
PYINFRA := $(VENV)/bin/pyinfra
LAB     := $(PYTHON) -m tools.lab
PIP     := pip install --quiet --disable-pip-version-check --require-hashes

.PHONY: venv venv-dev checkov pipeline-tools host-packages mirror images lab lab-up lab-down lab-status bench test unit locks

# What the deploy needs (requirements.lock: every platform's files, with sha256s).
venv: $(VENV)/.runtime
$(VENV)/.runtime: requirements.lock
	python3 -m venv $(VENV)
	$(VENV)/bin/$(PIP) -r requirements.lock
	touch $@

# The deploy's packages plus the tests' (requirements-dev.lock holds both, at the same versions).
venv-dev: $(VENV)/.dev
$(VENV)/.dev: requirements-dev.lock $(VENV)/.runtime
	$(VENV)/bin/$(PIP) -r requirements-dev.lock
	touch $@

# checkov in its own virtualenv: its pins would conflict with the deploy's
checkov: .venv-checkov/.installed
.venv-checkov/.installed: requirements-checkov.lock
	python3 -m venv .venv-checkov
	.venv-checkov/bin/$(PIP) -r requirements-checkov.lock
	touch $@

# Regenerate the locks from requirements*.txt with uv (existing pins are kept; UPGRADE=1 moves them).
locks: venv-dev
	$(VENV)/bin/uv pip compile --quiet $(if $(UPGRADE),--upgrade) --universal --generate-hashes --python-version 3.11 \
		requirements.txt -o requirements.lock
	$(VENV)/bin/uv pip compile --quiet $(if $(UPGRADE),--upgrade) --generate-hashes --python-version 3.11.7 \
		--python-platform x86_64-manylinux_2_28 requirements.txt requirements-dev.txt -c requirements.lock \
		-o requirements-dev.lock
	$(VENV)/bin/uv pip compile --quiet $(if $(UPGRADE),--upgrade) --generate-hashes --python-version 3.11.7 \
		--python-platform x86_64-manylinux_2_28 requirements-checkov.txt -o requirements-checkov.lock

# npm test tools, pinned in tests/pipeline/package-lock.json: gitlab-ci-local (4.73.0, the newest that runs
# on Node 20), TypeScript and @grafana/schema (dashboard type-check)
pipeline-tools: tests/pipeline/node_modules/.installed
tests/pipeline/node_modules/.installed: tests/pipeline/package.json tests/pipeline/package-lock.json
	cd tests/pipeline && npm ci --no-audit --no-fund --loglevel=error
	touch $@

host-packages:
	@tools/install-host-packages

# The artifact mirror the lab hosts install the cluster phase from, built from source through the Go module
# proxy (cached; minutes on a fresh machine).
mirror: venv-dev host-packages
	$(PYTHON) -m tools.mirror

# Every image the lab's cluster pulls, built from source under its upstream name (cached; minutes on a fresh
# machine); the lab tool pushes them into its registry stand-in.
images: venv-dev host-packages
	$(PYTHON) -m tools.images build

# The main job on the local default: four lab hosts on this machine, deployed with the sandbox inventory,
# ending with a three-node cluster.
lab: venv-dev host-packages mirror images lab-up
	$(PYINFRA) -y inventories/sandbox.py deploy.py
	@$(PYTHON) -m tools.lab cluster-info

lab-up: venv-dev host-packages
	$(LAB) up

# The deploy's benchmark on fresh lab hosts (WORKERS=2 by default): first converge and no-op rerun, split by
# phase, with the commands each host ran; reports/bench-<N>-workers.json (docs/lab.md has the latest numbers).
bench: venv-dev host-packages mirror images
	$(PYTHON) -m tools.bench --workers $(or $(WORKERS),2)

# Without the virtualenv too: tearing down needs nothing of the project.
lab-down:
	python3 -m tools.lab down

lab-status:
	python3 -m tools.lab status

# Everything that runs on one machine: lint and types, unit, validation, real tools and services, the real
# deploy to the lab hosts (twice), testinfra, the live cluster.
test: venv-dev checkov pipeline-tools host-packages
	$(VENV)/bin/pytest

unit: venv-dev
	$(VENV)/bin/pytest tests/unit
