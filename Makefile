# `make demo` and `make test` are all a newcomer types: each creates .venv when it
# is missing and installs the package (with its test extras) into it first.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-stamp
SHARED_DATA := $(abspath ../shared/data)
# Tests read the real data sets through ACCJAX_DATA when ../shared/data exists.
DATA_ENV := $(if $(wildcard $(SHARED_DATA)),ACCJAX_DATA=$(SHARED_DATA),)

# Both cores; `slow` (the long statistical checks) is left to `make test-slow`.
PYTEST := $(VENV)/bin/python -m pytest -q -n 2

.PHONY: demo test test-slow lint bench docs clean

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/python -m accjax demo

test: $(STAMP)
	$(DATA_ENV) $(PYTEST) -m "not slow"

test-slow: $(STAMP)
	$(DATA_ENV) $(PYTEST) -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check accjax tests bench
	$(VENV)/bin/ruff format --check accjax tests bench

bench: $(STAMP)
	$(VENV)/bin/python bench/api.py

# The docs site (Sphinx, MyST Markdown, autodoc); any warning is an error.
docs: $(STAMP)
	$(VENV)/bin/python -m sphinx -W --keep-going -q -b html docs docs/_build/html

clean:
	rm -rf $(VENV) accjax-demo .pytest_cache docs/_build
