# `make test` and `make demo` work on a fresh clone: they create .venv when missing and install.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO := demo-out

.PHONY: install test test-fast lint demo bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
# PYTHONWARNINGS: setuptools warns on every editable install whose package maps data folders
# (weights/ -> detect.weights) that folders named like the package may shadow it; here the
# repo root's detect/ is the package itself, so the warning only adds noise to a first install.
	PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install --quiet -e ".[dev]"
# sahi: the tiling tests' oracle. --no-deps: it requires opencv-python, whose cv2 would replace
# opencv-python-headless's; what it imports is in the dev extra.
	$(PY) -m pip install --quiet --no-deps "sahi==0.12.8"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -x

lint: $(STAMP)
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

demo: $(STAMP)
	bash scripts/demo.sh $(VENV)/bin/detect $(DEMO)

clean:
	rm -rf $(DEMO) runs .pytest_cache
