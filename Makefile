# Two commands do everything on a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DB     ?= sqlite:///baton.db
ARGS   ?=

.PHONY: install migrate serve lint docs test fuzz soak bench scaling clean

$(BIN)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Baton needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# 0.1.0 was distributed as `baton` (PyPI's name for another project): drop it from an old .venv.
	@$(BIN)/python -m pip uninstall --quiet --yes baton 2>/dev/null || true
	@# dev = the server, redis and jose extras plus the test and lint tools (pyproject.toml).
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $@

install: $(BIN)/.installed

# `make serve` needs only the server extra: a .venv that `make install` (dev) made has it already.
$(BIN)/.serving: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Baton needs Python 3.11 or newer")'
	@if [ ! $(BIN)/.installed -nt pyproject.toml ]; then set -e; \
	  $(PYTHON) -m venv $(VENV); \
	  $(BIN)/python -m pip install --quiet --upgrade pip; \
	  $(BIN)/python -m pip uninstall --quiet --yes baton 2>/dev/null || true; \
	  echo '$(BIN)/python -m pip install --quiet -e ".[server]"'; \
	  $(BIN)/python -m pip install --quiet -e ".[server]"; \
	fi
	@touch $@

migrate: $(BIN)/.serving
	$(BIN)/baton db upgrade --db $(DB)

serve: migrate
	$(BIN)/baton serve --db $(DB) $(ARGS)

lint: install
	$(BIN)/ruff check src tests bench examples mkdocs_hooks.py
	$(BIN)/ruff format --check src tests bench examples mkdocs_hooks.py
	$(BIN)/mypy
	$(BIN)/mypy mkdocs_hooks.py
	@# The docs' generated tables (options, endpoints) are current, and the site builds.
	$(BIN)/python -m baton.config readme --check
	$(BIN)/python -m baton.server.routes readme --check
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# The docs site (mkdocs.yml) into site/: a broken link or anchor fails it. `.venv/bin/mkdocs
# serve` shows it at http://127.0.0.1:8000 while you edit (stop `baton serve` first, or add
# `-a 127.0.0.1:8001`).
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# The suite on every core (pytest-xdist; tests/conftest.py says what runs together), then the
# load tests alone, so that their fixed-time bursts of traffic never share the cores.
test: lint
	$(BIN)/pytest -n auto -m "not load" $(ARGS)
	$(BIN)/pytest -m load $(ARGS)

fuzz: install
	$(BIN)/python bench/fuzz.py --examples 300 --scenarios 300 $(ARGS)

soak: install
	$(BIN)/python bench/soak.py --duration 180 $(ARGS)

# Baton against django-oauth-toolkit, Authlib and node-oidc-provider, in one run (bench/README.md).
# Every Python server runs on the fastest CPython here (bench/pick_python.py), from a virtualenv
# of its own in bench/.scratch/ with the peers; the report goes to bench/RESULTS.md and
# bench/results.png. BENCH_PYTHON=/path/to/python picks the interpreter instead.
BENCH_PYTHON ?= $(shell $(PYTHON) bench/pick_python.py)
BENCH_BIN    := bench/.scratch/baton/bin

$(BENCH_BIN)/.installed: pyproject.toml
	$(BENCH_PYTHON) -m venv --clear bench/.scratch/baton
	$(BENCH_BIN)/python -m pip install --quiet --upgrade pip
	@# bench = the server extra plus matplotlib for the plot.
	$(BENCH_BIN)/python -m pip install --quiet -e ".[bench]"
	@touch $@

bench: $(BENCH_BIN)/.installed
	$(BENCH_BIN)/python bench/compare.py $(ARGS)

# Refresh throughput and p99 with 10k, 1M and 5M live grants, SQLite and PostgreSQL, from the
# same virtualenv (bench/README.md, "As the database grows"): bench/SCALING.md, scaling.png.
scaling: $(BENCH_BIN)/.installed
	$(BENCH_BIN)/python bench/scaling.py $(ARGS)

clean:
	rm -rf $(VENV) bench/.scratch .pytest_cache .mypy_cache .ruff_cache .hypothesis

# The container image from Debian's packages, no base image (deploy/container/build.sh,
# docs/container.md): as root, with mmdebstrap and buildah installed. IMAGE:latest is built.
IMAGE ?= localhost/baton
.PHONY: image image-test
image:
	IMAGE=$(IMAGE) PYTHON=$(PYTHON) deploy/container/build.sh

# The image's end-to-end test (tests/packaging/test_image.py) on the image just built.
# PODMAN="podman --runtime runc" where crun refuses the host's cgroups.
PODMAN ?= podman
image-test: install image
	BATON_IMAGE_TEST=1 BATON_IMAGE=$(IMAGE):latest BATON_IMAGE_PODMAN="$(PODMAN)" \
		$(BIN)/pytest -p no:cacheprovider tests/packaging/test_image.py $(ARGS)
