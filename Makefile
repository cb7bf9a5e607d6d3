# Set-up and the two everyday commands. `make train` and `make test` create the virtual
# environment on first use. GPU machines: make train TORCH_SPEC=torch (a CUDA build from PyPI).
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
ARGS ?= reward=eswr reasoning=esr

.PHONY: install train test test-fast

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

train: $(VENV)/.installed
	$(PY) -m emorl.train $(ARGS)

test: $(VENV)/.installed
	$(PY) -m pytest

test-fast: $(VENV)/.installed
	$(PY) -m pytest -m "not slow"
