# Two commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit chromium bench bench-scale bench-harness soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

lint: $(STAMP)
	$(BIN)/ruff check src tests examples bench
	$(BIN)/ruff format --check src tests examples bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q

# The dashboard's browser tests drive the system's Chromium through Playwright (no browser
# download): install it from the machine's package manager where it is missing.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
		echo "make: installing Chromium for the dashboard's browser tests (apt-get install chromium)"; \
		if [ "$$(id -u)" -eq 0 ]; then sudo=; else sudo=sudo; fi; \
		$$sudo apt-get update -q && $$sudo apt-get install -y -q chromium; }

test: lint typecheck chromium unit

# SQLite, then PostgreSQL (a throwaway cluster of its own, or $$WMBENCH_POSTGRES), then scale
# (100,000 rows and a 100,000-job drain here; `make bench-scale` for 1,000,000); one summary
# table at the end. docs/benchmarks.md has the figures and how they were taken.
bench: $(STAMP)
	$(BIN)/python -m bench.all

# The issue's scale figure: 1,000,000 rows, and a worker's RSS over a 1,000,000-job drain.
bench-scale: $(STAMP)
	$(BIN)/python -m bench.scale --rows 1000000 --drain 1000000

# The shared harness (kept outside the project) with workmanager's adapter, beside the peers.
bench-harness: $(STAMP)
	$(BIN)/python -m bench.harness.run

# The fault-injection soak tier (tests/faults, reliability.md §4): every scenario at N = 10,000
# where the plan says so, seeded ($$WM_FAULT_SEED or SEED=), one table of figures at the end.
# ONLY="name ..." runs some scenarios; SOAK_ARGS passes more flags (--backend sqlite, --n 1000).
SEED ?= 20261129
soak: $(STAMP)
	PYTHONPATH=tests $(BIN)/python -m faults.soak --seed $(SEED) $(if $(ONLY),--only $(ONLY)) $(SOAK_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
