# One command each: `make quickstart` runs the product on embedded defaults, `make test` runs the tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: test quickstart bench policy-test clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "modelherd needs Python 3.11 or newer"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

test: $(BIN)/.installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

quickstart: $(BIN)/.installed
	$(BIN)/modelherd quickstart

bench: $(BIN)/.installed
	$(BIN)/python -m modelherd.bench
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .modelherd-quickstart .pytest_cache
