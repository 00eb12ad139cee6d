# trustd: every target installs what it needs, idempotently, on a fresh Debian 12 machine as root.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMPS := .stamps

# Debian packages the tests and the demo use (real parts, not mocks: CONVENTIONS 13).
APT_PACKAGES := gnupg ca-certificates curl python3-venv busybox-static iproute2 util-linux swtpm swtpm-tools tpm2-tools libtss2-dev docker-registry skopeo umoci

.PHONY: setup apt groups venv lint test test-unit test-integration demo bench clean

setup: apt groups venv

apt:
	@bash scripts/setup-apt.sh $(APT_PACKAGES)

groups:
	@if [ "$$(id -u)" = 0 ]; then bash scripts/setup-groups.sh; fi
	@# trustd refuses to fetch or run without a policy: install the shipped one as the system policy
	@if [ "$$(id -u)" = 0 ] && [ ! -e /usr/lib/rkt/policy.toml ]; then \
	  install -D -m 0644 policy/default.toml /usr/lib/rkt/policy.toml; fi

venv: $(STAMPS)/venv
$(STAMPS)/venv: pyproject.toml
	@mkdir -p $(STAMPS)
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

clean:
	rm -rf $(VENV) $(STAMPS) .pytest_cache .mypy_cache .ruff_cache .coverage .coverage-data
