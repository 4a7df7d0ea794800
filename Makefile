# Set-up, tests, demo, benchmarks and the local cloud. Everything installs into .venv from
# requirements-dev.txt (the project itself is installed editable, with its runtime dependencies).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_INPUT ?= data/sample
DEMO_OUTPUT ?= out/demo
# The ahead-of-time median kernels (temporal_median/compute/loader.py): built here, never committed,
# shipped by terraform apply when present. Without a C compiler the workers use numba's JIT.
KERNELS_LIB := temporal_median/compute/kernels-x86-64-v3.so
KERNEL_SOURCES := temporal_median/compute/kernels.py temporal_median/compute/build.py temporal_median/compute/loader.py

.PHONY: help venv kernels test docs docs-serve demo sample up down status env bench tf-check clean

help:
	@echo "make demo      set up, generate the sample series, compute its median on the local cloud ($(DEMO_OUTPUT))"
	@echo "make test      set up, build the docs (strict) and run the test suite"
	@echo "make docs      build the documentation site into site/ (mkdocs build --strict); make docs-serve to browse it"
	@echo "make kernels   build the ahead-of-time median kernels (fast cold starts; terraform apply ships them)"
	@echo "make up|down   start / stop the local cloud (emulators + function servers); make status, make env"
	@echo "make bench     run the benchmarks (figures and ratios, printed)"
	@echo "make tf-check  offline Terraform checks (fmt, wiring, zips, checkov)"

venv: $(STAMP)

$(STAMP): requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

kernels: $(KERNELS_LIB)

$(KERNELS_LIB): $(STAMP) $(KERNEL_SOURCES)
	$(PY) -m temporal_median.compute.build --out $@

test: venv kernels docs
	$(PY) -m pytest -q

# The site (mkdocs.yml, docs/): --strict turns a broken link, a page missing from the nav or a
# reference page that cannot be generated into a failure.
docs: venv
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --quiet

docs-serve: venv
	$(PY) -m mkdocs serve --dev-addr 127.0.0.1:8000

demo: venv kernels
	$(PY) -m temporal_median_cli sample $(DEMO_INPUT)
	$(PY) -m temporal_median_cli run $(DEMO_INPUT) $(DEMO_OUTPUT)
	@echo "results in $(DEMO_OUTPUT)/; the local cloud is still up for curl (README: A job by curl), 'make down' stops it"

sample: venv
	$(PY) -m temporal_median_cli sample $(DEMO_INPUT)

up: venv kernels
	$(PY) -m localcloud up

down: venv
	$(PY) -m localcloud down

status: venv
	$(PY) -m localcloud status

env: venv
	@$(PY) -m localcloud env

bench: venv kernels
	$(PY) bench/bench_kernel.py
	$(PY) bench/bench_tile.py
	$(PY) bench/bench_coldstart.py
	$(PY) bench/bench_e2e.py
	$(PY) bench/bench_xarray.py
	$(PY) bench/bench_fanout.py
	$(PY) bench/bench_mosaic.py
	$(PY) bench/bench_pubsub.py
	$(PY) bench/bench_selection.py
	$(PY) bench/bench_area.py
	$(PY) bench/bench_periods.py
	$(PY) bench/bench_sim.py

tf-check: venv
	$(PY) -m terraform_checks

clean:
	-$(PY) -m localcloud down
	rm -rf .localcloud out data/sample bench/.data site $(KERNELS_LIB)
