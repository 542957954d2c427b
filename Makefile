# Minqing — the two commands: `make run` and `make test` (and `make demo`). Everything they need is installed here.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run demo test test-unit test-interface test-e2e bench deps debian-deps clean

run: debian-rabbitmq deps
	@$(VENV)/bin/minqing run

# A stack on the demo clock filled with a month of 龙江县 (docs/simulate.md); left running.
demo: debian-rabbitmq deps
	@bash deploy/local/demo.sh

test: debian-deps deps
	$(PY) -m pytest -q -n 2 --dist loadgroup tests

test-unit: deps
	$(PY) -m pytest -q tests/unit

bench: debian-deps deps
	$(PY) -m bench.run
	$(PY) -m bench.green_appends
	$(PY) -m bench.assessment
	$(PY) -m bench.pipeline
	$(PY) -m bench.statements
	$(PY) -m bench.idle_stack

deps: $(STAMP)

$(STAMP): requirements.lock requirements-dev.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.lock -r requirements-dev.lock
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

debian-deps:
	@bash deploy/local/install-debian-deps.sh --with-browser

debian-rabbitmq:
	@if [ -z "$$MINQING_AMQP_URI" ]; then bash deploy/local/install-debian-deps.sh; fi

clean:
	rm -rf $(VENV) .run
