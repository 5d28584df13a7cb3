"""Drift against the training rows: a shifted feature has PSI > 0.2 and the others < 0.1, nothing
drifts without a shift, the test is picked by kind and sample size, and a saved reference
gives the same numbers after loading."""

from __future__ import annotations

import numpy as np
import pytest

from ctrops_scorer.drift import (
    Binning,
    Reference,
    build_reference,
    chi_square,
    feature_drift,
    is_categorical,
    psi,
)

COLUMNS = ["history_a_1", "feat_a_3", "age_group", "l_feat_1", "hour"]


def draw(rng: np.random.Generator, n: int, shift: float = 0.0, age_shift: bool = False) -> np.ndarray:
    """Columns like the Toss data's: two normals (the second shifted by ``shift`` sd), a categorical
    age group, a gamma with 10% missing, a 24-valued hour (numeric: more than 20 values)."""
    age_p = [0.02, 0.08, 0.17, 0.22, 0.21, 0.15, 0.10, 0.05]
    if age_shift:
        age_p = age_p[::-1]
    x = np.column_stack([
        rng.normal(0, 1, n),
        rng.normal(3 + 4 * shift, 4, n),
        rng.choice(np.arange(1.0, 9.0), size=n, p=age_p),
        np.round(rng.gamma(2.0, 1.5, n), 3),
        rng.integers(0, 24, n).astype(float),
    ])
    x[rng.random(n) < 0.1, 3] = np.nan
    return x


@pytest.fixture(scope="module")
def reference() -> Reference:
    rng = np.random.default_rng(0)
    features = draw(rng, 48_000)
    scores = 1 / (1 + np.exp(-(-4 + 0.8 * features[:, 0])))
    return build_reference(features, COLUMNS, scores)


def drift_of(reference: Reference, period: np.ndarray) -> dict[str, tuple]:
    out = {}
    for i, column in enumerate(COLUMNS):
        binning = reference.binnings[i]
        r = feature_drift(reference, i, binning.counts(period[:, i]), period[:5000, i], period.shape[0])
        out[column] = r
    return out


def test_kinds_are_picked_from_the_values_or_given(reference):
    assert reference.kinds == ["numeric", "numeric", "categorical", "numeric", "numeric"]
    assert is_categorical(np.array([1.0, 2.0, np.nan, 3.0]))
    assert not is_categorical(np.array([0.5, 1.0]))  # not integers
    assert not is_categorical(np.arange(24.0))  # too many values
    given = build_reference(np.column_stack([np.arange(30.0), np.arange(30.0)]), ["a", "b"], np.full(30, 0.1),
                            categorical={"b"})
    assert given.kinds == ["numeric", "categorical"]
    with pytest.raises(ValueError, match="not among the columns"):
        build_reference(np.zeros((3, 1)), ["a"], np.zeros(3), categorical={"zzz"})


def test_a_shifted_feature_drifts_and_the_others_do_not(reference):
    period = draw(np.random.default_rng(1), 50_000, shift=0.5)  # feat_a_3 moves half a standard deviation
    result = drift_of(reference, period)
    assert result["feat_a_3"].psi > 0.2
    for column in ("history_a_1", "age_group", "l_feat_1", "hour"):
        assert result[column].psi < 0.1, column
    # Large period: no p-value; the statistic is the Wasserstein distance in reference sds (~0.5).
    assert result["feat_a_3"].test == "psi" and result["feat_a_3"].p_value is None
    assert result["feat_a_3"].statistic == pytest.approx(0.5, abs=0.08)
    assert result["history_a_1"].statistic < 0.05
    assert result["age_group"].test == "psi" and result["age_group"].p_value is None  # Jensen-Shannon
    assert result["age_group"].statistic < 0.05


def test_no_shift_nothing_drifts(reference):
    for n in (800, 50_000):
        result = drift_of(reference, draw(np.random.default_rng(2), n))
        assert max(r.psi for r in result.values()) < 0.1
        if n <= 1000:
            assert all(r.p_value is not None and r.p_value > 0.001 for r in result.values())


def test_small_periods_get_ks_and_chi_square_p_values(reference):
    period = draw(np.random.default_rng(3), 800, shift=0.5, age_shift=True)
    result = drift_of(reference, period)
    assert result["feat_a_3"].test == "ks" and result["feat_a_3"].p_value < 1e-6
    assert result["age_group"].test == "chi2" and result["age_group"].p_value < 1e-6
    assert result["history_a_1"].test == "ks" and result["history_a_1"].p_value > 0.001


def test_psi_by_hand_and_missing_values_are_their_own_bin():
    # 50/50 -> 80/20: (0.8-0.5)ln(0.8/0.5) + (0.2-0.5)ln(0.2/0.5)
    assert psi(np.array([50, 50]), np.array([80, 20])) == pytest.approx(0.3 * np.log(1.6) - 0.3 * np.log(0.4))
    assert psi(np.array([10, 0]), np.array([10, 0])) == 0.0  # empty on both sides: no contribution
    binning = Binning("numeric", np.array([1.0, 2.0]))
    assert binning.assign(np.array([0.5, 1.0, 1.5, 2.5, np.nan])).tolist() == [0, 1, 1, 2, 3]
    categories = Binning("categorical", np.array([1.0, 5.0]))
    assert categories.assign(np.array([5.0, 1.0, 7.0, np.nan])).tolist() == [1, 0, 2, 3]
    # Only the share of missing values changes: PSI sees it.
    reference = build_reference(np.r_[np.arange(1000.0), [np.nan] * 10][:, None], ["x"], np.full(1010, 0.1))
    more_missing = np.r_[np.arange(0.0, 1000.0, 2), [np.nan] * 500]
    assert psi(reference.counts[0], reference.binnings[0].counts(more_missing)) > 1.0


def test_chi_square_needs_two_categories():
    assert chi_square(np.array([10, 0, 0]), np.array([5, 0, 0])) == (0.0, None)
    statistic, p = chi_square(np.array([500, 500]), np.array([80, 20]))
    assert statistic > 20 and p < 1e-5


def test_reference_round_trips_through_one_file(reference, tmp_path):
    path = reference.save(tmp_path / "reference.npz")
    loaded = Reference.load(path)
    assert loaded.feature_columns == COLUMNS and loaded.kinds == reference.kinds
    assert loaded.rows == 48_000 and loaded.base_rate == pytest.approx(reference.base_rate)
    for a, b in zip(loaded.counts, reference.counts):
        assert np.array_equal(a, b)
    assert np.array_equal(loaded.sample, reference.sample, equal_nan=True)
    period = draw(np.random.default_rng(4), 900, shift=0.5)
    assert drift_of(loaded, period) == drift_of(reference, period)
    (tmp_path / "other.npz").write_bytes(b"not a reference")
    with pytest.raises(Exception):
        Reference.load(tmp_path / "other.npz")


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="expected \\(rows, 2\\)"):
        build_reference(np.zeros((5, 3)), ["a", "b"], np.zeros(5))
    with pytest.raises(ValueError, match="4 scores for 5 rows"):
        build_reference(np.zeros((5, 2)), ["a", "b"], np.zeros(4))
