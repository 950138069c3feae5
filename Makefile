# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create (or reuse) .venv and install the project with its declared dependencies.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[browser,test]'
	touch $(STAMP)

.PHONY: venv browser postgres demo test bench bench-figures bench-report fuzz bench-nightly bench-cluster importtime bench-runs
venv: $(STAMP)

# Headless Chromium + ChromeDriver from Debian, for the report's browser test.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }

# PostgreSQL server binaries (initdb, pg_ctl) from Debian, for the history-store tests,
# which start their own server on 127.0.0.1.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }

# Exit status 1 means checks failed, which the demo is built to show; worse codes propagate.
demo: $(STAMP)
	@$(BIN)/pytest --demo --html=reports/demo.html --self-contained-html; code=$$?; \
	  if [ $$code -le 1 ]; then echo "demo done: open reports/demo.html (failures above are the demo's findings)"; exit 0; fi; \
	  exit $$code

test: $(STAMP) browser postgres
	$(BIN)/pytest tests -n 2

bench: $(STAMP)
	$(BIN)/python -m qa.bench

# CPU-s of all figures of one product (budgets 0.25 / 0.5 CPU-s, issue 12).
bench-figures: $(STAMP)
	$(BIN)/python -m qa.bench figures

# Issue 12's done-when numbers: runs over 200 generated products (no report; review site with
# --figures=failing; --figures=all) and the review index at 2,000 products in headless Chromium.
bench-report: $(STAMP) browser
	$(BIN)/python -m qa.bench report
# Differential run against the real hasp on fresh random scenarios (one summary line;
# a mismatch is shrunk into tests/data/differential/). FUZZ_ARGS="--seed 7 --scenarios 50".
FUZZ_ARGS ?= --scenarios 300
fuzz: $(STAMP)
	$(BIN)/python -m tests.differential $(FUZZ_ARGS)
# A 200-product night against the loopback archive, files cached, without and with -n 2.
bench-nightly: $(STAMP)
	$(BIN)/python -m qa.bench.nightly
# 200 generated products: plain vs -n 2 vs --dask=local:2, time split, whole-archive projection.
bench-cluster: $(STAMP)
	$(BIN)/python -m qa.bench.cluster

# What every pytest run in the venv pays for hasp-qa's two pytest11 entry points (microseconds,
# cumulative; pytest itself is imported first so that it is not counted).
importtime: $(STAMP)
	@$(BIN)/python -X importtime -c "import pytest; import qa.pytest_plugin.plugin, qa.archive.mast_server" 2>&1 | \
	  grep -E '\| (pytest|qa\.pytest_plugin\.plugin|qa\.archive\.mast_server)$$'

# Whole pytest runs: peak RSS 40 vs 160 products, -n 2 vs serial on 50 products,
# results JSON size/RSS for 1,500 exposures, --collect-only vs the full demo run.
bench-runs: $(STAMP)
	$(BIN)/python -m qa.bench.runs memory xdist scale collect
