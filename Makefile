# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
# Install layers, each with its stamp: `make run` (and mlflow) needs only the first; `make test`
# adds the test tools (requirements-dev.txt) and the system tools; `make demo` and `make bench`
# add their two client libraries (requirements-demo.txt).
RUN_STAMP  := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
DEMO_STAMP := $(VENV)/.installed-demo
PROJECTS := libs/common services/ingest services/trainer services/explainer services/reporter services/monitor services/scorer services/gateway
PYPROJECTS := $(addsuffix /pyproject.toml,$(PROJECTS))

.PHONY: install install-run install-test tools run test test-fast demo bench mlflow clean

# Everything (both layers and the system tools), as before.
install: install-test
install-run: $(RUN_STAMP)
install-test: $(TEST_STAMP) tools

# System tools the tests use that PyPI does not ship: promtool (Debian package prometheus)
# checks the Prometheus rules; pdftoppm/pdftotext (poppler-utils) render and read back every
# page of a report; chromium (headless) loads /docs with the network cut; kubectl (with
# kustomize) renders the Kubernetes overlays. Only `make test` asks for them.
tools:
	@command -v promtool >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing promtool (Debian package prometheus)"; \
	    apt-get install -y -qq --no-install-recommends prometheus >/dev/null || \
	    { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }; \
	  else echo "WARNING: promtool missing; install the prometheus package (tests need it)"; fi; }
	@command -v pdftoppm >/dev/null && command -v pdftotext >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing pdftoppm and pdftotext (Debian package poppler-utils)"; \
	    apt-get install -y -qq --no-install-recommends poppler-utils >/dev/null || \
	    { apt-get update -qq && apt-get install -y -qq --no-install-recommends poppler-utils >/dev/null; }; \
	  else echo "WARNING: pdftoppm/pdftotext missing; install the poppler-utils package (tests need it)"; fi; }
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing chromium (Debian package chromium, headless test of /docs)"; \
	    apt-get install -y -qq --no-install-recommends chromium >/dev/null || \
	    { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; }; \
	  else echo "WARNING: chromium missing; install the chromium package (the offline /docs test needs it)"; fi; }
	@command -v kubectl >/dev/null || echo "WARNING: kubectl missing; see docs/deploy.md (tests need it)"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==25.3

# torch first, pinned (its own dependencies held to constraints.txt), so nothing later can pull
# another torch: every later install runs under constraints.txt, which pins torch==2.13.0 too.
# Which build that is depends on the indexes pip reads: this machine kind's pip finds the CPU
# build 2.13.0+cpu in /opt/wheels (PIP_FIND_LINKS) and prefers it (a local version sorts above
# 2.13.0); a plain PyPI serves the CUDA build of 2.13.0 with its nvidia-* wheels. README, "What
# the first run installs", says how to get the CPU build elsewhere.
$(RUN_STAMP): $(PY) $(PYPROJECTS) constraints.txt
	$(PY) -m pip install --quiet -c constraints.txt torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt \
		-e 'libs/common[ml]' $(addprefix -e ,$(filter-out libs/common,$(PROJECTS)))
	touch $@

# The demo/bench clients on top of the run layer.
$(DEMO_STAMP): $(RUN_STAMP) requirements-demo.txt constraints.txt
	$(PY) -m pip install --quiet -c constraints.txt -r requirements-demo.txt
	touch $@

# The test layer on top: pytest, schemathesis, the deploy-file checkers, PDF readers.
$(TEST_STAMP): $(RUN_STAMP) requirements-dev.txt constraints.txt
	$(PY) -m pip install --quiet -c constraints.txt -r requirements-dev.txt
	touch $@

# Our own packages' bytecode, written before anything starts. pip compiles what it installs, but not
# editable installs; where PYTHONDONTWRITEBYTECODE is set (this machine kind sets it), nothing else
# writes it, so every service start (about 150 in `make test`) compiled our modules again. Only
# changed files are compiled; Python still checks each .pyc against its source when it imports.
BYTECODE = $(PY) -m compileall -q $(addsuffix /src,$(PROJECTS))

run: $(RUN_STAMP)
	$(BYTECODE)
	$(PY) -m ctrops_common.stack

# Test files run in TEST_WORKERS processes at once (pytest-xdist; a file stays in one process, so its
# module fixtures, such as an end-to-end stack, start once), the longest files first (tests/durations.json).
# Most tests wait on real processes and the broker. At 4 workers 2 cores were 179-180% busy, idle mostly
# while the end-to-end files wait at once; 5 keep them 190-194% busy for the same CPU, 15-34 s sooner in
# side-by-side runs (docs/benchmarks.md, "The test suite"). TEST_WORKERS=0 runs them one at a time here.
TEST_WORKERS ?= 5
test: install-test
	$(BYTECODE)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# The in-memory tier alone (pytest marker inmemory): handler and read-model tests on the in-memory bus
# (ctrops_common.memory_bus), no broker and no service processes, so no system tools either. `make test`
# runs them too, beside the real-broker tier (delivery, faults, end to end).
test-fast: $(TEST_STAMP)
	$(PY) -m pytest -m inmemory

# Against a running `make run`: upload a generated sample, train, explain, report, save the PDF in out/.
demo: $(DEMO_STAMP)
	$(PY) scripts/demo.py $(DEMO_ARGS)

# Each script prints its figures; they are recorded by hand in docs/benchmarks.md.
bench: $(DEMO_STAMP)
	for script in bench/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

# The MLflow UI over the trainer's embedded store (runs, both models of each run, the registry with
# its champion alias): http://127.0.0.1:5000. The same SQLite file and artifact folder the trainer
# uses (DATA_DIR/mlflow; DATA_DIR from CTROPS_DATA_DIR, default data/). MLFLOW_PORT and MLFLOW_HOST
# override where it listens (MLFLOW_HOST=0.0.0.0 to reach it from another machine).
MLFLOW_PORT ?= 5000
MLFLOW_HOST ?= 127.0.0.1
MLFLOW_DATA = $(abspath $(or $(CTROPS_DATA_DIR),data))/mlflow
mlflow: $(RUN_STAMP)
	@mkdir -p $(MLFLOW_DATA)/artifacts
	@echo "MLflow UI on http://$(MLFLOW_HOST):$(MLFLOW_PORT) over $(MLFLOW_DATA) (Ctrl-C stops it)"
	MLFLOW_DISABLE_TELEMETRY=true $(VENV)/bin/mlflow server --host $(MLFLOW_HOST) --port $(MLFLOW_PORT) --workers 1 \
		--backend-store-uri sqlite:///$(MLFLOW_DATA)/mlflow.db \
		--default-artifact-root file://$(MLFLOW_DATA)/artifacts \
		--artifacts-destination file://$(MLFLOW_DATA)/artifacts

clean:
	rm -rf $(VENV) data out .pytest_cache
