"""ctrops_common.splits gives exactly the trainer's validation rows (the explainer relies on it)."""

from __future__ import annotations

import numpy as np
import pytest

from ctrops_common.splits import training_rows, validation_rows

data = pytest.importorskip("ctrops_trainer.data")


@pytest.mark.parametrize("seed", [0, 7, 42, 2**31 - 1])
@pytest.mark.parametrize("split", [0.05, 0.2, 0.5])
def test_same_validation_rows_as_the_trainer(seed, split):
    rng = np.random.default_rng(seed + 1)
    labels = (rng.random(5000) < 0.03).astype(np.float32)
    for downsampling in (True, False):
        expected = data.split_rows(labels, split, downsampling, seed)
        assert np.array_equal(validation_rows(labels, split, seed), expected.val)
        if len(expected.train_all):
            assert np.array_equal(training_rows(labels, split, seed), expected.train_all)


def test_int8_labels_as_the_explainer_reads_them():
    rng = np.random.default_rng(3)
    labels = (rng.random(2000) < 0.1).astype(np.int8)
    assert np.array_equal(validation_rows(labels, 0.2, 42),
                          data.split_rows(labels.astype(np.float32), 0.2, True, 42).val)
