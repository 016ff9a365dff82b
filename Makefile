# Two entry points for a fresh machine: `make serve` and `make test`.
# Each creates .venv in the project root and installs what it needs when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: install install-dev serve test lint corpus screenshots clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# torch is installed first and alone: the pinned CPU wheel is on disk; any other
# resolution would pull several GB of CUDA packages.
$(VENV)/.installed: $(VENV)/bin/python pyproject.toml
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

serve: install
	$(VENV)/bin/attnviz serve

test: install-dev
	bash scripts/system-deps.sh
	$(PY) -m pytest -q

lint: install-dev
	$(VENV)/bin/ruff check attnviz tests bench
	$(VENV)/bin/ruff format --check attnviz tests bench
	$(VENV)/bin/mypy

# The README's pictures: the browser tests with the bundled models, saving into docs/.
screenshots: install-dev
	bash scripts/system-deps.sh
	ATTNVIZ_SCREENSHOTS=$(CURDIR)/docs/screenshots $(PY) -m pytest -q tests/e2e

corpus: install
	$(VENV)/bin/attnviz corpus generate --pairs 200000 --seed 1 --out data/corpus

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
