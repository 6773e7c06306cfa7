# Quick start (README.md): `make search` and `make test`. Each first sets up .venv once:
# a virtual environment, PyTorch (2.13.0, unless .venv already holds a build of your own, e.g. a
# CUDA one) and this project with its development extras; the set-up is redone when
# pyproject.toml or this file changes. `make search ARGS="--epochs 2"` passes options on.

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
TORCH := torch==2.13.0

.PHONY: search test setup clean-venv

search: $(STAMP)
	$(VENV)/bin/nasp search $(ARGS)

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q $(ARGS)

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null || \
		{ echo "nasp needs Python 3.10 or newer, which $(PYTHON) is not; name one:" \
		  "make PYTHON=python3.12 $(MAKECMDGOALS)" >&2; exit 1; }
	$(VENV)/bin/python -m pip --version >/dev/null 2>&1 || $(PYTHON) -m venv --clear $(VENV)
	$(VENV)/bin/python -c 'import torch' 2>/dev/null || $(VENV)/bin/python -m pip install $(TORCH)
	$(VENV)/bin/python -m pip install -e ".[dev]"
	@touch $(STAMP)

clean-venv:
	rm -rf $(VENV)
