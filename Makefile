# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test lint bench install system-deps clean

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "fetchweb needs Python 3.11 or newer")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e . --group dev
	touch $@

install: $(VENV)/.installed

run: install
	bin/run

system-deps:
	bin/install-system-deps

test: install system-deps
	bin/test

# Benchmarks against fetchmail; ARGS="--cases pop3,imap --messages 200" for a quick run.
bench: install system-deps
	$(PY) -m bench $(ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy --strict retrieval/engine retrieval/rcfile retrieval/cli
	$(VENV)/bin/mypy .

clean:
	rm -rf $(VENV) var
