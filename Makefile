# Two entry points, each sets up (or reuses) a local virtual environment first:
#   make demo   - end-to-end demo on a synthetic multi-site brain cohort (~3 min on 2 CPU cores)
#   make test   - the test suite
# TORCH_SPEC picks the PyTorch build; e.g. for CUDA 12.6 wheels:
#   make demo TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu126"
# (read only when $(VENV) is set up or pyproject.toml changed: rm -rf .venv to switch builds)
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?= -n 2
STAMP := $(VENV)/.medssl-installed

.PHONY: demo test setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q $(TORCH_SPEC)
	$(VENV)/bin/python -m pip install -q -e ".[test]"
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/medssl demo

test: $(STAMP)
	$(VENV)/bin/ruff check --quiet .
	$(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) demo_run .pytest_cache
