# Set-up, tests, demo and the local cloud. Everything installs into .venv from requirements-dev.txt.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test demo up down status bench sample clean

venv: $(STAMP)

$(STAMP): requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

test: venv
	$(PY) -m pytest -q

demo: venv
	$(PY) -m temporal_median_cli sample data/sample
	$(PY) -m temporal_median_cli run data/sample out/demo

up: venv
	$(PY) -m localcloud up

down: venv
	$(PY) -m localcloud down

status: venv
	$(PY) -m localcloud status

bench: venv
	$(PY) bench/bench_kernel.py
	$(PY) bench/bench_tile.py
	$(PY) bench/bench_coldstart.py

clean: down
	rm -rf .localcloud out data/sample
