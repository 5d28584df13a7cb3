"""The whole explanation on a model that learned a planted signal: ranking, determinism, stability."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ctrops_explainer.pipeline import ExplainConfig, explain, stratified_sample
from ctrops_explainer.statistics import top_overlap

SMALL = ExplainConfig(sample_rows=60, lime_samples=1000, background_rows=1000, seq_bank_size=128, bootstrap=300,
                      permutation_repeats=2, eval_rows=3000, top_k=10, correlation_rows=5000, torch_threads=1)


@pytest.fixture(scope="module")
def explanation(planted_model):
    return explain(planted_model.loaded, planted_model.parquet, SMALL)


def _ranking(result) -> list[str]:
    return [f["feature"] for f in result["features"]]


def test_planted_features_rank_at_the_top(explanation, planted_model):
    ranking = _ranking(explanation)
    planted = planted_model.planted
    assert set(planted) == {"history_a_1", "hour", "l_feat_14", "age_group", "feat_a_3", "seq"}
    assert set(ranking[: len(planted)]) == set(planted), ranking[:10]
    # The model never sees the unrelated columns' signal: they all rank below every planted one.
    importance = {f["feature"]: f["importance"] for f in explanation["features"]}
    assert min(importance[p] for p in planted) > max(v for k, v in importance.items() if k not in planted)


def test_every_feature_has_importance_p_value_interval_and_korean_description(explanation, planted_model):
    features = explanation["features"]
    assert len(features) == len(planted_model.preprocess.feature_columns) + 1  # + seq
    assert features[0]["importance"] == 1.0
    assert [f["importance"] for f in features] == sorted((f["importance"] for f in features), reverse=True)
    for f in features:
        assert 0.0 <= f["importance"] <= 1.0 and 0.0 <= f["pValue"] <= 1.0 and f["pValue"] == f["p_value"]
        low, high = f["ci"]
        assert 0.0 <= low <= high <= 1.0
    by_name = {f["feature"]: f for f in features}
    assert by_name["hour"]["description"] == "시간대" and by_name["seq"]["description"] == "행동 시퀀스"
    assert by_name["history_a_1"]["pValue"] < 1e-6  # the strongest planted effect is unmistakable
    json.dumps(explanation, allow_nan=False)  # storable as strict JSON


def test_permutation_check_agrees_on_the_strongest_features(explanation):
    permutation = explanation["permutation"]
    assert permutation["metric"] == "average_precision" and permutation["repeats"] == 2
    assert 0 < permutation["baseline"] <= 1
    assert permutation["features"][0]["feature"] == "history_a_1"
    assert permutation["top10_overlap_with_lime"] >= 6
    assert -1.0 <= permutation["spearman_with_lime"] <= 1.0


def test_correlation_covers_the_top_features_with_seq_as_its_length(explanation):
    correlation = explanation["correlation"]
    top = _ranking(explanation)[:10]
    assert correlation["features"] == ["seq_length" if f == "seq" else f for f in top]
    matrix = np.array(correlation["matrix"])
    assert matrix.shape == (10, 10) and np.all(np.isfinite(matrix))
    assert np.allclose(matrix, matrix.T) and np.allclose(np.diag(matrix), 1.0)


def test_same_seed_gives_the_same_importances(explanation, planted_model):
    again = explain(planted_model.loaded, planted_model.parquet, SMALL)
    assert [(f["feature"], f["importance"], f["pValue"], f["ci"]) for f in again["features"]] == \
        [(f["feature"], f["importance"], f["pValue"], f["ci"]) for f in explanation["features"]]


def test_different_seed_keeps_the_top_ten_mostly_the_same(explanation, planted_model, capsys):
    from dataclasses import replace

    other = explain(planted_model.loaded, planted_model.parquet, replace(SMALL, seed=7))
    overlap = top_overlap(_ranking(explanation), _ranking(other), 10)
    with capsys.disabled():
        print(f"\ntop-10 overlap between seeds 42 and 7: {overlap}/10")
    assert other["features"] != explanation["features"]  # the seed does change the sampling
    assert set(_ranking(other)[:6]) == set(planted_model.planted)
    # The planted six are stable; places 7-10 go to unrelated columns of near-equal, small importance.
    assert overlap >= 6


def test_stratified_sample_includes_clicks_at_the_asked_share():
    clicked = np.zeros(1000, dtype=np.int8)
    clicked[:20] = 1  # 2% clicks
    rng = np.random.default_rng(0)
    chosen = stratified_sample(clicked, 200, 0.5, rng)
    assert len(chosen) == 200 == len(set(chosen))
    assert clicked[chosen].sum() == 20  # every click, as the file has fewer than half of 200
    balanced = np.r_[np.ones(500), np.zeros(500)].astype(np.int8)
    assert balanced[stratified_sample(balanced, 100, 0.5, rng)].sum() == 50
    assert balanced[stratified_sample(balanced, 100, 0.2, rng)].sum() == 20
