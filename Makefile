# The two commands that matter: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: run test lint bench install install-dev check-python migrate lint-schema clean

check-python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required, found " + sys.version.split()[0]'

$(VENV)/.installed: requirements.txt | check-python
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(PIP) install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# Development: SQLite and the filesystem broker under var/ unless DATABASE_URL /
# REDIS_URL are set; web + worker + beat in the foreground, Ctrl-C stops all.
run: export DJANGO_ENV_FILE := var/dev.env
run: install
	$(PY) scripts/dev_env.py var/dev.env
	$(PY) manage.py migrate --noinput
	$(PY) manage.py create_dev_superuser
	$(VENV)/bin/honcho -f Procfile.dev start

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
	rm -rf $(VENV) var
