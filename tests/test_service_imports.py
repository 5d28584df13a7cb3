"""What a service imports to start: the heavy libraries wait for the first job that needs them.

Every ``make test`` starts each service 9-24 times, and most starts never explain, load an
LSTM or draw a chart. torch, SciPy, LIME, scikit-learn, MLflow and matplotlib cost 0.5-4 CPU-s
of imports per start (docs/benchmarks.md, "The test suite", 2026-12-06). Each service's
``__main__`` is imported in a fresh interpreter, as ``python -m ctrops_<name>`` imports it
before it starts. (The trainer's training processes import torch and LightGBM ahead of time,
in their fork server: that is a separate process, started with the first training.)
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ctrops_common.service import PLATFORM_SERVICES

HEAVY = ("torch", "scipy", "lime", "sklearn", "mlflow", "matplotlib", "lightgbm")


def modules_loaded_by(imports: str) -> set[str]:
    """The top-level modules a fresh interpreter holds after ``import <imports>``."""
    code = f"import json, sys, {imports}; print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("service", PLATFORM_SERVICES)
def test_a_start_imports_no_heavy_library(service: str) -> None:
    loaded = modules_loaded_by(f"ctrops_{service}.__main__")
    assert f"ctrops_{service}" in loaded and "ctrops_common" in loaded  # the import did happen
    early = sorted(set(HEAVY) & loaded)
    assert not early, f"ctrops_{service} imports {early} at start; import them where the first job needs them"


def test_the_names_checked_are_what_the_first_jobs_import() -> None:
    """HEAVY names real top-level modules: the explain pipeline, an LSTM, a LightGBM model and the
    PDF's charts import them (MLflow aside: only a registered model's load imports it)."""
    loaded = modules_loaded_by("ctrops_explainer.pipeline, ctrops_reporter.charts, ctrops_common.ml, "
                               "ctrops_common.gbdt")
    assert set(HEAVY) - {"mlflow"} <= loaded, sorted(set(HEAVY) - loaded)
