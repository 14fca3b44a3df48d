# Vectis — the README's commands. Everything runs from a virtualenv in .venv.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
SANDBOX_PORT ?= 9100

.DEFAULT_GOAL := help
.PHONY: help prepare run demo test lint format bench bench-pages bench-scale bench-report check-migrations clean

help:
	@echo "make demo   - Vectis + a simulated Keepit MSP at http://127.0.0.1:8000/admin/"
	@echo "make run    - Vectis (web, worker, beat) at http://127.0.0.1:8000/admin/"
	@echo "make test   - the whole test suite (needs PostgreSQL, Redis and /usr/bin/chromium)"
	@echo "make lint   - ruff and mypy"
	@echo "make bench  - the sync benchmark against a large sandbox MSP (needs PostgreSQL)"
	@echo "make bench-pages - page render times with 8,000 connectors and 500,000 events"
	@echo "                   (ARGS=\"--connectors 80000 --events 7000000\": the largest MSPs)"
	@echo "make bench-scale - the sync at 500 to 4,000 accounts, fitted to 20,000; 1 and 2 workers"
	@echo "make bench-report - the monthly PDF report of a customer with 50 connectors"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Re-install only when a requirements file changes.
$(VENV)/.runtime-installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --disable-pip-version-check -q -r requirements-dev.txt
	touch $@ $(VENV)/.runtime-installed

.env:
	$(PYTHON) scripts/make_env.py .env

var:
	mkdir -p var

prepare: $(VENV)/.runtime-installed .env | var
	$(BIN)/python manage.py migrate --no-input -v 0
	$(BIN)/python manage.py ensure_admin --password-file var/admin-password.txt

run: prepare
	@if grep -q '^KEEPIT_BASE_URL_TEMPLATE=http://127.0.0.1' .env 2>/dev/null; then \
		echo "Note: .env points KEEPIT_BASE_URL_TEMPLATE at the demo sandbox (written by make demo);"; \
		echo "      remove that line to sync a real Keepit."; fi
	@echo "Vectis: http://127.0.0.1:8000/admin/  (user admin; password printed above on first run, also in var/admin-password.txt)"
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start -f Procfile

demo: prepare
	@# Commands run by hand in this folder (keepit_sync, keepit_connection ...) read .env:
	@# point them at the sandbox too.
	$(PYTHON) scripts/make_env.py .env --set "KEEPIT_BASE_URL_TEMPLATE=http://127.0.0.1:$(SANDBOX_PORT)/{region}"
	KEEPIT_BASE_URL_TEMPLATE="http://127.0.0.1:$(SANDBOX_PORT)/{region}" \
		$(BIN)/python manage.py keepit_demo_setup
	@echo "Vectis: http://127.0.0.1:8000/admin/  (user admin; password printed above on first run, also in var/admin-password.txt)"
	@echo "Keepit sandbox: http://127.0.0.1:$(SANDBOX_PORT)/us-dc (a simulated MSP with 40 customers)"
	PATH="$(CURDIR)/$(BIN):$$PATH" SANDBOX_PORT=$(SANDBOX_PORT) \
		KEEPIT_BASE_URL_TEMPLATE="http://127.0.0.1:$(SANDBOX_PORT)/{region}" \
		$(BIN)/honcho start -f Procfile.demo

# axe-core (the accessibility checker the browser tests inject), pinned in the lock file.
tests/browser/node_modules/.installed: tests/browser/package.json tests/browser/package-lock.json
	npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
	touch $@

test: $(VENV)/.dev-installed tests/browser/node_modules/.installed
	$(BIN)/pytest

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

format: $(VENV)/.dev-installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

check-migrations: $(VENV)/.dev-installed
	DJANGO_SETTINGS_MODULE=vectis.settings_test $(BIN)/python manage.py makemigrations --check --dry-run

bench: $(VENV)/.dev-installed
	$(BIN)/python bench/sync_bench.py

bench-pages: $(VENV)/.dev-installed
	$(BIN)/python bench/pages_bench.py $(ARGS)

bench-scale: $(VENV)/.dev-installed
	$(BIN)/python bench/scale_bench.py $(ARGS)

bench-report: $(VENV)/.dev-installed
	$(BIN)/python bench/report_bench.py $(ARGS)

clean:
	rm -rf var/celery var/celerybeat-schedule*
