# Two commands: `make demo` and `make test`. Everything else is a building block.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PROFILE ?= demo

.PHONY: setup demo test lint format bench clean

$(BIN)/clipf: pyproject.toml requirements.lock
	@command -v $(PY) >/dev/null || { echo "need $(PY) on PATH (or run: make PY=python3 ...)"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24"
	$(BIN)/python -m pip install -q -c requirements.lock -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(BIN)/clipf

setup: $(BIN)/clipf

demo: setup
	$(BIN)/python -m clipf.study --profile $(PROFILE)

test: setup lint
	$(BIN)/python -m pytest -q -x

lint: setup
	$(BIN)/ruff check clipf tests bench notebooks
	$(BIN)/ruff format --check clipf tests bench

format: setup
	$(BIN)/ruff format clipf tests bench
	$(BIN)/ruff check --fix clipf tests bench

bench: setup
	$(BIN)/python bench/maskers.py
	$(BIN)/python bench/world.py
	$(BIN)/python bench/train.py

clean:
	rm -rf $(VENV) .pytest_cache
