# The README's two commands: `make demo` and `make test`. Each builds the environment
# (a venv in .venv, installed from setup.cfg) when it is missing or setup.cfg changed.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export DVC_NO_ANALYTICS := 1

.PHONY: venv demo test test-fast bench lint clean-venv

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)  ## build the environment only

demo: $(STAMP)  ## run the whole pipeline on the active profile (synthetic demo by default)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/dvc repro

# Tests run in two processes of one torch thread each (see tests/conftest.py).
test: $(STAMP)  ## the whole test suite, end-to-end DVC tests included
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 --dist loadgroup

test-fast: $(STAMP)  ## everything but the slow end-to-end tests
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 --dist loadgroup -m "not slow"

bench: $(STAMP)  ## every benchmarks/bench_*.py: one table, benchmarks/results.json
	$(PY) benchmarks/run.py

lint: $(STAMP)
	$(VENV)/bin/ruff check pipeline stages tests benchmarks

clean-venv:
	rm -rf $(VENV)
