# Set-up and the two everyday commands. `make train` and `make test` create the virtual
# environment on first use. GPU machines: make train TORCH_SPEC=torch (a CUDA build from PyPI).
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
ARGS ?= reward=eswr reasoning=esr

.PHONY: install train test test-fast base

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

# Build the embedded base from scratch (about 2 h on 2 cores), score it zero-shot in IR / EUR / ESR on the
# default test split, publish it with its model card into emorl/assets/embedded_base/ and print the bars it meets.
BASE_RUN ?= outputs/pretrain/embedded_base
base: $(VENV)/.installed
	$(PY) -m pip install -q -e ".[pretrain]"
	$(PY) -m emorl.pretrain trainer.devices=2 trainer.strategy=ddp hydra.run.dir=$(BASE_RUN)
	for r in ir eur esr; do $(PY) -m emorl.evaluate model.pretrained=$(BASE_RUN)/model reasoning=$$r logger=csv \
	  hydra.run.dir=$(BASE_RUN)/zero_shot/$$r || exit 1; done
	$(PY) -m emorl.pretraining.card $(BASE_RUN) --evaluation $(BASE_RUN)/zero_shot/ir \
	  --evaluation $(BASE_RUN)/zero_shot/eur --evaluation $(BASE_RUN)/zero_shot/esr
	$(PY) -m emorl.pretraining.bars --evaluation $(BASE_RUN)/zero_shot/ir $(BASE_RUN)/zero_shot/eur \
	  $(BASE_RUN)/zero_shot/esr
