# Two commands do all the set-up on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
STAMP  := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)
export BENTOML_DO_NOT_TRACK := true

.PHONY: demo test test-fast lint bench
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

bench: $(STAMP)  ## serving overhead vs. a bare BentoML service
	$(VENV)/bin/python bench/serve_overhead.py
