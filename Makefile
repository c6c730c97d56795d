# mailflow — `make help` lists the targets (docs/design.md §7). Each one installs what it
# needs on a fresh Debian machine (run as root, or with sudo available for apt-get).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TSTAMP := $(VENV)/.installed-test

.PHONY: install install-test install-service test lint unit chaos demo bench lock clean help

help:
	@echo "make install   create .venv/ with mailflow and its pinned dependencies"
	@echo "make lint      ruff (lint and format check) and mypy"
	@echo "make unit      the pure-core tests only (no servers, seconds)"
	@echo "make demo      play a request through a procedure against throwaway local mail servers"
	@echo "make test      lint, type-check and run the whole test suite (real Dovecot, SMTP, PostgreSQL)"
	@echo "make chaos     the reliability suite at full size (>= 50 kill -9 per store, server faults)"
	@echo "make bench     run the benchmarks and print a table"
	@echo "make install-service  (root) install into $(PREFIX) as a systemd service; docs/deployment.md"
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
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: install-test
	@bash scripts/ensure-test-packages.sh
	$(BIN)/ruff check mailflow tests bench scripts daemon.py
	$(BIN)/ruff format --check .
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

# The service (docs/deployment.md): code and .venv in PREFIX, config in /etc/mailflow
# (never overwritten), the unit in /etc/systemd/system with PREFIX substituted. Run as root.
PREFIX  ?= /opt/mailflow
ETC     ?= /etc/mailflow
UNITDIR ?= /etc/systemd/system
STATE   ?= /var/lib/mailflow
BINDIR  ?= /usr/local/bin
# Debian's own Python: the service user must be able to run the venv's interpreter (a
# pyenv or ~/.local Python under /root is not readable by it).
SERVICE_PYTHON ?= /usr/bin/python3
install-service:
	getent passwd mailflow >/dev/null || adduser --system --group --no-create-home \
	  --home /var/lib/mailflow --gecos "mailflow daemon" mailflow
	install -d -m 0755 $(PREFIX) $(UNITDIR) $(ETC) $(BINDIR)
	install -d -m 0750 -o root -g mailflow $(ETC)/credentials
	install -d -m 0700 -o mailflow -g mailflow $(STATE)
	tar --exclude=./.venv --exclude=./store --exclude=./.git --exclude='*.egg-info' \
	  --exclude=__pycache__ -cf - . | tar -xf - -C $(PREFIX)
	$(MAKE) -C $(PREFIX) install PYTHON=$(SERVICE_PYTHON)
	setpriv --reuid=mailflow --regid=mailflow --init-groups $(PREFIX)/.venv/bin/mailflow --version
	@if [ ! -e $(ETC)/mailflow.toml ]; then \
	  sed -e 's|^url = "sqlite:///../store/mailflow.db"|url = "sqlite:///$(STATE)/mailflow.db"|' \
	      -e 's|^archive_dir = "../store/archive"|archive_dir = "$(STATE)/archive"|' \
	      -e 's|^password_env = "MAILFLOW_IMAP_PASSWORD"|password_credential = "imap"|' \
	      -e 's|^password_env = "MAILFLOW_SMTP_PASSWORD"|password_credential = "smtp"|' \
	      -e 's|^secret_env = "MAILFLOW_SECRET"|secret_credential = "hmac"|' \
	      -e 's|^# poai_file = "poai.toml"|poai_file = "poai.toml"|' \
	      config/mailflow.toml > $(ETC)/mailflow.toml; \
	  echo "wrote $(ETC)/mailflow.toml: edit it (docs/deployment.md, step 3)"; \
	else echo "kept $(ETC)/mailflow.toml"; fi
	@if [ ! -e $(ETC)/poai.toml ]; then install -m 0644 config/poai.toml $(ETC)/poai.toml; \
	  echo "wrote $(ETC)/poai.toml: set the unit's targets (docs/deployment.md, step 3)"; \
	else echo "kept $(ETC)/poai.toml"; fi
	@for s in imap smtp hmac; do [ -e $(ETC)/credentials/$$s ] || \
	  { install -m 0640 -o root -g mailflow /dev/null $(ETC)/credentials/$$s; \
	    echo "created empty $(ETC)/credentials/$$s: fill it"; }; done
	sed -e 's|/opt/mailflow|$(PREFIX)|g' -e 's|/etc/mailflow|$(ETC)|g' \
	  systemd/mailflow.service > $(UNITDIR)/mailflow.service
	sed -e 's|/opt/mailflow|$(PREFIX)|g' -e 's|/etc/mailflow|$(ETC)|g' \
	  systemd/mailflow-admin > $(BINDIR)/mailflow-admin
	chmod 0755 $(BINDIR)/mailflow-admin
	@if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	@echo "next: edit $(ETC)/mailflow.toml and the secrets, then"
	@echo "  $(PREFIX)/.venv/bin/mailflow --config $(ETC)/mailflow.toml check-config"
	@echo "  systemctl enable --now mailflow"

lock: install-test
	$(BIN)/python -m pip freeze --exclude-editable --disable-pip-version-check \
	  | grep -v '^mailflow' > requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
