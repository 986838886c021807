# The README's two commands: `make test` and `make repro`. Each sets up .venv itself (idempotent:
# the install step reruns only when pyproject.toml changes) and then does its job.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.spanlib-installed

.PHONY: setup test test-fast repro clean-venv lab strip-notebooks

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c 'import sys; assert sys.version_info >= (3, 11), "spanlib needs Python 3.11+, got " + sys.version' 
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev,onnx,peers]"
	@touch $(STAMP)

setup: $(STAMP)

# Triton kernels run through Triton's interpreter on machines without a GPU.
test: $(STAMP)
	TRITON_INTERPRET=1 $(PY) -m pytest -q --durations=15

# The edit-test loop: everything but the tests marked slow (trainings, torchrun, the pipeline,
# the notebooks, the browser); `make test` stays the full suite and what CI runs.
test-fast: $(STAMP)
	TRITON_INTERPRET=1 $(PY) -m pytest -q -m "not slow" -x

repro: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" dvc repro

# JupyterLab at the repository root (so results/, outputs/ and docs/notebooks/ are in the file
# browser) with notebooks/ opened. Notebooks are saved through spanlib.study.lab's pre-save hook: the
# tracked notebooks/*.ipynb keep code and prose only (git and dvc status stay clean while you
# explore); the full notebook, outputs included, goes to outputs/interactive/notebooks/.
# LAB_ARGS: extra options, e.g. `make lab LAB_ARGS="--no-browser --port 8899"`.
LAB_ARGS ?=
# The news pop-up of JupyterLab is turned off (settings/overrides.json in the .venv, spanlib.study.lab).
lab: $(STAMP)
	$(PY) -m spanlib.study.lab lab-settings
	$(VENV)/bin/jupyter lab --ServerApp.root_dir="$(CURDIR)" --ServerApp.default_url=/lab/tree/notebooks \
		--ContentsManager.pre_save_hook=spanlib.study.lab.pre_save_hook $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

# Clean notebooks saved by another front end (outputs, execution counts, widget state).
strip-notebooks: $(STAMP)
	$(PY) -m spanlib.study.lab strip notebooks/*.ipynb

clean-venv:
	rm -rf $(VENV)
