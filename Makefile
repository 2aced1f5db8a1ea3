# kcm — the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SERVICES := deploy/local/services.sh
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: help install services services-stop services-status services-env run test test-unit \
        test-integration chaos lint bench migrate clean

help:
	@echo "make run     - start kcm locally (API + supervisor + dead-letter worker) on embedded defaults"
	@echo "make test    - install, start Kafka/PostgreSQL/Redis, run the whole test suite (chaos faults once each)"
	@echo "make chaos   - the chaos suite, every fault x 5 (KCM_CHAOS_ROUNDS); table in .local/chaos/latest.md"
	@echo "make services | services-stop | services-status | services-env"
	@echo "make install | lint | bench | migrate"

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "kcm needs Python 3.11+")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel

$(VENV)/.installed: $(PY) setup.cfg pyproject.toml tests/plugins/kcm-test-plugin/pyproject.toml
	$(PY) -m pip install -q -e '.[test,bench,sentry]'
	$(PY) -m pip install -q -e tests/plugins/kcm-test-plugin
	@touch $@

install: $(VENV)/.installed

services: install
	@$(SERVICES) start

services-stop:
	@$(SERVICES) stop

services-status:
	@$(SERVICES) status

services-env:
	@$(SERVICES) env

migrate: install
	$(PY) -m schema.migrate

run: install
	@$(SERVICES) start redis kafka
	@deploy/local/run.sh

# pytest's exit code 5 (no tests collected) is a failure here, not a pass. tests/chaos is part of it: each fault
# once (KCM_CHAOS_ROUNDS=1), against private Redis/PostgreSQL/Kafka instances the suite starts and stops itself
test: install
	@$(SERVICES) start
	@set -a; eval "$$($(SERVICES) env)"; set +a; \
	  rc=0; $(PY) -m pytest $(PYTEST_ARGS) || rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "make test: no tests ran" >&2; exit 1; fi; exit $$rc

chaos: install
	@$(SERVICES) start
	@set -a; eval "$$($(SERVICES) env)"; set +a; \
	  KCM_CHAOS_ROUNDS=$${KCM_CHAOS_ROUNDS:-5} $(PY) -m pytest -p no:cacheprovider tests/chaos $(PYTEST_ARGS)

test-unit: install
	$(PY) -m pytest -m unit $(PYTEST_ARGS)

test-integration: install
	@$(SERVICES) start
	@set -a; eval "$$($(SERVICES) env)"; set +a; $(PY) -m pytest -m integration $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check api supervisor workers processors schema tests bench deploy

bench: install
	@$(SERVICES) start
	@set -a; eval "$$($(SERVICES) env)"; set +a; $(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) *.egg-info
