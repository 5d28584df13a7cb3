"""DeLong statistics: the fast midrank algorithm equals sklearn's AUC and the textbook O(n^2)
DeLong variance; the paired test says "no difference" for identical scores and finds a clear one."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ctrops_common.auc_stats import auc_ci, delong_covariance, delong_paired, midranks


def slow_delong(y: np.ndarray, *scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong et al. (1988) as written: psi over every click/non-click pair."""
    pos, neg = y == 1, y == 0
    m, n = int(pos.sum()), int(neg.sum())
    v10, v01, aucs = [], [], []
    for s in scores:
        x, z = s[pos], s[neg]
        psi = (x[:, None] > z[None, :]) + 0.5 * (x[:, None] == z[None, :])  # (m, n)
        aucs.append(psi.mean())
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
    v10, v01 = np.array(v10), np.array(v01)
    k = len(scores)
    s10 = np.array([[np.sum((v10[a] - v10[a].mean()) * (v10[b] - v10[b].mean())) / (m - 1)
                     for b in range(k)] for a in range(k)])
    s01 = np.array([[np.sum((v01[a] - v01[a].mean()) * (v01[b] - v01[b].mean())) / (n - 1)
                     for b in range(k)] for a in range(k)])
    return np.array(aucs), s10 / m + s01 / n


def test_midranks_average_tied_ranks():
    assert midranks(np.array([3.0, 1.0, 3.0, 2.0, 3.0])).tolist() == [4.0, 1.0, 4.0, 2.0, 4.0]
    assert midranks(np.array([0.5, 0.5])).tolist() == [1.5, 1.5]


@pytest.mark.parametrize("seed", range(6))
def test_fast_delong_equals_sklearn_auc_and_the_quadratic_reference(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 120))
    y = (rng.random(n) < 0.3).astype(np.int8)
    y[:2] = [0, 1]  # both classes
    # Rounded scores give many ties, the case midranks exist for.
    a = np.round(y * 0.6 + rng.normal(size=n), 1)
    b = np.round(a * 0.5 + y * 0.4 + rng.normal(size=n), 1)
    aucs, cov = delong_covariance(y, a, b)
    ref_aucs, ref_cov = slow_delong(y, a, b)
    assert aucs[0] == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    assert aucs[1] == pytest.approx(roc_auc_score(y, b), abs=1e-12)
    np.testing.assert_allclose(aucs, ref_aucs, atol=1e-9)
    np.testing.assert_allclose(cov, ref_cov, atol=1e-9)
    assert cov[0, 1] != 0  # correlated scores: the paired term matters


def test_auc_ci_covers_the_true_auc_about_as_often_as_its_level_says():
    rng = np.random.default_rng(1)
    true_auc = 0.7602  # Phi(1/sqrt(2)): a unit shift between two unit normals
    covered, trials = 0, 300
    for _ in range(trials):
        y = (rng.random(400) < 0.15).astype(int)
        ci = auc_ci(y, y * 1.0 + rng.normal(size=400))
        assert ci.low < ci.auc < ci.high
        covered += ci.low < true_auc < ci.high
    assert 0.91 <= covered / trials <= 0.98


def test_auc_ci_narrows_with_more_rows_and_widens_with_the_level():
    rng = np.random.default_rng(5)

    def interval(n, level=0.95):
        y = (rng.random(n) < 0.1).astype(int)
        return auc_ci(y, y * 1.0 + rng.normal(size=n), level=level)

    small, large = interval(500), interval(20_000)
    assert (large.high - large.low) < (small.high - small.low) / 4
    y, p = np.r_[0, 1, 0, 1, 1, 0], np.r_[0.1, 0.8, 0.3, 0.2, 0.9, 0.4]
    wider, narrower = auc_ci(y, p, level=0.99), auc_ci(y, p, level=0.8)
    assert wider.auc == narrower.auc == pytest.approx(roc_auc_score(y, p))
    assert wider.high - wider.low > narrower.high - narrower.low


def test_identical_scores_differ_by_nothing():
    rng = np.random.default_rng(2)
    y = (rng.random(3_000) < 0.05).astype(int)
    p = rng.random(3_000) + y * 0.3
    same = delong_paired(y, p, p)
    assert same.difference == 0.0
    assert same.p_value == 1.0
    assert same.ci_low == same.ci_high == 0.0
    # A monotone transform ranks every pair alike: same AUC, still no difference.
    assert delong_paired(y, p, np.log(p + 1)).p_value == pytest.approx(1.0)


def test_a_clearly_better_model_has_a_tiny_p_value():
    rng = np.random.default_rng(3)
    n = 20_000
    y = (rng.random(n) < 0.05).astype(int)
    weak = y * 0.3 + rng.normal(size=n)
    strong = y * 1.5 + rng.normal(size=n)
    result = delong_paired(y, weak, strong)
    assert result.auc_a == pytest.approx(roc_auc_score(y, weak))
    assert result.auc_b == pytest.approx(roc_auc_score(y, strong))
    assert result.difference == pytest.approx(result.auc_b - result.auc_a)
    assert result.difference > 0.2
    assert result.ci_low > 0
    assert result.p_value < 1e-12
    assert result.positives + result.negatives == n
    # Order matters only for the sign.
    flipped = delong_paired(y, strong, weak)
    assert flipped.difference == pytest.approx(-result.difference)
    assert flipped.p_value == pytest.approx(result.p_value)


def test_p_value_of_a_null_difference_is_not_small_on_average():
    """Two equally good, independent noisy scores: the test rejects at 5% about 5% of the time."""
    rng = np.random.default_rng(4)
    rejections = 0
    trials = 200
    for _ in range(trials):
        y = (rng.random(600) < 0.2).astype(int)
        a = y * 0.8 + rng.normal(size=600)
        b = y * 0.8 + rng.normal(size=600)
        rejections += delong_paired(y, a, b).p_value < 0.05
    assert 0.01 <= rejections / trials <= 0.10


def test_inputs_are_checked():
    with pytest.raises(ValueError, match="one click and one non-click"):
        auc_ci(np.zeros(5), np.arange(5.0))
    with pytest.raises(ValueError, match="0 or 1"):
        auc_ci(np.array([0, 2, 1]), np.arange(3.0))
    with pytest.raises(ValueError, match="finite"):
        delong_paired(np.array([0, 1, 1]), np.arange(3.0), np.array([0.1, math.nan, 0.3]))
