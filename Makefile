# The two commands that matter: `make run` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
VAR := $(or $(CRM_VAR_DIR),var)
ENV_FILE := $(or $(CRM_ENV_FILE),.env)
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)

.PHONY: run serve test lint format bench bench-data screenshots system-deps clean

$(VENV)/.base-installed: requirements/base.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements/base.txt
	@touch $@

$(VENV)/.dev-installed: requirements/dev.txt $(VENV)/.base-installed
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements/dev.txt
	@touch $@

## run: install, migrate, seed demo data and start web + worker/beat + SMTP (Ctrl-C stops all)
run: $(VENV)/.base-installed
	@$(MAKE) --no-print-directory serve

## serve: `run` without the install step (the smoke test starts the stack through this)
serve:
	python manage.py migrate --noinput
	python manage.py collectstatic --noinput --verbosity 0
	python manage.py seed_demo
	rm -rf $(VAR)/prometheus && mkdir -p $(VAR)/prometheus
	PROMETHEUS_MULTIPROC_DIR=$(abspath $(VAR))/prometheus exec honcho start -e $(ENV_FILE) -f Procfile

## test: lint, then the whole suite against PostgreSQL and Redis
test: $(VENV)/.dev-installed system-deps
	ruff check .
	ruff format --check .
	python manage.py makemigrations --check --dry-run
	pytest

lint: $(VENV)/.dev-installed
	ruff check . && ruff format --check .

format: $(VENV)/.dev-installed
	ruff check --fix . && ruff format .

## bench: benchmarks against PostgreSQL and Redis; figures go to docs/benchmarks.md
bench: $(VENV)/.dev-installed
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	@# smtp-source (bench/smtp_intake.py) comes with Postfix; no MTA is left running.
	@test -x /usr/sbin/smtp-source || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq postfix && (postfix stop 2>/dev/null || true))
	python bench/run.py

## bench-data: build the million-case and million-message benchmark databases once (reused)
bench-data: $(VENV)/.dev-installed
	python -c "from bench.cases_api import build_data; build_data()"
	python -c "from bench.mail_api import build_data; build_data()"

## screenshots: PNGs of the agent UI from the demo data, into docs/screenshots (PostgreSQL, Redis)
screenshots: $(VENV)/.dev-installed system-deps
	python bench/screenshots.py

## system-deps: Debian packages the test suite needs (a real browser for the UI tests)
system-deps:
	@test -x /usr/bin/chromium || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache htmlcov
