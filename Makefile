# Two commands for a newcomer: `make demo` (set up, train the default VAE, write pictures and
# metrics) and `make test` (set up, run the test suite). Both create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
RUN    ?= runs/demo

.PHONY: setup demo test test-fast lint format bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch pinned to the CPU build (an unpinned torch pulls a multi-GB CUDA build)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev,playground,tensorboard]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/vaekit train --run-dir $(RUN) --overwrite
	$(VENV)/bin/vaekit evaluate $(RUN) --samples 500 --no-progress
	$(VENV)/bin/vaekit report $(RUN)

# Style first (ruff: formatting and lint, as configured in pyproject.toml), then the whole suite,
# slow fault tests included (what CI runs).
test: setup lint
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/ruff check src tests benchmarks

# Apply the formatter and the safe lint fixes.
format: setup
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix src tests benchmarks

# For a quick loop while developing: everything but the tests marked slow.
test-fast: setup
	$(PY) -m pytest -m "not slow"

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis

# Benchmarks (not tests): vaekit against a plain PyTorch loop and Pythae, measured in one run;
# figures go to benchmarks/results/bench.json. About 15 minutes on 2 CPU cores.
bench: setup
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) benchmarks/run.py
