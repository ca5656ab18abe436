# The two commands of the README: `make demo` (set up + main job) and `make test` (set up + tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_OUT ?= results/compare

.PHONY: setup demo test test-fast lint docs clean

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

# Style, types, the import layers, and the documentation site (generated pages must be fresh).
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python docs/generate.py --check
	$(BIN)/mkdocs build --strict --quiet --site-dir build/site

# Everything, slow tests included: what CI runs (.ci/run). Two workers (the machines have
# two cores and much of a federation waits on processes), each test file on one worker so
# its module fixtures are built once; tests marked `serial` run alone afterwards.
test: lint
	$(BIN)/python -m pytest -q -rs --durations=30 -n 2 --dist loadfile -m "not serial"
	$(BIN)/python -m pytest -q -rs --durations=5 -m serial

# The edit loop: unit and adversarial tests without the slow federations.
test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

# Regenerate the reference pages and the result tables from code and result files.
docs: setup
	$(BIN)/python docs/generate.py
	$(BIN)/mkdocs build --strict --site-dir build/site

clean:
	rm -rf $(VENV) runs build .pytest_cache .ruff_cache .mypy_cache
