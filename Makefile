# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROJECTS := libs/common services/ingest services/trainer services/explainer services/reporter services/monitor services/gateway
PYPROJECTS := $(addsuffix /pyproject.toml,$(PROJECTS))

.PHONY: install tools run test demo bench mlflow clean

install: $(STAMP) tools

# System tools the tests use that PyPI does not ship: promtool (Debian package prometheus)
# checks the Prometheus rules; pdftoppm/pdftotext (poppler-utils) render and read back every
# page of a report; kubectl (with kustomize) renders the Kubernetes overlays.
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
	@command -v kubectl >/dev/null || echo "WARNING: kubectl missing; see docs/deploy.md (tests need it)"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==25.3

# torch first, pinned: the CPU build this machine provides, never an unpinned CUDA download.
$(STAMP): $(PY) $(PYPROJECTS) constraints.txt requirements-dev.txt
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -r requirements-dev.txt \
		-e 'libs/common[ml]' $(addprefix -e ,$(filter-out libs/common,$(PROJECTS)))
	touch $(STAMP)

run: install
	$(PY) -m ctrops_common.stack

test: install
	$(PY) -m pytest

# Against a running `make run`: upload a generated sample, train, explain, report, save the PDF in out/.
demo: install
	$(PY) scripts/demo.py $(DEMO_ARGS)

# Each script prints its figures; they are recorded by hand in docs/benchmarks.md.
bench: install
	for script in bench/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

# The MLflow UI over the trainer's embedded store (runs, both models of each run, the registry with
# its champion alias): http://127.0.0.1:5000. The same SQLite file and artifact folder the trainer
# uses (DATA_DIR/mlflow; DATA_DIR from CTROPS_DATA_DIR, default data/). MLFLOW_PORT and MLFLOW_HOST
# override where it listens (MLFLOW_HOST=0.0.0.0 to reach it from another machine).
MLFLOW_PORT ?= 5000
MLFLOW_HOST ?= 127.0.0.1
MLFLOW_DATA = $(abspath $(or $(CTROPS_DATA_DIR),data))/mlflow
mlflow: install
	@mkdir -p $(MLFLOW_DATA)/artifacts
	@echo "MLflow UI on http://$(MLFLOW_HOST):$(MLFLOW_PORT) over $(MLFLOW_DATA) (Ctrl-C stops it)"
	MLFLOW_DISABLE_TELEMETRY=true $(VENV)/bin/mlflow server --host $(MLFLOW_HOST) --port $(MLFLOW_PORT) --workers 1 \
		--backend-store-uri sqlite:///$(MLFLOW_DATA)/mlflow.db \
		--default-artifact-root file://$(MLFLOW_DATA)/artifacts \
		--artifacts-destination file://$(MLFLOW_DATA)/artifacts

clean:
	rm -rf $(VENV) data out .pytest_cache
