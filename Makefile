# The README's two commands: `make demo` and `make test`. Each builds the environment
# (a venv in .venv with the exact versions of requirements.lock, then mtaffect itself)
# when it is missing or the lock, setup.cfg or pyproject.toml changed.
# EXTRAS=s3 (or gs, ssh) installs requirements-s3.lock instead: the same pins plus DVC's
# plug-in for that kind of remote (README, "Sharing").
VENV   ?= .venv
PY     := $(VENV)/bin/python
EXTRAS ?=
LOCK   := requirements$(if $(EXTRAS),-$(EXTRAS)).lock
STAMP  := $(VENV)/.installed$(if $(EXTRAS),-$(EXTRAS))
REMOTES := s3 gs ssh
export DVC_NO_ANALYTICS := 1

.PHONY: venv demo test test-fast bench lint lock clean-venv

$(STAMP): $(LOCK) setup.cfg pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)  ## build the environment only (EXTRAS=s3, gs or ssh: with that DVC remote plug-in)

# repair-lock first: a run killed while DVC rewrote dvc.lock left it unreadable (README,
# "Interrupting a run"); it does nothing when dvc.lock is fine.
demo: $(STAMP)  ## run the whole pipeline on the active profile (synthetic demo by default)
	$(VENV)/bin/mtaffect repair-lock
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/dvc repro

# Tests run in two processes of one torch thread each (see tests/conftest.py).
test: $(STAMP)  ## the whole test suite, end-to-end DVC tests included
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 --dist loadgroup

test-fast: $(STAMP)  ## everything but the slow end-to-end tests
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 --dist loadgroup -m "not slow"

bench: $(STAMP)  ## every benchmarks/bench_*.py: one table, benchmarks/results.json
	$(PY) benchmarks/run.py

lint: $(STAMP)
	$(VENV)/bin/ruff check pipeline synthetic stages tests benchmarks templates

# The newest versions setup.cfg's ranges allow, for every platform and Python >= 3.11,
# with the hashes of their files (uv; the command is also in the lock's header). Each
# remote's lock is constrained by the main one, so it only adds packages.
lock:  ## refresh requirements.lock and the remotes' locks (then run `make test` and commit them)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet uv
	$(VENV)/bin/uv pip compile setup.cfg --extra test --universal --python-version 3.11 --generate-hashes \
		--quiet -o requirements.lock
	for r in $(REMOTES); do $(VENV)/bin/uv pip compile setup.cfg --extra test --extra $$r -c requirements.lock \
		--universal --python-version 3.11 --generate-hashes --quiet -o requirements-$$r.lock || exit 1; done

clean-venv:
	rm -rf $(VENV)
