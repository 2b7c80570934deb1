# Two commands do all the set-up on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
STAMP  := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)
export BENTOML_DO_NOT_TRACK := true

.PHONY: demo test test-fast lint bench bench-quick bench-overhead
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

demo: $(STAMP)  ## build the flagship notebook, serve it, answer one prediction
	$(VENV)/bin/python examples/demo.py

test: $(STAMP)  ## the whole test suite
	$(VENV)/bin/python -m pytest -q

test-fast: $(STAMP)  ## the tests that start no kernel, server or bento build (tests/conftest.py)
	$(VENV)/bin/python -m pytest -q -m "not slow"

lint: $(STAMP)  ## ruff, ruff format, mypy and the layer contracts: all four run, any failure fails
	@status=0; for check in "ruff check nb2prod tests" "ruff format --check nb2prod" \
	                        "mypy nb2prod" "lint-imports"; do \
		echo "--- $$check"; $(VENV)/bin/$$check || status=1; \
	done; exit $$status

# one flagship build for the four benchmarks, made anew when nb2prod changes (bench/common.py)
BENCH_BUILD := $(VENV)/bench-build
BENCH_STAMP := $(VENV)/.bench-$(shell sha256sum pyproject.toml | cut -c1-12)
$(BENCH_STAMP): $(STAMP)
	$(VENV)/bin/pip install --quiet -e '.[dev,bench]'
	rm -f $(VENV)/.bench-* && touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)  ## nb2prod vs. bare BentoML, FastAPI and MLflow; big requests; cold start; workers (~15 min)
	$(VENV)/bin/python bench/peers.py --reuse-build $(BENCH_BUILD) $(BENCH_ARGS)
	$(VENV)/bin/python bench/big_requests.py --reuse-build $(BENCH_BUILD) $(BENCH_ARGS)
	$(VENV)/bin/python bench/cold_start.py --reuse-build $(BENCH_BUILD) $(BENCH_ARGS)
	$(VENV)/bin/python bench/workers.py --reuse-build $(BENCH_BUILD) $(BENCH_ARGS)

bench-quick: BENCH_ARGS = --quick
bench-quick: bench  ## the same, each in its smoke mode (~6 min)

bench-overhead: $(STAMP)  ## serving overhead vs. a bare BentoML service, feature by feature
	$(VENV)/bin/python bench/serve_overhead.py
