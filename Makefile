# Every target sets up what it needs; `make run` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8080
DATA_DIR ?= ./.data
PYTEST_ARGS ?=
E2E_ARGS ?=
# KUBERNETES_VERSION, KIND_NODE_IMAGE, METRICS_SERVER_VERSION, ...: the pinned versions.
include scripts/k8s_versions.env

.DEFAULT_GOAL := help
.PHONY: help venv run test lint unit crds bench system-deps k8s-assets testbed-up testbed-down demo demo-down e2e version clean

help:  ## list targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

venv: $(BIN)/.installed  ## create/update the virtualenv with the project and its dev tools

run: venv  ## start the engine on 127.0.0.1:$(PORT) with data in $(DATA_DIR)
	$(BIN)/novel-engine --host 127.0.0.1 --port $(PORT) --data-dir $(DATA_DIR)

system-deps:  ## install system packages the tests need (Debian; root or sudo)
	scripts/system-deps

lint: venv  ## ruff + mypy --strict
	$(BIN)/ruff check engine operator tests bench scripts e2e
	$(BIN)/ruff format --check engine operator tests bench scripts e2e
	$(BIN)/mypy engine/novel_engine operator/novel_operator e2e

test: venv system-deps lint k8s-assets  ## install everything the tests need, then lint and run the whole suite
	$(BIN)/pytest $(PYTEST_ARGS)

k8s-assets:  ## build or locate the Kubernetes test binaries (cached in ~/.cache/novel-engine)
	scripts/k8s-assets

testbed-up: k8s-assets  ## start the local control plane on 127.0.0.1 (shell setup: scripts/k8s-testbed env)
	scripts/k8s-testbed up

testbed-down:  ## stop the local control plane started by testbed-up
	scripts/k8s-testbed down

demo: venv k8s-assets  ## the operator on the local test bed with the sample NovelEngine (left running)
	scripts/k8s-testbed demo --operator $(BIN)/novel-engine-operator

demo-down:  ## stop what `make demo` started (operator and test bed)
	scripts/k8s-testbed down

e2e: venv  ## the end-to-end suite on a kind cluster it creates (Docker, kind, kubectl, helm; see e2e/README.md)
	$(BIN)/pytest e2e --provider kind --kind-node-image '$(KIND_NODE_IMAGE)' \
		--metrics-server-version '$(METRICS_SERVER_VERSION)' $(E2E_ARGS)

version:  ## print the project's version (the one source of image and chart versions)
	@$(PYTHON) -c 'import re, pathlib; print(re.search(r"__version__ = \"(.+)\"", pathlib.Path("engine/novel_engine/__init__.py").read_text())[1])'

unit: venv  ## the fast tests only (no control plane, no Docker)
	$(BIN)/pytest -m "not integration and not docker" $(PYTEST_ARGS)

crds: venv  ## regenerate the CRD in crds/ from the operator's model
	$(BIN)/python -m novel_operator.crd > crds/.novelengines.yaml.tmp
	mv crds/.novelengines.yaml.tmp crds/novelengines.novelengine.io.yaml

bench: venv system-deps  ## run the benchmarks (figures printed as ratios against an in-run baseline)
	$(BIN)/python -m bench

clean:  ## remove the virtualenv and local data
	rm -rf $(VENV) $(DATA_DIR) .pytest_cache .mypy_cache .ruff_cache
