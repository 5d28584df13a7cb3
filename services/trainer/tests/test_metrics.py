"""Validation metrics at a low click rate: the competition score, F1 threshold, corrected probabilities."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from ctrops_trainer.metrics import best_f1_threshold, competition_score, validation_metrics, weighted_log_loss


def test_a_constant_half_scores_about_0_305_as_the_dataset_spec_says():
    y = (np.random.default_rng(0).random(100_000) < 0.0191).astype(float)
    p = np.full_like(y, 0.5)
    assert weighted_log_loss(y, p) == pytest.approx(np.log(2))
    assert competition_score(y, p) == pytest.approx(0.305, abs=0.002)


def test_best_f1_threshold_matches_a_brute_force_search():
    rng = np.random.default_rng(1)
    y = (rng.random(2000) < 0.1).astype(float)
    p = np.clip(0.1 + 0.3 * y + rng.normal(0, 0.15, 2000), 0, 1).round(2)  # many ties
    threshold, precision, recall, f1 = best_f1_threshold(y, p)
    brute = max(f1_score(y, p >= t) for t in np.unique(p))
    assert f1 == pytest.approx(brute)
    assert f1_score(y, p >= threshold) == pytest.approx(f1)
    assert 0 < precision <= 1 and 0 < recall <= 1


def test_probabilities_learnt_on_down_sampled_data_are_corrected_to_the_true_rate():
    rng = np.random.default_rng(2)
    base_rate = 0.02
    y = (rng.random(200_000) < base_rate).astype(float)
    # A model trained at 1/3 clicks that only knows the prior predicts 1/3 everywhere.
    metrics = validation_metrics(y, np.full_like(y, 1 / 3), train_rate=1 / 3, base_rate=base_rate)
    assert metrics["calibration"] == pytest.approx(1.0, abs=0.05)
    assert metrics["val_accuracy"] == pytest.approx(1 - y.mean())
    assert metrics["auc"] == pytest.approx(0.5)
    assert metrics["score"] == pytest.approx(0.305, abs=0.003)  # the balanced shift of a prior-only model is 0.5


def test_a_single_class_gives_no_auc_rather_than_nan():
    metrics = validation_metrics(np.zeros(10), np.full(10, 0.2), 0.3, 0.02)
    assert metrics["auc"] is None and metrics["ap"] is None and metrics["score"] is None
    assert metrics["calibration"] is None
