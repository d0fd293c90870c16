# Two commands on a fresh machine:  `make demo` (the offline demo suite)  and  `make test`.
# Both create .venv on first use (pip, Python >= 3.10) with every package pinned by constraints.txt.
#
#   make lock          refresh constraints.txt from the newest releases (then run `make test`)
#   make test-latest   the test suite against the newest releases, in .venv-latest (not in CI)
SHELL  := /bin/bash
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
LOCK   := constraints.txt
LATEST := .venv-latest
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1

.PHONY: demo test test-slow test-all test-latest lock lint bench clean-results

# The pinned environment. The build backend (setuptools) comes from the lock too: without build
# isolation pip would otherwise fetch the newest setuptools for the editable install.
$(BIN)/optbench: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c $(LOCK) pip setuptools wheel
	$(BIN)/pip install --quiet --disable-pip-version-check --no-build-isolation -c $(LOCK) -e '.[dev]'
	@touch $@

# The demo: tune + evaluate (resumable), the leaderboard (CSV + Markdown), then the figures (PNGs,
# index.md) and the offline HTML page. Its results are the same on every machine and with any
# DEMO_WORKERS: the qmc sampler (sweeps/demo.yaml) gives every trial slot its configuration whatever
# the order runs finish in, each run gets one CPU thread (reductions split over a different number of
# threads round differently), and the CPU is used even where a GPU is present.
DEMO_OUT     ?= results/demo
DEMO_WORKERS ?= 2
demo: $(BIN)/optbench
	CUDA_VISIBLE_DEVICES= OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 \
	  $(BIN)/optbench suite sweeps/demo.yaml --workers $(DEMO_WORKERS) --out $(DEMO_OUT)
	$(BIN)/optbench report $(DEMO_OUT) --out $(DEMO_OUT)/report --html
	@echo
	@echo "make demo: the leaderboard   $(DEMO_OUT)/leaderboard.md  (CSV: leaderboard.csv, leaderboard_aggregate.csv)"
	@echo "make demo: the figures       $(DEMO_OUT)/report/*.png  ($$(ls $(DEMO_OUT)/report/*.png | wc -l) PNGs; index.md shows them with the tables)"
	@echo "make demo: the report page   $(DEMO_OUT)/report/report.html  (one file, works offline: open it in a browser)"
	@echo "make demo: the run records   $(DEMO_OUT)/runs/ and curves/ (optbench leaderboard / report / compare read them)"

test: $(BIN)/optbench
	OPTBENCH_OFFLINE=1 $(BIN)/python -m pytest -q --durations=10

# The long end-to-end tests (subprocesses, real SLURM, kill-and-resume, torch.compile): CI runs them
# after `make test`; `make test-all` runs both sets in one go.
test-slow: $(BIN)/optbench
	OPTBENCH_OFFLINE=1 $(BIN)/python -m pytest -q -m "slow and not gpu" --durations=15

test-all: $(BIN)/optbench
	OPTBENCH_OFFLINE=1 $(BIN)/python -m pytest -q -m "slow or not slow"

# Newest releases of everything pyproject.toml allows, in a separate venv (torch stays capped by
# pyproject.toml). `installed.txt` records what was tested; `make lock` turns it into the lock.
$(LATEST)/installed.txt: pyproject.toml
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/pip install --quiet --disable-pip-version-check --upgrade pip setuptools wheel
	$(LATEST)/bin/pip install --quiet --disable-pip-version-check --upgrade -e '.[dev]'
	$(LATEST)/bin/pip freeze --all --exclude-editable > $@

test-latest:
	rm -f $(LATEST)/installed.txt
	$(MAKE) $(LATEST)/installed.txt
	@echo "== newest releases vs $(LOCK):"; diff <(grep -v '^#' $(LOCK)) $(LATEST)/installed.txt || true
	OPTBENCH_OFFLINE=1 $(LATEST)/bin/python -m pytest -q

lock:
	rm -f $(LATEST)/installed.txt
	$(MAKE) $(LATEST)/installed.txt
	{ echo "# Pinned environment of optbench: every package that \`pip install -e '.[dev]'\` installs, at the"; \
	  echo "# versions CI and the README's commands use (pip install -c $(LOCK) ...)."; \
	  echo "# Regenerate with \`make lock\` (newest releases pyproject.toml allows, $(shell $(PYTHON) --version), $$(uname -m))."; \
	  cat $(LATEST)/installed.txt; } > $(LOCK)
	@echo "wrote $(LOCK); run \`make test\` to install and test it"

lint: $(BIN)/optbench
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(BIN)/optbench
	$(BIN)/python benchmarks/optimizer_step.py
	$(BIN)/python benchmarks/harness_overhead.py

# Generated results (everything under results/ except the committed examples).
clean-results:
	find results -mindepth 1 -maxdepth 1 ! -name examples -exec rm -rf {} +
