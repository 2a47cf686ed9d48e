# raylane: `make demo` and `make test` each work alone on a fresh clone (they run `setup` first).
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The CPU build; a plain `torch` would pull a multi-GB CUDA build.
TORCH  ?= torch==2.13.*
PYTEST_ARGS ?=

.PHONY: setup demo test test-slow test-all test-fast check format bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check "$(TORCH)"
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/raylane demo run configs/churn.yaml

# The suite without the tests marked slow (15-25 min on 2 cores, by machine); CI runs this.
test: $(STAMP)
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

# Only the slow ones: load, chaos, multi-node and end-to-end tests (~15 min on 2 cores).
test-slow: $(STAMP)
	$(BIN)/pytest -m slow $(PYTEST_ARGS)

test-all: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/pytest -m "not slow" tests/unit $(PYTEST_ARGS)

check: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy platform

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python benchmarks/features.py
	$(BIN)/python benchmarks/train.py
	$(BIN)/python benchmarks/sweep.py --part search
	$(BIN)/python benchmarks/sweep.py --part scheduler --size small
	$(BIN)/python benchmarks/serve.py
	$(BIN)/python benchmarks/monitor.py

clean:
	rm -rf .raylane data .pytest_cache .mypy_cache .ruff_cache
