"""Pearson matrices stay valid (finite, symmetric, unit diagonal) whatever the columns hold."""

from __future__ import annotations

import numpy as np

from ctrops_explainer.correlation import pearson_matrix


def _valid(matrix: np.ndarray, k: int) -> None:
    assert matrix.shape == (k, k)
    assert np.all(np.isfinite(matrix))
    assert np.allclose(matrix, matrix.T)
    assert np.allclose(np.diag(matrix), 1.0)
    assert np.all(np.abs(matrix) <= 1.0)


def test_matches_numpy_on_complete_data():
    rng = np.random.default_rng(0)
    a = rng.normal(size=500)
    data = np.column_stack([a, 2 * a + rng.normal(size=500), -a + 1e6, rng.normal(size=500) * 1e-3])
    matrix = pearson_matrix(data)
    _valid(matrix, 4)
    assert np.allclose(matrix, np.corrcoef(data, rowvar=False), atol=1e-9)
    assert matrix[0, 2] == -1.0 or np.isclose(matrix[0, 2], -1.0)


def test_constant_column_is_finite_with_zero_correlations():
    rng = np.random.default_rng(1)
    data = np.column_stack([rng.normal(size=200), np.full(200, 3.0), rng.normal(size=200)])
    matrix = pearson_matrix(data)
    _valid(matrix, 3)
    assert matrix[1, 0] == matrix[1, 2] == matrix[0, 1] == 0.0


def test_all_missing_and_sparse_columns():
    rng = np.random.default_rng(2)
    x = rng.normal(size=300)
    nearly_empty = np.full(300, np.nan)
    nearly_empty[:2] = [1.0, 2.0]  # two shared rows: too few for a correlation
    data = np.column_stack([x, np.full(300, np.nan), nearly_empty, x + 0.01 * rng.normal(size=300)])
    matrix = pearson_matrix(data)
    _valid(matrix, 4)
    assert np.all(matrix[1, [0, 2, 3]] == 0.0) and np.all(matrix[2, [0, 1, 3]] == 0.0)
    assert matrix[0, 3] > 0.99


def test_missing_values_use_pairwise_complete_rows():
    rng = np.random.default_rng(3)
    a = rng.normal(size=400)
    b = a + 0.5 * rng.normal(size=400)
    c = rng.normal(size=400)
    data = np.column_stack([a, b, c])
    holes = data.copy()
    holes[:100, 0] = np.nan
    holes[300:, 1] = np.nan
    matrix = pearson_matrix(holes)
    _valid(matrix, 3)
    both = slice(100, 300)
    assert np.isclose(matrix[0, 1], np.corrcoef(a[both], b[both])[0, 1])
    assert np.isclose(matrix[0, 2], np.corrcoef(a[100:], c[100:])[0, 1])


def test_a_column_constant_where_the_other_is_present_is_zero():
    x = np.array([1.0, 2.0, 3.0, 4.0, np.nan, np.nan])
    y = np.array([np.nan, np.nan, 5.0, 5.0, 1.0, 2.0])  # constant on the rows both have
    _valid(matrix := pearson_matrix(np.column_stack([x, y])), 2)
    assert matrix[0, 1] == 0.0


def test_empty_and_single_column():
    _valid(pearson_matrix(np.zeros((0, 1))), 1)
    assert pearson_matrix(np.zeros((5, 0))).shape == (0, 0)
