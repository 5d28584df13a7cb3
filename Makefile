# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROJECTS := libs/common services/ingest services/trainer services/explainer services/reporter services/monitor services/gateway
PYPROJECTS := $(addsuffix /pyproject.toml,$(PROJECTS))

.PHONY: install run test demo bench clean

install: $(STAMP)

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
	$(PY) scripts/demo.py

# Each script prints its figures; they are recorded by hand in docs/benchmarks.md.
bench: install
	for script in bench/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) data out .pytest_cache
