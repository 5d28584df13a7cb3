"""Fixtures of the trainer tests: small generated training files in the training layout."""

from __future__ import annotations

import os
from pathlib import Path

# Before torch loads in this process: idle OpenMP threads must not spin on the shared cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest

from ctrops_common.testdata import training_parquet

# Small enough for seconds per epoch on 2 shared cores; 8% clicks so that 8,000 rows still
# hold ~630 clicks (the planted signal needs clicks to be learnt, not rows).
ROWS = 8000
CTR = 0.08


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """(parquet path, ground truth) of generated data with a planted signal."""
    return training_parquet(tmp_path_factory.mktemp("generated"), ROWS, seed=42, ctr=CTR)


@pytest.fixture
def place_training_file(generated, data_dir: Path):
    """Copy the generated file into this test's store as files/<file_id>/data.parquet; returns the relative path."""
    import shutil

    def place(file_id: str) -> str:
        relative = f"files/{file_id}/data.parquet"
        target = data_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(generated[0], target)
        return relative

    return place
