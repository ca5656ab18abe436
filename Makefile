# The two commands of the README: `make demo` (set up + main job) and `make test` (set up + tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_OUT ?= results/compare

.PHONY: setup demo test lint clean

setup: $(STAMP)

# torch==2.13.0 first: it is the CPU build on local disk; a loose requirement would pull CUDA.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev,hf]"
	touch $(STAMP)

# The main job: every arm of experiments/compare.toml, every attack, one report.
# Finished arms in $(DEMO_OUT) are reused (an interrupted demo resumes); FORCE=1 reruns all.
demo: setup
	$(BIN)/fedpriv compare experiments/compare.toml --out $(DEMO_OUT) $(if $(FORCE),--force,)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest -q -rs

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
