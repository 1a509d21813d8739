# Every target sets up what it needs; `make run` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8080
DATA_DIR ?= ./.data
PYTEST_ARGS ?=
# Images: the version comes from the package; BASE_IMAGE is the base users get.
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' engine/novel_engine/__init__.py)
BASE_IMAGE ?= python:3.12-slim
ENGINE_IMAGE ?= novel-engine/engine:$(VERSION)
OPERATOR_IMAGE ?= novel-engine/operator:$(VERSION)
DOCKER_BUILD_FLAGS ?=
PIP_CA ?=

.DEFAULT_GOAL := help
.PHONY: help venv run images test lint unit crds bench system-deps k8s-assets testbed-up testbed-down clean

help:  ## list targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,operator]'
	touch $@

venv: $(BIN)/.installed  ## create/update the virtualenv with the project and its dev tools

run: venv  ## start the engine on 127.0.0.1:$(PORT) with data in $(DATA_DIR)
	$(BIN)/novel-engine --host 127.0.0.1 --port $(PORT) --data-dir $(DATA_DIR)

build_image = docker build $(DOCKER_BUILD_FLAGS) -f images/Dockerfile --target $(1) -t $(2) \
	--build-arg BASE_IMAGE=$(BASE_IMAGE) --build-arg VERSION=$(VERSION) \
	--build-arg REVISION=$(shell git rev-parse HEAD 2>/dev/null) .

images:  ## build the engine and operator images (vars ENGINE_IMAGE OPERATOR_IMAGE BASE_IMAGE; PIP_CA=CA bundle for pip)
	@set -e; $(if $(PIP_CA),cp '$(PIP_CA)' images/pip-ca.crt; trap 'rm -f images/pip-ca.crt' EXIT;) \
	$(call build_image,engine,$(ENGINE_IMAGE)); \
	$(call build_image,operator,$(OPERATOR_IMAGE))

system-deps:  ## install system packages the tests need (Debian; root or sudo)
	scripts/system-deps

lint: venv  ## ruff + mypy --strict
	$(BIN)/ruff check engine operator tests bench scripts
	$(BIN)/ruff format --check engine operator tests bench scripts
	$(BIN)/mypy engine/novel_engine operator/novel_operator

test: venv system-deps lint k8s-assets  ## install everything the tests need, then lint and run the whole suite
	$(BIN)/pytest $(PYTEST_ARGS)

k8s-assets:  ## build or locate the Kubernetes test binaries (cached in ~/.cache/novel-engine)
	scripts/k8s-assets

testbed-up: k8s-assets  ## start the local control plane on 127.0.0.1 (shell setup: scripts/k8s-testbed env)
	scripts/k8s-testbed up

testbed-down:  ## stop the local control plane started by testbed-up
	scripts/k8s-testbed down

unit: venv  ## the fast tests only (no control plane, no Docker)
	$(BIN)/pytest -m "not integration and not docker" $(PYTEST_ARGS)

crds: venv  ## regenerate the CRD in crds/ from the operator's model
	$(BIN)/python -m novel_operator.crd > crds/.novelengines.yaml.tmp
	mv crds/.novelengines.yaml.tmp crds/novelengines.novelengine.io.yaml

bench: venv system-deps  ## run the benchmarks (figures printed as ratios against an in-run baseline)
	$(BIN)/python -m bench

clean:  ## remove the virtualenv and local data
	rm -rf $(VENV) $(DATA_DIR) .pytest_cache .mypy_cache .ruff_cache
