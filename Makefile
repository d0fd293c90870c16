# Two commands on a fresh machine:  `make demo` (the offline demo suite)  and  `make test`.
# Both create .venv on first use (pip, Python >= 3.10).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1

.PHONY: demo test test-all lint bench clean-results

$(BIN)/optbench: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

demo: $(BIN)/optbench
	$(BIN)/optbench suite sweeps/demo.yaml --workers 2

test: $(BIN)/optbench
	OPTBENCH_OFFLINE=1 $(BIN)/python -m pytest -q

test-all: $(BIN)/optbench
	OPTBENCH_OFFLINE=1 $(BIN)/python -m pytest -q -m "slow or not slow"

lint: $(BIN)/optbench
	$(BIN)/ruff check .

bench: $(BIN)/optbench
	$(BIN)/python benchmarks/optimizer_step.py
	$(BIN)/python benchmarks/harness_overhead.py
