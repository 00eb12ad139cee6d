# trustd: every target installs what it needs, idempotently, on a fresh Debian 12 machine as root.
SHELL := /bin/bash
# The platform's own interpreter (Debian 12: 3.11.2), never a per-user one: what CI tests is
# what a system install runs, and group rkt can execute it.
PYTHON ?= /usr/bin/python3
VENV := .venv
BIN := $(VENV)/bin
STAMPS := .stamps
SHIPPED_POLICY := trustd/shared/data/policy/default.toml
PYID := import sys; print(sys.base_prefix, sys.version.split()[0])

# Debian packages the tests and the demo use (real parts, not mocks: CONVENTIONS 13).
APT_PACKAGES := gnupg golang-go golang-golang-x-crypto-dev sq ca-certificates curl python3-venv zsh busybox-static iproute2 util-linux swtpm swtpm-tools tpm2-tools libtss2-dev docker-registry skopeo umoci chromium fonts-liberation gcc libc6-dev containernetworking-plugins iptables systemd

.PHONY: setup apt groups venv lint test test-unit test-integration demo bench clean install FORCE

setup: apt groups venv

apt:
	@bash scripts/setup-apt.sh $(APT_PACKAGES)

groups:
	@if [ "$$(id -u)" = 0 ]; then bash scripts/setup-groups.sh; fi
	@# trustd refuses to fetch or run without a policy: install the shipped one as the system policy
	@if [ "$$(id -u)" = 0 ] && [ ! -e /usr/lib/rkt/policy.toml ]; then \
	  install -D -m 0644 $(SHIPPED_POLICY) /usr/lib/rkt/policy.toml; fi

venv: $(STAMPS)/venv
# Which interpreter the venv must be on; rewritten only when it changes (then the venv is rebuilt).
$(STAMPS)/python: FORCE
	@mkdir -p $(STAMPS)
	@id="$$($(PYTHON) -c '$(PYID)')"; [ "$$(cat $@ 2>/dev/null)" = "$$id" ] || echo "$$id" > $@
$(STAMPS)/venv: pyproject.toml $(STAMPS)/python
	@if [ -x $(BIN)/python ] && [ "$$($(BIN)/python -c '$(PYID)')" != "$$(cat $(STAMPS)/python)" ]; then \
	  echo "$(VENV) is not on $(PYTHON): rebuilding it"; rm -rf $(VENV); fi
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

lint: venv
	$(BIN)/ruff check trustd tests bench scripts
	$(BIN)/ruff format --check trustd tests bench scripts
	$(BIN)/mypy
	$(BIN)/lint-imports

test-unit: setup
	$(BIN)/pytest -q tests/unit

test-integration: setup
	$(BIN)/pytest -q tests/integration

test: setup lint
	bash scripts/test-coverage.sh tests

demo: setup
	bash scripts/demo.sh

bench: setup
	@bash scripts/setup-apt.sh crun runc
	@$(BIN)/python -m compileall -q trustd  # as an installed package would be (pip compiles)
	$(BIN)/python bench/run.py
	$(BIN)/python bench/start.py
	$(BIN)/python bench/history.py
	$(BIN)/python bench/policy.py
	$(BIN)/python bench/listing.py
	$(BIN)/python bench/attest.py
	$(BIN)/python bench/docker_fetch.py
	$(BIN)/python bench/net.py

# A system install in Debian 12's layout (packaging/README.md); DESTDIR stages it elsewhere.
PREFIX ?= /usr
install:
	@bash scripts/setup-apt.sh python3-venv
	DESTDIR="$(DESTDIR)" PREFIX="$(PREFIX)" PYTHON="$(PYTHON)" bash scripts/install.sh

clean:
	rm -rf $(VENV) $(STAMPS) .pytest_cache .mypy_cache .ruff_cache .coverage .coverage-data
