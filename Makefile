# Quick start: `make demo` and `make test`; each sets itself up on a fresh Debian machine.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo test test-faults lint format clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)
	@bash scripts/ensure-system.sh "$(PY)"

demo: setup
	$(VENV)/bin/usher demo

# Two pytest workers: the tests of each database's Usher processes share one (tests/databases.py,
# SERVED), the rest go where there is room; most of an end-to-end test is waiting on a browser.
test: lint
	@bash scripts/ensure-system.sh "$(PY)" test
	$(VENV)/bin/pytest -q -n 2 --dist loadgroup

# The fault suite (tests/faults, issue 11): real serve and workers, a private Redis, Acme
# under faults; `make test` leaves it out. One pytest per database, side by side, one table.
test-faults: setup
	@bash scripts/ensure-system.sh "$(PY)" test
	$(PY) -m tests.faults.run

# The import contract (pyproject.toml, [tool.importlinter]) and the linters.
lint: setup
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) var
