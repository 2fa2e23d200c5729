# Every install step lives here: a fresh clone needs only Python 3.11+ and make.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test lint demo bench clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "bulksync needs Python 3.11+, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@# an editable install leaves bulksync uncompiled; where PYTHONDONTWRITEBYTECODE is set every start recompiles it
	$(BIN)/python -m compileall -q bulksync
	@touch $(STAMP)

install: $(STAMP)

test: install
	$(BIN)/python -m pytest -q -n auto

lint: install
	$(BIN)/ruff check bulksync tests bench
	$(BIN)/mypy bulksync tests bench

demo: install
	@PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

bench: install
	@# timings include start-up: modules edited since the install would otherwise be compiled on every run
	$(BIN)/python -m compileall -q bulksync
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .demo .bench .pytest_cache .mypy_cache .ruff_cache
