# Two entry points for a fresh clone: `make run` (set up, then `dvc repro`) and `make test`.
VENV ?= .venv
export PATH := $(abspath $(VENV))/bin:$(PATH)
# Stages may run from a temporary copy of the repository (queued experiments): an
# absolute GLUE_DIR still finds the data there.
ifdef GLUE_DIR
export GLUE_DIR := $(abspath $(GLUE_DIR))
endif

.PHONY: install run test test-fast smoke lint lock plots-template

install: $(VENV)/.installed

# The exact versions of requirements.lock, so a fresh clone runs the very library code that
# produced the committed metrics; the project itself is installed editable, without deps.
$(VENV)/.installed: requirements.lock pyproject.toml
	python3 -m venv $(VENV)
	# torch first and exactly: it is the CPU build; the rest then finds it satisfied.
	$(VENV)/bin/pip install --quiet torch==2.13.0
	$(VENV)/bin/pip install --quiet -r requirements.lock
	$(VENV)/bin/pip install --quiet --no-deps -e .
	touch $@

# Re-resolve pyproject.toml's ranges to the newest versions they allow; commit the result
# with the dvc.lock and metrics of a run on it.
lock:
	python3 -m venv $(VENV)-lock
	$(VENV)-lock/bin/pip install --quiet pip-tools
	$(VENV)-lock/bin/pip-compile --quiet --extra test --strip-extras --no-emit-index-url \
		--no-emit-find-links --output-file requirements.lock pyproject.toml
	# torch's local build tag (+cpu) names one index; `make install` picks the CPU build itself.
	sed -i 's/^torch==\([0-9.]*\)+cpu/torch==\1/' requirements.lock
	rm -rf $(VENV)-lock

run: install
	dvc repro

# Everything, on every core (pytest-xdist, a test file per worker at a time: its tests keep their order).
test: install
	pytest -n auto --dist loadfile

# The quick tier for working on the code: in-process, a few steps of a tiny model, no dvc.
test-fast: install
	pytest -m "not slow and not smoke" -n auto --dist loadfile

lint: install
	ruff check .

# The real pipeline on the real MRPC mirror for a few dozen steps (CI runs it after `make test`).
smoke: install
	pytest -m smoke

# The offline page of `dvc plots show` (.dvc/plots/offline.html, committed): vega, vega-lite and
# vega-embed inlined at the versions DVC's renderer names. Rebuild it after updating dvc-render.
plots-template: install
	versions="$$(finetune plots-template --versions)" && packs="$$(mktemp -d)" && \
		(cd "$$packs" && npm pack --silent $$versions >/dev/null) && \
		finetune plots-template "$$packs"/*.tgz && rm -rf "$$packs"
