# The README's two commands: `make test` and `make repro`. Each sets up .venv itself (idempotent:
# the install step reruns only when pyproject.toml changes) and then does its job.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.spanlib-installed

.PHONY: setup test repro clean-venv

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c 'import sys; assert sys.version_info >= (3, 11), "spanlib needs Python 3.11+, got " + sys.version' 
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)

# Triton kernels run through Triton's interpreter on machines without a GPU.
test: $(STAMP)
	TRITON_INTERPRET=1 $(PY) -m pytest -q

repro: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" dvc repro

clean-venv:
	rm -rf $(VENV)
