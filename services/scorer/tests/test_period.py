"""A monitoring period from scored chunks: the metrics equal independent computations, the
calibration interval is the Poisson one, CBPE estimates the AUC of calibrated scores without
labels, drift names the shifted feature, and chunks give exactly what one add gives."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from ctrops_common.auc_stats import auc_ci
from ctrops_common.ctr_metrics import average_precision, competition_score, correct_probability
from ctrops_common.datagen import roc_auc
from ctrops_common.events import MonitoringPeriod
from ctrops_scorer.drift import build_reference
from ctrops_scorer.period import PERIOD_SAMPLE, PeriodAccumulator, expected_auc, period_label, poisson_interval

COLUMNS = ["history_a_1", "feat_a_3", "age_group", "noise"]
RUN = "a" * 32


def world(seed: int, n: int, *, shift: float = 0.0, intercept: float = -4.0, weight: float = 1.2):
    """(features, calibrated probabilities, labels): clicks follow a logistic in history_a_1 and
    age group 5; ``shift`` moves feat_a_3 (not a driver) by that many standard deviations."""
    rng = np.random.default_rng(seed)
    x = np.column_stack([
        rng.normal(0, 1, n),
        rng.normal(3 + 4 * shift, 4, n),
        rng.choice(np.arange(1.0, 9.0), size=n),
        rng.normal(0, 1, n),
    ])
    x[rng.random(n) < 0.05, 3] = np.nan
    p = 1 / (1 + np.exp(-(intercept + weight * x[:, 0] + 0.7 * (x[:, 2] == 5))))
    y = (rng.random(n) < p).astype(np.int8)
    return x, p, y


@pytest.fixture(scope="module")
def reference():
    x, p, _ = world(0, 48_000)
    return build_reference(x, COLUMNS, p)


def finish(acc: PeriodAccumulator, **overrides) -> MonitoringPeriod:
    args = dict(run_id=RUN, model_kind="gbdt", period="2026-03", bucket="month", job_ids=["j1"], threshold=0.05,
                baseline_auc=0.8, baseline_auc_ci_low=0.78, importance_ranks={"history_a_1": 1, "age_group": 2})
    return acc.finish(**{**args, **overrides})


def test_labelled_period_metrics_equal_independent_computations(reference):
    x, p, y = world(1, 50_000)
    acc = PeriodAccumulator(reference)
    acc.add(x, p, y)
    period = finish(acc)
    m = period.metrics
    assert period.period_id == f"{RUN}:gbdt:2026-03" and period.rows == 50_000 and period.labelled
    assert period.reference_rows == 48_000 and period.location == ""
    assert m.auc == pytest.approx(roc_auc(y, p), abs=1e-12)
    interval = auc_ci(y, p)
    assert (m.auc_ci_low, m.auc_ci_high) == pytest.approx((interval.low, interval.high))
    assert m.auc_ci_low < m.auc < m.auc_ci_high
    assert m.ap == pytest.approx(average_precision(y, p))
    assert m.logloss == pytest.approx(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)), rel=1e-6)
    assert m.accuracy == pytest.approx(np.mean((p >= 0.05) == (y == 1)))
    assert m.majority_accuracy == pytest.approx(1 - y.mean())
    tp = np.sum((p >= 0.05) & (y == 1))
    assert m.f1 == pytest.approx(2 * tp / (np.sum(p >= 0.05) + y.sum()))
    # The trainer's formula: WLL on the probabilities shifted to a 50% prior from the training rate.
    balanced = correct_probability(p, reference.base_rate, 0.5)
    assert m.toss_score == pytest.approx(competition_score(y, balanced))
    assert m.predicted_clicks == pytest.approx(p.sum()) and m.actual_clicks == int(y.sum())
    assert m.mean_probability == pytest.approx(p.mean())
    # Calibrated scores: the ratio is near 1 and its interval covers 1.
    assert m.calibration == pytest.approx(p.sum() / y.sum())
    assert m.calibration_ci_low < 1 < m.calibration_ci_high


def test_calibration_interval_is_the_poisson_interval_of_the_actual_clicks(reference):
    low, high = poisson_interval(100)
    assert (low, high) == pytest.approx((81.364, 121.627), abs=1e-3)  # Garwood's table
    assert poisson_interval(0) == pytest.approx((0.0, 3.689), abs=1e-3)
    x, p, y = world(2, 20_000)
    over = np.clip(p * 1.6, 0, 1)  # the model predicts 60% more clicks than happen
    acc = PeriodAccumulator(reference)
    acc.add(x, over, y)
    m = finish(acc).metrics
    clicks = int(y.sum())
    low, high = poisson_interval(clicks)
    assert m.calibration == pytest.approx(over.sum() / clicks)
    assert (m.calibration_ci_low, m.calibration_ci_high) == pytest.approx((over.sum() / high, over.sum() / low))
    assert m.calibration_ci_low > 1.25  # out of the [0.8, 1.25] band and the interval excludes 1


def test_cbpe_estimates_the_auc_of_calibrated_scores_without_labels(reference):
    x, p, y = world(3, 50_000)
    estimate = expected_auc(p)
    assert estimate == pytest.approx(roc_auc(y, p), abs=0.02)
    acc = PeriodAccumulator(reference)
    acc.add(x, p, None)
    period = finish(acc)
    assert not period.labelled
    assert period.metrics.estimated_auc == pytest.approx(estimate)
    for name in ("auc", "ap", "logloss", "accuracy", "f1", "toss_score", "calibration", "actual_clicks"):
        assert getattr(period.metrics, name) is None, name


def test_cbpe_equals_the_expected_concordance_by_brute_force():
    rng = np.random.default_rng(4)
    p = rng.choice([0.01, 0.05, 0.05, 0.2, 0.5, 0.9], size=60)  # ties on purpose
    concordant = pairs = 0.0
    for i in range(60):
        for j in range(60):
            if i == j:
                continue
            both = p[i] * (1 - p[j])  # i a click, j a non-click
            pairs += both
            concordant += both * (1.0 if p[i] > p[j] else 0.5 if p[i] == p[j] else 0.0)
    assert expected_auc(p) == pytest.approx(concordant / pairs, abs=1e-12)
    assert expected_auc(np.full(10, 0.3)) == pytest.approx(0.5)
    assert expected_auc(np.array([0.2])) is None


def test_drift_is_sorted_by_psi_with_importance_ranks_and_prediction_psi(reference):
    x, p, y = world(5, 50_000, shift=0.5)
    acc = PeriodAccumulator(reference)
    acc.add(x, p, y)
    period = finish(acc)
    first = period.drift[0]
    assert first.feature == "feat_a_3" and first.drifted and first.psi > 0.2
    assert [d.psi for d in period.drift] == sorted((d.psi for d in period.drift), reverse=True)
    assert all(not d.drifted and d.psi < 0.1 for d in period.drift[1:])
    ranks = {d.feature: d.importance_rank for d in period.drift}
    assert ranks == {"history_a_1": 1, "age_group": 2, "feat_a_3": None, "noise": None}
    assert period.prediction_psi < 0.05  # the driver did not move, so neither did the scores
    # The scores move when the driver moves.
    x2, p2, y2 = world(6, 50_000, intercept=-3.0)
    acc = PeriodAccumulator(reference)
    acc.add(x2, p2, y2)
    assert finish(acc).prediction_psi > 0.2


def test_chunks_give_the_same_period_as_one_add_with_a_bounded_sample(reference):
    x, p, y = world(7, 30_000, shift=0.3)
    whole = PeriodAccumulator(reference)
    whole.add(x, p, y)
    chunked = PeriodAccumulator(reference)
    for start in range(0, 30_000, 7_000):  # uneven chunks
        chunked.add(x[start:start + 7_000], p[start:start + 7_000], y[start:start + 7_000])
    assert chunked._sample.shape == (PERIOD_SAMPLE, len(COLUMNS))
    assert finish(chunked).model_dump() == finish(whole).model_dump()


def test_small_period_uses_p_value_tests(reference):
    x, p, y = world(8, 700, shift=0.8)
    acc = PeriodAccumulator(reference)
    for start in range(0, 700, 100):
        acc.add(x[start:start + 100], p[start:start + 100], y[start:start + 100])
    drift = {d.feature: d for d in finish(acc).drift}
    assert drift["feat_a_3"].test == "ks" and drift["feat_a_3"].p_value < 1e-6
    assert drift["age_group"].test == "chi2" and drift["age_group"].p_value is not None


def test_bad_chunks_are_refused(reference):
    acc = PeriodAccumulator(reference)
    with pytest.raises(ValueError, match="expected \\(3, 4\\)"):
        acc.add(np.zeros((3, 2)), np.zeros(3), None)
    with pytest.raises(ValueError, match="within \\[0, 1\\]"):
        acc.add(np.zeros((2, 4)), np.array([0.5, 1.5]), None)
    with pytest.raises(ValueError, match="0 or 1"):
        acc.add(np.zeros((2, 4)), np.array([0.5, 0.5]), np.array([0, 2]))
    with pytest.raises(ValueError, match="no rows"):
        finish(acc)
    acc.add(np.zeros((2, 4)), np.array([0.5, 0.5]), np.array([0, 1]))
    with pytest.raises(ValueError, match="labelled in every chunk or in none"):
        acc.add(np.zeros((2, 4)), np.array([0.5, 0.5]), None)


def test_period_labels():
    when = datetime(2026, 3, 14, 23, 30, tzinfo=timezone(timedelta(hours=-3)))  # 02:30 UTC on the 15th
    assert period_label(when, "day") == "2026-03-15"
    assert period_label(datetime(2026, 3, 14), "day") == "2026-03-14"
    assert period_label(datetime(2026, 3, 14), "week") == "2026-W11"
    assert period_label(datetime(2027, 1, 1), "week") == "2026-W53"  # the ISO year of that week
    assert period_label(datetime(2026, 3, 14), "month") == "2026-03"
    with pytest.raises(ValueError, match="day, week or month"):
        period_label(datetime(2026, 3, 14), "year")
