# ntplatform: every target sets itself up on a fresh machine through `make setup`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup tools run test lint unit integration bench bench-failover bench-archive clean

setup: $(STAMP) tools

# promtool and prometheus (Debian's `prometheus` package) check and test the alert rules;
# docker-compose checks docker-compose.yml where the `docker compose` plugin is missing;
# headless chromium (Debian's `chromium`) renders the Dagster UI in tests/integration/test_dagster_ui.py.
tools:
	@missing=""; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	{ docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1; } || missing="$$missing docker-compose"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	[ -z "$$missing" ] || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "make setup: installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "make setup: missing tools; install Debian's packages:$$missing (sudo apt-get install$$missing)" >&2; exit 1; \
	  fi; }

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "make setup: $(PYTHON) not found; install Python 3.11" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)
	@echo "setup done: $(BIN)/ntplatform"

run: setup
	$(BIN)/ntplatform up $(ARGS)

lint: setup
	$(BIN)/ruff check ntplatform producer tests bench assets sensors definitions.py
	$(BIN)/ruff format --check ntplatform producer tests bench assets sensors definitions.py
	$(BIN)/mypy

unit: setup
	$(BIN)/python -m pytest tests/unit -q

integration: setup
	$(BIN)/python -m pytest tests/integration -q

test: setup lint
	$(BIN)/python -m pytest tests -q

bench: setup
	$(BIN)/python -m bench.replay_throughput $(ARGS)

bench-failover: setup
	$(BIN)/python -m bench.failover $(ARGS)

bench-archive: setup
	$(BIN)/python -m bench.archive_backfill $(ARGS)

clean:
	rm -rf .run .pytest_cache .mypy_cache .ruff_cache
