"""Comparing rankings: top-k overlap and Spearman."""

from __future__ import annotations

from ctrops_explainer.statistics import rank_correlation, top_overlap


def test_overlap_and_rank_correlation():
    assert top_overlap(list("abcdefghijkl"), list("lkjihgfedcba"), 10) == 8
    assert rank_correlation({"a": 1, "b": 2, "c": 3}, {"a": 10, "b": 20, "c": 30}) == 1.0
    assert rank_correlation({"a": 1, "b": 1, "c": 1}, {"a": 1, "b": 2, "c": 3}) == 0.0
