# Two commands do everything on a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DB     ?= sqlite:///baton.db
ARGS   ?=

.PHONY: install migrate serve lint test fuzz soak bench clean

$(BIN)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Baton needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $@

install: $(BIN)/.installed

migrate: install
	$(BIN)/baton db upgrade --db $(DB)

serve: migrate
	$(BIN)/baton serve --db $(DB) $(ARGS)

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/pytest $(ARGS)

fuzz: install
	$(BIN)/python bench/fuzz.py --examples 300 --scenarios 300 $(ARGS)

soak: install
	$(BIN)/python bench/soak.py --duration 180 $(ARGS)

# Baton against django-oauth-toolkit, Authlib and node-oidc-provider, in one run (bench/README.md).
# The peers install into bench/.scratch/; the report goes to bench/RESULTS.md and bench/results.png.
$(BIN)/.bench-installed: $(BIN)/.installed pyproject.toml
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	@touch $@

bench: $(BIN)/.bench-installed
	$(BIN)/python bench/compare.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
