# Two entry points for a fresh clone: `make run` (set up, then `dvc repro`) and `make test`.
VENV ?= .venv
export PATH := $(abspath $(VENV))/bin:$(PATH)
# Stages may run from a temporary copy of the repository (queued experiments): an
# absolute GLUE_DIR still finds the data there.
ifdef GLUE_DIR
export GLUE_DIR := $(abspath $(GLUE_DIR))
endif

.PHONY: install run test smoke

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	# torch first and exactly: it is the CPU build; the rest then finds it satisfied.
	$(VENV)/bin/pip install --quiet torch==2.13.0
	$(VENV)/bin/pip install --quiet -e ".[test]"
	touch $@

run: install
	dvc repro

test: install
	pytest

# The real pipeline on the real MRPC mirror for a few dozen steps (CI runs it after `make test`).
smoke: install
	pytest -m smoke
