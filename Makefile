# mailflow — the four commands of DESIGN.md §4, each installing what it needs on a
# fresh Debian machine (run as root, or with sudo available for apt-get).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TSTAMP := $(VENV)/.installed-test

.PHONY: install install-test test lint unit chaos demo bench lock clean help

help:
	@echo "make install   create .venv/ with mailflow and its pinned dependencies"
	@echo "make demo      play a request through a procedure against throwaway local mail servers"
	@echo "make test      lint, type-check and run the whole test suite (real Dovecot, SMTP, PostgreSQL)"
	@echo "make chaos     the reliability suite at full size (>= 50 kill -9 per store, server faults)"
	@echo "make bench     run the benchmarks and print a table"
	@echo "make lock      re-pin dependencies into requirements.lock after changing pyproject.toml"

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@bash scripts/ensure-python.sh $(PYTHON)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -e .
	@touch $@

install-test: $(TSTAMP)

$(TSTAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[test]'
	@touch $@

lint: install-test
	$(BIN)/ruff check mailflow tests bench scripts daemon.py
	$(BIN)/mypy

test: install-test
	@bash scripts/ensure-test-packages.sh
	$(BIN)/ruff check mailflow tests bench scripts daemon.py
	$(BIN)/mypy
	$(BIN)/pytest

unit: install-test
	$(BIN)/pytest tests/unit

# tests/reliability/ at full size: kill -9 the daemon at least 50 times per store, bigger
# backlogs for the fault and several-daemon tests (`make test` runs them small). Prints the
# seed and the repeats per kill; replay a run with MAILFLOW_CHAOS_SEED=<seed>.
chaos: install-test
	@bash scripts/ensure-test-packages.sh
	MAILFLOW_CHAOS=1 $(BIN)/pytest tests/reliability -s --timeout=3600

# The demo reuses the test bed (tests/testbed/: Dovecot, the aiosmtpd relay), hence the test
# extras and Debian packages. `make demo DEMO_ARGS=--keep` keeps its files for a look after.
DEMO_ARGS ?=
demo: install-test
	@bash scripts/ensure-test-packages.sh
	$(BIN)/python scripts/demo.py $(DEMO_ARGS)

# Benchmarks on the same test bed (real Dovecot, relay, PostgreSQL); prints one table.
# `make bench BENCH_ARGS=--quick` runs small sizes in a few minutes; see bench/README.md.
BENCH_ARGS ?=
bench: install-test
	@bash scripts/ensure-test-packages.sh
	$(BIN)/python bench/run.py $(BENCH_ARGS)

lock: install-test
	$(BIN)/python -m pip freeze --exclude-editable --disable-pip-version-check \
	  | grep -v '^mailflow' > requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
