# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test soak sandbox lint benchmark clean

$(BIN)/mlc-dagster: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[ui,sandbox,dev]"
	touch $@

## Sandboxes + Dagster UI (http://127.0.0.1:3000) with the PO sensor on.
demo: $(BIN)/mlc-dagster
	$(BIN)/mlc-dagster demo

## The whole test suite (sandboxes over HTTP on loopback, PostgreSQL where available).
test: $(BIN)/mlc-dagster
	$(BIN)/pytest

## Nightly soak (README "Tests"; about 5 min on 2 cores): the run process SIGKILLed at >= 20
## distinct write points drawn at random (the seed is printed; MLC_CRASH_SEED=<seed> make soak
## replays the draw, MLC_KILL_POINTS=seed/line_sync#150,... runs those points), each followed
## by a clean run and the oracle; and BAD_BATCHES (default 10) batches of ~280 generated bad X3
## records per X3 API.
soak: $(BIN)/mlc-dagster
	MLC_SOAK=1 MLC_BAD_BATCHES=$(or $(BAD_BATCHES),10) $(BIN)/pytest -p no:cacheprovider \
		mlc_dagster_tests/reliability/test_crash_safety.py \
		mlc_dagster_tests/reliability/test_bad_input.py -k "soak or batches"

sandbox: $(BIN)/mlc-dagster
	$(BIN)/mlc-dagster sandbox --write-env .env.sandbox

## Benchmarks: Procore calls vs the rate-limit floor, no-op and delta cost, change latency,
## staging memory (about 1.5 h in all). A part: make benchmark ARGS="--scenario noop,delta".
## Results: benchmarks/results/<name>.json and .md; docs/performance.md explains them.
benchmark: $(BIN)/mlc-dagster
	$(BIN)/python benchmarks/run.py $(or $(ARGS),--scenario all --latency-ms 50)

lint: $(BIN)/mlc-dagster
	$(BIN)/ruff check mlc_dagster mlc_dagster_tests

clean:
	rm -rf $(VENV) .dagster_home .pytest_cache
