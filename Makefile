# Two-command quickstart: `make run` (default experiment) and `make test` (the suite).
# Both create .venv on first use and install everything into it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONFIG ?= configs/vae_digits.yaml
PYTEST_ARGS ?=

.PHONY: run test test-fast test-compiled-slow fuzz lint typecheck docs docs-serve format bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The tested torch (a CPU wheel on this disk); installed first so no other
	# requirement pulls a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m experiments $(CONFIG) $(ARGS)

# The compiled variants of the slowest statistical tests (SBC, 128-chain divergences, the
# ill-conditioned Gaussian, the funnel, conjugate posteriors of models: ~5 min under
# aot_eager) run in `make test-compiled-slow`, so that `make test` fits CI's 20 minutes on 2
# cores; their eager variants run in `make test` (see SLOW_WHEN_COMPILED in tests/conftest.py).
test: $(STAMP)
	$(PY) -m pytest -q -m "not (slow and compiled)" $(PYTEST_ARGS)

test-compiled-slow: $(STAMP)
	$(PY) -m pytest -q -m "slow and compiled" $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

# The property-based fuzz suite of every public entry point (tests/fuzz) with ten times the
# examples of `make test`, random seeds (HYPOTHESIS_PROFILE=ci is the derandomised default).
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=nightly $(PY) -m pytest -q tests/fuzz $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# The documentation site (MkDocs + mkdocstrings): `make docs` builds site/ with --strict,
# so a broken link or reference fails; `make docs-serve` previews it with live reload.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# models.py in full (500 + 1000 iterations, 128 chains, two repeats) takes over an hour on
# 2 cores: its smoke run (--quick) here, the full command in docs/benchmarks/models.md.
bench: $(STAMP)
	for b in vae mcmc mcmc_chains gumbel gp dpp kalman swendsen_wang segmentation gan distributed; do $(PY) benchmarks/$$b.py || exit 1; done
	$(PY) benchmarks/models.py --quick

clean:
	rm -rf $(VENV) runs site .pytest_cache .ruff_cache .mypy_cache
