# The two commands of the README: `make demo` (set up + main job) and `make test` (set up + tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_OUT ?= runs/demo

.PHONY: setup demo test lint clean

setup: $(STAMP)

# torch==2.13.0 first: it is the CPU build on local disk; a loose requirement would pull CUDA.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev,hf]"
	touch $(STAMP)

demo: setup
	rm -rf $(DEMO_OUT)
	$(BIN)/fedpriv run --aggregation plaintext --dataset digits --model mlp --clients 5 --rounds 5 --out $(DEMO_OUT)/plaintext
	$(BIN)/fedpriv run --aggregation ckks --dataset digits --model mlp --clients 5 --rounds 5 --out $(DEMO_OUT)/ckks

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest -q -rs

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
