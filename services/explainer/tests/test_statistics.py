"""Aggregation of LIME weights: normalisation, p-values that mean what they say, bootstrap intervals."""

from __future__ import annotations

import numpy as np

from ctrops_explainer.statistics import aggregate, rank_correlation, top_overlap


def _weights(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Columns: strong effect, weak effect, pure noise (weights drawn around 0 with their own error)."""
    rng = np.random.default_rng(seed)
    errors = np.full((n, 3), 0.01)
    signs = rng.choice([-1.0, 1.0], size=n)  # a discretised effect changes sign from row to row
    weights = np.column_stack([
        signs * 0.2 + rng.normal(0, 0.01, n),
        rng.choice([-1.0, 1.0], size=n) * 0.03 + rng.normal(0, 0.01, n),
        rng.normal(0, 0.01, n),
    ])
    return weights, errors


def test_importance_is_relative_to_the_strongest_and_sorted():
    weights, errors = _weights(100, 0)
    stats = aggregate(["strong", "weak", "noise"], weights, errors, bootstrap=500, seed=1)
    assert [s.feature for s in stats] == ["strong", "weak", "noise"]
    assert stats[0].importance == 1.0
    assert 0.1 < stats[1].importance < 0.2
    assert np.isclose(stats[0].mean_abs_weight, np.abs(weights[:, 0]).mean())


def test_p_value_separates_a_real_effect_from_noise_even_when_its_sign_flips():
    weights, errors = _weights(100, 0)
    stats = {s.feature: s for s in aggregate(["strong", "weak", "noise"], weights, errors, 500, 1)}
    assert abs(stats["strong"].mean_weight) < 0.05  # a signed t-test would miss it
    assert stats["strong"].p_value < 1e-12 and stats["weak"].p_value < 1e-6
    assert stats["noise"].p_value > 0.01


def test_p_values_of_pure_noise_are_roughly_uniform():
    rng = np.random.default_rng(5)
    weights = rng.normal(0, 0.02, size=(80, 400))
    stats = aggregate([f"f{j}" for j in range(400)], weights, np.full_like(weights, 0.02), 100, 0)
    p = np.array([s.p_value for s in stats])
    assert 0.03 < np.mean(p < 0.1) < 0.18  # about 10% below 0.1, as a valid test should give


def test_interval_brackets_the_estimate_and_narrows_with_more_rows():
    few = {s.feature: s for s in aggregate(["a", "b", "c"], *_weights(30, 2), bootstrap=800, seed=3)}
    many = {s.feature: s for s in aggregate(["a", "b", "c"], *_weights(600, 2), bootstrap=800, seed=3)}
    for stats in (few, many):
        for s in stats.values():
            assert s.ci[0] <= s.importance + 1e-12 and s.importance <= s.ci[1] + 1e-12
    width = lambda s: s.ci[1] - s.ci[0]  # noqa: E731
    assert width(many["b"]) < width(few["b"])


def test_same_seed_same_interval_and_zero_weights_are_safe():
    weights, errors = _weights(50, 4)
    first = aggregate(["a", "b", "c"], weights, errors, 300, 9)
    assert first == aggregate(["a", "b", "c"], weights, errors, 300, 9)
    zeros = aggregate(["a", "b"], np.zeros((10, 2)), np.zeros((10, 2)), 100, 0)
    assert all(s.importance == 0.0 and s.p_value == 1.0 and s.ci == (0.0, 0.0) for s in zeros)


def test_overlap_and_rank_correlation():
    assert top_overlap(list("abcdefghijkl"), list("lkjihgfedcba"), 10) == 8
    assert rank_correlation({"a": 1, "b": 2, "c": 3}, {"a": 10, "b": 20, "c": 30}) == 1.0
    assert rank_correlation({"a": 1, "b": 1, "c": 1}, {"a": 1, "b": 2, "c": 3}) == 0.0
