"""A LightGBM re-scored tree by tree: equal to LightGBM's own scores, and the shuffle path equal to scoring again."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from ctrops_common.gbdt import GbdtModel
from ctrops_common.ml import Preprocess
from ctrops_common.model_loading import LoadedModel
from ctrops_explainer.scoring import Scorer
from ctrops_explainer.shuffle import Shuffled, TreeShuffled, shuffled_scores
from ctrops_explainer.trees import TreeTable


def _model(seed: int = 0, rounds: int = 80) -> tuple[Scorer, np.ndarray, np.ndarray]:
    """A booster on 6 tabular columns (NaN and exact zeros in them) and 3 'seq' columns, as the challenger has."""
    rng = np.random.default_rng(seed)
    n = 3000
    x = rng.normal(size=(n, 6)).astype(np.float32)
    x[rng.random(n) < 0.2, 1] = np.nan  # missing values: LightGBM learns their side (missing type NaN)
    x[rng.random(n) < 0.3, 2] = 0.0  # many zeros
    seq = rng.poisson(2.0, size=(n, 3)).astype(np.float32)
    logit = -2 + 1.2 * x[:, 0] + np.where(np.isnan(x[:, 1]), 1.0, 0.5 * np.nan_to_num(x[:, 1])) + 0.4 * seq[:, 0]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    booster = lgb.train({"objective": "binary", "num_leaves": 7, "learning_rate": 0.1, "verbose": -1,
                         "num_threads": 1, "seed": seed, "feature_fraction": 0.7},
                        lgb.Dataset(np.column_stack([x, seq]), y), rounds)
    names = [f"f{j}" for j in range(6)]
    pre = Preprocess(names, [0.0] * 6, 1, 1.0, 0, [], 0.0, float(y.mean()), float(y.mean()), kind="gbdt")
    model = GbdtModel(pre, booster, ["seq_a", "seq_b", "seq_c"])
    return Scorer(LoadedModel("gbdt", pre, model), 4096, threads=1), x, seq


def test_the_tree_table_scores_as_lightgbm_does_with_missing_values_and_zeros():
    scorer, x, seq = _model()
    dump = scorer.model.booster.dump_model()
    assert TreeTable.supported(dump)
    table = TreeTable(dump)
    features = np.column_stack([x, seq]).astype(np.float64)
    features[::17, 2] = np.nan  # NaN where the split saw none (missing type None: treated as 0)
    expected = scorer.model.booster.predict(features, raw_score=True)
    assert np.allclose(table.full(features), expected, rtol=0, atol=1e-9)
    assert set(table.readers) <= set(range(9)) and len(table.trees_reading([0])) > 0


@pytest.mark.parametrize("share", [0.125, 1.0])  # the default rule, and every feature through the tree walk
def test_shuffled_scores_of_a_tree_model_equal_scoring_the_shuffled_rows_again(monkeypatch, share):
    import ctrops_explainer.shuffle as shuffle

    monkeypatch.setattr(shuffle, "SUBSET_SHARE", share)
    scorer, x, seq = _model(seed=1)
    fast = shuffled_scores(scorer, x, seq)
    slow = Shuffled(scorer, x, seq)
    assert isinstance(fast, TreeShuffled)
    rng = np.random.default_rng(3)
    for j in [*range(6), None]:
        order = rng.permutation(len(x))
        assert np.allclose(fast.scores(j, order), slow.scores(j, order), rtol=0, atol=1e-9), j
    assert np.array_equal(fast.x, x, equal_nan=True) and np.array_equal(slow.x, x, equal_nan=True)  # rows unchanged


def test_a_model_the_walk_does_not_cover_is_scored_again_in_full():
    scorer, x, seq = _model(seed=2, rounds=5)
    dump = scorer.model.booster.dump_model()
    dump["tree_info"][0]["num_cat"] = 1  # categorical splits are not walked here
    assert not TreeTable.supported(dump)
    lstm_like = type("LinearScorer", (), {"logits": lambda self, a, s: a.astype(np.float64).sum(axis=1)})()
    assert type(shuffled_scores(lstm_like, x, seq)) is Shuffled
