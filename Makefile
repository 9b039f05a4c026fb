# One task runner. Every target bootstraps its own virtual environment (.venv) first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help venv run demo test lint format bench bench-quick soak clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)  ## create .venv and install chatkeep with its dev extras

run: $(STAMP)  ## the main job: chatkeep serve on ./chatkeep.db (http://127.0.0.1:8765)
	$(BIN)/chatkeep serve

demo: $(STAMP)  ## a conversation that survives a brand-new Python process
	$(BIN)/python examples/quickstart.py

test: $(STAMP)  ## the whole test suite
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)  ## ruff + mypy --strict
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy

format: $(STAMP)  ## apply ruff's formatting and safe fixes
	$(BIN)/ruff format src tests bench examples
	$(BIN)/ruff check --fix src tests bench examples

bench: $(STAMP)  ## all benchmarks: vs raw drivers, tokenizer accuracy, vs the peers (<= ~20 min)
	$(BIN)/python -m bench.run
	$(BIN)/python bench/tokenizer_accuracy.py --seed 7
	$(BIN)/python -m bench.peers.run

bench-quick: $(STAMP)  ## a shorter run of the same (under 3 minutes, plus the peers' venv once)
	$(BIN)/python -m bench.run --quick
	$(BIN)/python -m bench.peers.run --quick

soak: $(STAMP)  ## 200+ SIGKILLs and an 8-process soak on every backend (needs PostgreSQL + Redis; <= 15 min)
	$(BIN)/python -m tests.reliability.soak $(SOAK_ARGS)

clean:  ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist
