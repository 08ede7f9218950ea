# The two commands of the README:
#   make demo   sets up the environment and runs the main job (`sparseift compare`)
#   make test   sets up the environment and runs the test suite
# Every pin lives in constraints.txt.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
APT := $(shell command -v sudo >/dev/null 2>&1 && [ "$$(id -u)" != 0 ] && echo sudo) apt-get

.PHONY: demo test setup data

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# Fashion-MNIST from Debian's package (31 MB, MIT licence); nothing is downloaded at run time.
data:
	@test -f $(FMNIST) || $(APT) install -y dataset-fashion-mnist || ($(APT) update && $(APT) install -y dataset-fashion-mnist)

demo: $(STAMP) data
	$(VENV)/bin/sparseift compare

test: $(STAMP)
	-@$(MAKE) --no-print-directory data
	$(PY) -m pytest -q -n 2 tests
