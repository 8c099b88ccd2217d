# Two commands set up a fresh machine: `make demo` and `make test`.
# Install steps are idempotent; stamps and downloads live in .cache/ (ignored by git).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
CACHE  := .cache
STAMP  := $(CACHE)/stamps

.PHONY: demo test lint typecheck pytest bench clean

$(STAMP):
	mkdir -p $(STAMP)

# The venv is rebuilt only when pyproject.toml changes. torch comes from pip's
# cache after the first download.
$(STAMP)/venv: pyproject.toml | $(STAMP)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(STAMP)/venv
	$(VENV)/bin/tts-otel demo --requests 20

lint: $(STAMP)/venv
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples

typecheck: $(STAMP)/venv
	$(VENV)/bin/mypy

pytest: $(STAMP)/venv
	$(PY) -m pytest

test: lint typecheck pytest

bench: $(STAMP)/venv
	$(PY) benchmarks/overhead.py

clean:
	rm -rf $(VENV) $(CACHE) tts-otel-out
