# Two commands do all the set-up on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
STAMP  := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)
export BENTOML_DO_NOT_TRACK := true

.PHONY: demo test test-fast bench
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

bench: $(STAMP)  ## serving overhead vs. a bare BentoML service
	$(VENV)/bin/python bench/serve_overhead.py
