# One entry point for people and CI. `make run` and `make test` do all set-up themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.runtime-installed
DEV_STAMP := $(VENV)/.dev-installed
export LITELLM_LOCAL_MODEL_COST_MAP := True

.PHONY: run test lint typecheck unit redis bench compat clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(RUNTIME_STAMP): requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install -q -r requirements.txt
	touch $@

$(DEV_STAMP): requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	touch $@ $(RUNTIME_STAMP)

run: $(RUNTIME_STAMP)  ## start the gateway on $$PORT (default 4000)
	$(BIN)/python -m proxy_core

redis:
	@scripts/ensure-redis.sh

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

test: $(DEV_STAMP) redis lint typecheck  ## lint, type-check and run every test
	$(BIN)/python -m pytest -q -p no:cacheprovider

unit: $(DEV_STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit

bench:  ## the performance suite against the LiteLLM proxy and a bare SDK app (bench/README.md)
	$(MAKE) -C bench

COMPAT_VENV := .venv-compat

$(COMPAT_VENV)/bin/python:
	$(PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_VENV)/bin/python -m pip install -q eval-protocol==0.3.33

compat: $(DEV_STAMP) $(COMPAT_VENV)/bin/python redis  ## the eval-protocol client (own venv) against the gateway
	$(BIN)/python compat/check.py $(COMPAT_VENV)/bin/python

clean:
	rm -rf $(VENV) $(COMPAT_VENV) .mypy_cache .ruff_cache .pytest_cache
