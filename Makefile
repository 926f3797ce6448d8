# invoicekit task runner. `make demo` and `make test` each set themselves up on a fresh
# Debian/Ubuntu machine with Python 3.11 (system packages via scripts/sysdeps.sh).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CORE   := $(VENV)/.installed-core
DEV    := $(VENV)/.installed-dev
LAB    := $(VENV)/.installed-lab
LAB_ARGS ?=

.PHONY: demo lab test bench lint samples clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "invoicekit needs Python >= 3.11, found " + sys.version.split()[0]'
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { bash scripts/sysdeps.sh venv && rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --upgrade pip

$(CORE): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[pdf,dedupe,redis,security]'
	@touch $@

$(DEV): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	@touch $@ $(CORE)

$(LAB): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[notebooks]'
	@touch $@

demo: $(CORE)
	bash scripts/sysdeps.sh
	$(BIN)/invoicekit demo --out out

# JupyterLab on notebooks/ (the `notebooks` extra: JupyterLab, the kernel, widgets, matplotlib, and the
# pdf/dedupe/redis extras the notebooks use); LAB_ARGS go to `jupyter lab`, e.g. LAB_ARGS=--no-browser
lab: $(LAB)
	bash scripts/sysdeps.sh
	$(BIN)/jupyter lab --notebook-dir=notebooks $(LAB_ARGS)

test: $(DEV)
	bash scripts/sysdeps.sh test
	$(BIN)/pytest --nbval --nbval-current-env --nbval-sanitize-with notebooks/nbval_sanitize.cfg

bench: $(DEV)
	$(BIN)/python -m benchmarks.run
	$(BIN)/python -m benchmarks.dedupe_bench --rows 100000
	$(BIN)/python -m benchmarks.render_bench
	$(BIN)/python -m benchmarks.cache_bench
	$(BIN)/python -m benchmarks.crypto_bench

lint: $(DEV)
	$(BIN)/ruff check invoicekit tests benchmarks scripts

samples: $(CORE)
	$(BIN)/invoicekit samples --out data/samples

clean:
	rm -rf $(VENV) out .pytest_cache
