# Two commands on a fresh machine:  `make demo`  and  `make test`.
# `make demo` installs the core (no torch); `make test` adds the test extra, which includes CLIP's
# torch. TORCH_INDEX=https://download.pytorch.org/whl/cpu installs the CPU-only torch build first.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_INDEX ?=
CORE := $(VENV)/.installed
TESTS := $(VENV)/.installed-test

$(VENV)/bin/python:
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(CORE): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e .
	touch $@

$(TESTS): pyproject.toml | $(VENV)/bin/python
	$(if $(TORCH_INDEX),$(PY) -m pip install -q torch torchvision --index-url $(TORCH_INDEX))
	$(PY) -m pip install -q -e ".[test]"
	touch $(CORE) $@

install: $(CORE)

demo: $(CORE)
	$(VENV)/bin/vidcorpus demo --output demo

test: $(TESTS)
	$(PY) -m pytest -q

.PHONY: install demo test
