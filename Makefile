# The two commands that matter: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# make run PORT=8010 HOST=0.0.0.0. HOST ignores the environment on purpose: some shells
# export HOST=<machine name>, which would put the dev hub on the network.
HOST := 127.0.0.1
PORT ?= 8000

.PHONY: run superuser test lint bench install install-dev check-python migrate lint-schema clean

check-python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required, found " + sys.version.split()[0]'

# scripts/install.py: uv (bootstrapped from PyPI when absent, pip as the fallback),
# one status line per step, and nothing at all when the requirements' hash is unchanged.
install: check-python
	@$(PYTHON) scripts/install.py requirements.txt --venv $(VENV)

install-dev: check-python
	@$(PYTHON) scripts/install.py requirements-dev.txt --venv $(VENV)

# Development: SQLite and the filesystem broker under var/ unless DATABASE_URL /
# REDIS_URL are set; web + worker + beat in the foreground, Ctrl-C stops all (exit 0).
run: STARTED := $(shell date +%s)
run: install
	@echo "Demo data for the staff console (once, development database only): $(PY) manage.py seed_demo"
	@$(PY) scripts/dev_run.py --host $(HOST) --port $(PORT) --started $(STARTED)

# A new password for the development admin (printed once, like the first one).
superuser: install
	@$(PY) manage.py dev_admin --reset

migrate: install
	$(PY) manage.py migrate --noinput

test: install-dev
	DJANGO_SETTINGS_MODULE=config.test_settings $(VENV)/bin/pytest

# ruff: pyflakes, bugbear, pyupgrade, django, simplify, isort (ruff.toml); formatting checked, not applied.
lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: install-dev
	$(PY) bench/run.py

lint-schema: install
	$(PY) manage.py spectacular --validate --fail-on-warn --file /dev/null

clean:
	rm -rf $(VENV) var staticfiles
