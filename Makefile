# kubeloop developer entry points. Every target installs what it needs by itself.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON_BOOT ?= python3
VENV        := .venv
BIN         := $(VENV)/bin
PY          := $(BIN)/python
STAMP       := $(VENV)/.installed
RUN_DIR     ?= $(CURDIR)/.run

.PHONY: help cluster-deps setup lock lint fmt test test-unit test-component test-cluster test-node-unit manifests verify demo bench s3-up s3-down cluster-up cluster-down clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade 'pip>=24'
	$(PY) -m pip install --quiet --no-deps -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	touch $@

setup: $(STAMP) ## create .venv with the exact locked dependencies and kubeloop in editable mode

# The local cluster needs iproute2 (pod network namespaces) and nftables (kube-proxy), from
# Debian's packages; installed once when missing (needs root, as the cluster does).
cluster-deps: ## install iproute2, nftables and nginx (the router's proxy) from Debian when missing (root)
	@command -v go >/dev/null || { echo "the local cluster is built with Go: install Go (go.dev/doc/install)"; exit 1; }
	@if ! command -v ip >/dev/null || ! command -v nft >/dev/null || ! command -v nginx >/dev/null; then \
		echo "installing iproute2, nftables and nginx from Debian"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 nftables nginx >/dev/null; \
	fi

lock: ## re-resolve pyproject.toml ranges into requirements.lock (review the diff)
	rm -rf .lock-venv && $(PYTHON_BOOT) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet -e '.[dev]'
	{ head -2 requirements.lock; .lock-venv/bin/pip freeze --exclude-editable | grep -v '^kubeloop'; } > requirements.lock.new
	mv requirements.lock.new requirements.lock && rm -rf .lock-venv

fmt: setup ## format the code
	$(BIN)/ruff format operator tests
	$(BIN)/ruff check --fix operator tests

lint: setup ## ruff (format check + lint), mypy strict, import-linter layer contracts
	$(BIN)/ruff format --check operator tests
	$(BIN)/ruff check operator tests
	$(BIN)/mypy
	$(BIN)/lint-imports

manifests: setup ## regenerate crds/ (and the chart's copy) from the pydantic models
	$(PY) -m kubeloop.crdgen

verify: manifests ## fail when generated files differ from what is committed
	@git diff --exit-code -- crds charts || { echo "generated files are out of date: run 'make manifests' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- crds charts)" || { git status --porcelain -- crds charts; echo "untracked generated files: run 'make manifests' and commit"; exit 1; }

# pytest exits 5 when it collects nothing: that is a broken suite here, never a pass.
define run_pytest
	rc=0; $(BIN)/pytest $(1) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests in '$(1)': failing on purpose"; exit 1; fi; \
	exit $$rc
endef

test-unit: setup ## unit tests only (no external processes)
	@$(call run_pytest,tests/unit)

test-component: setup ## component tests (real SeaweedFS and friends)
	@$(call run_pytest,tests/component)

test-cluster: setup cluster-deps ## cluster tests (builds and starts the local cluster; needs root)
	@$(call run_pytest,tests/cluster)

test-node-unit: ## Go unit tests of the process node (tests/cluster/internal)
	cd tests/cluster && GOTOOLCHAIN=local GOFLAGS=-mod=readonly go test ./internal/...

test: lint cluster-deps test-node-unit ## everything: lint, node unit tests, then every pytest tier against real processes
	@$(call run_pytest,tests)

s3-up: setup ## start SeaweedFS (S3 on 127.0.0.1) for the demo; prints its endpoint
	$(PY) -m kubeloop.devenv s3-up --dir $(RUN_DIR)/s3

s3-down: setup ## stop the SeaweedFS started by s3-up
	$(PY) -m kubeloop.devenv s3-down --dir $(RUN_DIR)/s3

cluster-up: setup cluster-deps ## build what is missing (first time ~10 min) and start the local cluster
	$(PY) -m kubeloop.devenv cluster-up --dir $(RUN_DIR)

cluster-down: setup ## stop the local cluster and remove its network
	$(PY) -m kubeloop.devenv cluster-down --dir $(RUN_DIR)

demo: setup cluster-deps ## the main job on the local stack: S3, the cluster, CRDs, examples, bad input refused
	$(PY) -m kubeloop.devenv demo --dir $(RUN_DIR)

bench: setup cluster-deps ## benchmarks measured side by side (ratios); see docs/benchmarks.md
	@command -v wrk >/dev/null || { echo "installing wrk (the HTTP load generator) from Debian"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
	$(PY) -m kubeloop.devenv bench --dir $(RUN_DIR)

clean: ## remove the virtualenv, caches and local run state
	-$(PY) -m kubeloop.devenv cluster-down --dir $(RUN_DIR)
	-$(PY) -m kubeloop.devenv s3-down --dir $(RUN_DIR)/s3
	rm -rf $(VENV) $(RUN_DIR) .pytest_cache .mypy_cache .ruff_cache
