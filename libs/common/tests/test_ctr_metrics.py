"""The shared click-model metrics: numpy AP equals sklearn's, the Toss score of a constant 0.5 is
the spec's 0.305, the prior shift round-trips, F1 at a threshold equals sklearn's."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score

from ctrops_common.ctr_metrics import (
    average_precision,
    competition_score,
    correct_probability,
    f1_at,
    weighted_log_loss,
)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_average_precision_equals_sklearn_with_and_without_ties(seed):
    rng = np.random.default_rng(seed)
    y = (rng.random(5000) < 0.05).astype(float)
    p = np.clip(0.05 + 0.2 * y + rng.normal(0, 0.1, 5000), 0, 1)
    assert average_precision(y, p) == pytest.approx(average_precision_score(y, p), abs=1e-12)
    tied = p.round(2)  # many equal scores
    assert average_precision(y, tied) == pytest.approx(average_precision_score(y, tied), abs=1e-12)


def test_average_precision_without_clicks_is_nan():
    assert np.isnan(average_precision(np.zeros(10), np.linspace(0, 1, 10)))


def test_constant_half_scores_0_305_and_wll_is_log_2():
    y = (np.random.default_rng(0).random(100_000) < 0.0191).astype(float)
    p = np.full_like(y, 0.5)
    assert weighted_log_loss(y, p) == pytest.approx(np.log(2))
    assert competition_score(y, p) == pytest.approx(0.305, abs=0.002)


def test_prior_shift_round_trips_and_moves_the_mean():
    p = np.linspace(0.01, 0.6, 50)
    there = correct_probability(p, 0.02, 0.5)
    assert there.mean() > p.mean()
    assert correct_probability(there, 0.5, 0.02) == pytest.approx(p, abs=1e-9)


def test_f1_at_a_threshold_equals_sklearn():
    rng = np.random.default_rng(3)
    y = (rng.random(3000) < 0.1).astype(int)
    p = np.clip(0.1 + 0.3 * y + rng.normal(0, 0.15, 3000), 0, 1)
    for t in (0.1, 0.3, 0.5, 0.99):
        assert f1_at(y, p, t) == pytest.approx(f1_score(y, p >= t, zero_division=0.0))
