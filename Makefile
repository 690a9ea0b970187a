# Two commands do all the set-up on a fresh machine (Python 3.11 and the package registries):
#   make demo   - builds .venv from the pinned requirements, then runs `recengine demo`, which
#                 ends by serving on 127.0.0.1:8000 until Ctrl-C
#   make test   - builds .venv the same way, then runs the whole test suite, the linter (ruff)
#                 and the type checker (mypy, configured in pyproject.toml)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint typecheck clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/recengine demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -n 2 --doctest-modules --doctest-glob="*.md" src tests docs/architecture.md
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) recengine-output
