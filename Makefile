# Two commands: `make demo` and `make test`. Everything else is a building block.
# `make lab`: JupyterLab at the repository root; `make test-lab`: the real-browser JupyterLab test;
# `make test-slurm`: preemption and requeue on a real (local) SLURM.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PROFILE ?= demo
# extra `jupyter lab` options, e.g. make lab LAB_ARGS="--ip=0.0.0.0 --port=8899"
LAB_ARGS ?=

.PHONY: setup demo test lint format bench clean lab test-lab test-slurm

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

# the browser and SLURM tests have targets of their own (below); `.ci/run` runs all three
test: setup lint
	$(BIN)/python -m pytest -q -x -m "not lab and not slurm"

lint: setup
	$(BIN)/ruff check clipf tests bench notebooks
	$(BIN)/ruff format --check clipf tests bench

format: setup
	$(BIN)/ruff format clipf tests bench
	$(BIN)/ruff check --fix clipf tests bench

# JupyterLab with the project's kernel (the .venv's `python3` kernelspec first on JUPYTER_PATH), no browser:
# it prints the URL with its token. As root (containers) it needs --allow-root.
lab: setup
	JUPYTER_PATH="$(CURDIR)/$(VENV)/share/jupyter" $(BIN)/jupyter lab --no-browser \
	  --ServerApp.root_dir="$(CURDIR)" $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

# JupyterLab driven by Debian's headless Chromium (tests/test_lab.py); fails, not skips, without it.
test-lab: setup
	CLIPF_LAB=1 $(BIN)/python -m pytest -q -m lab tests/test_lab.py

# a real one-node SLURM on localhost (Debian's slurm-wlm + munge, installed if absent: needs root) runs a
# 2-process training job through `clipf submit`, preempts it mid-epoch and checks the requeued job's
# weights against an uninterrupted run (tests/test_slurm.py); it stops the daemons it started
test-slurm: setup
	$(BIN)/python -m pytest -q -m slurm tests/test_slurm.py

bench: setup
	$(BIN)/python bench/maskers.py
	$(BIN)/python bench/world.py
	$(BIN)/python bench/train.py

clean:
	rm -rf $(VENV) .pytest_cache
