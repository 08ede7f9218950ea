# The two commands of the README:
#   make demo   sets up the environment and runs the main job
#   make test   sets up the environment and runs the test suite
# Every pin lives in constraints.txt.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test setup

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/sparseift flops --model resnet18 --family wide parallel factorized doped --sparsity 0.5 0.75 0.9

test: $(STAMP)
	$(PY) -m pytest -q -n 2 tests
