"""The held-out permutation test: AUC placements, its null behaviour, Benjamini-Hochberg, and directions."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from ctrops_explainer.attribution import direction_of, importance_with_interval
from ctrops_explainer.heldout import benjamini_hochberg, heldout_permutation, placements


class LinearScorer:
    """A stand-in model: logit = x @ coef (the sequence state is ignored)."""

    def __init__(self, coef: np.ndarray) -> None:
        self.coef = coef
        self.batch_rows = 4096

    def logits(self, x_tab: np.ndarray, states: np.ndarray) -> np.ndarray:
        return x_tab.astype(np.float64) @ self.coef

    def probability(self, logits: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-logits))


def test_placements_give_sklearns_auc_with_ties():
    rng = np.random.default_rng(0)
    y = (rng.random(500) < 0.2).astype(np.int8)
    scores = np.round(rng.normal(size=500) + y, 1)  # many ties
    auc, v10, v01 = placements(y, scores)
    assert np.isclose(auc, roc_auc_score(y, scores)) and np.isclose(v10.mean(), v01.mean())


def test_benjamini_hochberg_against_hand_computed_values():
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.5])
    # sorted 0.005, 0.01, 0.03, 0.04, 0.5 -> x5/1, x5/2, x5/3, x5/4, x5/5 = .025 .025 .05 .05 .5, then monotone
    assert np.allclose(benjamini_hochberg(p), [0.025, 0.05, 0.05, 0.025, 0.5])
    assert np.all(benjamini_hochberg(np.array([0.9, 0.99])) <= 1.0)


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Column 0 drives clicks; columns 1-40 are noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 41)).astype(np.float32)
    y = (rng.random(n) < 1 / (1 + np.exp(-(-1.5 + 1.0 * x[:, 0])))).astype(np.int8)
    return x, y


def test_a_driver_is_found_and_features_the_model_uses_without_signal_are_not():
    x, y = _data(4000, 1)
    # The model leans on every noise column (as an overfitted model would) but they carry nothing on these rows.
    coef = np.r_[1.0, np.full(40, 0.3)]
    result = heldout_permutation(LinearScorer(coef), x, np.zeros((len(y), 1)), y,
                                 [f"f{j}" for j in range(41)], repeats=2, bootstrap=300, seed=0)
    adjusted = benjamini_hochberg(result.p_raw)
    assert adjusted[0] < 1e-6 and result.drop[0] > 0.05
    assert result.ci[0, 0] > 0 and result.ci[0, 0] <= result.drop[0] <= result.ci[0, 1]
    assert np.sum(adjusted[1:] < 0.05) <= 2  # the noise columns: at most a stray false discovery
    assert result.p_bootstrap[0] == 1 / 301  # no resample shows a drop <= 0


def test_raw_p_values_of_noise_features_are_roughly_uniform():
    below = []
    for seed in range(3):
        x, y = _data(3000, 10 + seed)
        coef = np.r_[1.0, np.random.default_rng(seed).normal(0, 0.3, 40)]
        result = heldout_permutation(LinearScorer(coef), x, np.zeros((len(y), 1)), y,
                                     [f"f{j}" for j in range(41)], repeats=2, bootstrap=100, seed=seed)
        below.extend(result.p_raw[1:] < 0.1)
    assert 0.02 < np.mean(below) < 0.2  # about 10% of 120 noise tests below 0.1, as a valid test gives


def test_a_feature_the_model_ignores_has_p_one():
    x, y = _data(1000, 2)
    result = heldout_permutation(LinearScorer(np.r_[1.0, np.zeros(40)]), x, np.zeros((len(y), 1)), y,
                                 [f"f{j}" for j in range(41)], repeats=1, bootstrap=100, seed=0)
    assert np.all(result.drop[1:] == 0) and np.all(result.p_raw[1:] == 1.0)


def test_direction_of_a_code_names_the_values_that_raise_clicks():
    rng = np.random.default_rng(3)
    hour = rng.integers(0, 24, 5000).astype(float)
    attribution = np.where(np.isin(hour, [19, 20, 21]), 0.8, -0.2) + rng.normal(0, 0.05, 5000)
    clicked = (rng.random(5000) < np.where(np.isin(hour, [19, 20, 21]), 0.3, 0.1)).astype(np.int8)
    d = direction_of(hour, attribution, clicked)
    assert d["kind"] == "values" and set(d["values"]) == {19.0, 20.0, 21.0}
    assert d["text"].startswith("values ") and d["text"].endswith("raise clicks")
    assert d["ctr_named"] > d["ctr_rest"]


def test_direction_of_a_quantity_follows_the_sign_of_its_attribution():
    rng = np.random.default_rng(4)
    value = rng.normal(size=3000)
    clicked = np.zeros(3000, dtype=np.int8)
    assert direction_of(value, -0.5 * value, clicked)["text"] == "lower values raise clicks"
    rising = direction_of(value, 0.5 * value + rng.normal(0, 0.1, 3000), clicked)
    assert rising["sign"] == 1 and rising["text"] == "higher values raise clicks"
    assert direction_of(value, rng.normal(size=3000), clicked)["kind"] == "mixed"
    assert direction_of(np.ones(3000), value, clicked)["kind"] == "none"


def test_importance_is_relative_and_its_interval_brackets_it():
    rng = np.random.default_rng(5)
    attribution = rng.normal(size=(400, 3)) * np.array([1.0, 0.3, 0.01])
    importance, interval, raw = importance_with_interval(attribution, bootstrap=300, seed=0)
    assert importance[0] == 1.0 and 0.2 < importance[1] < 0.4 and importance[2] < 0.02
    assert np.all(interval[:, 0] <= importance) and np.all(importance <= interval[:, 1])
    assert np.isclose(raw[1], np.abs(attribution[:, 1]).mean())


def test_features_a_tree_model_never_splits_on_are_skipped_with_the_same_result():
    """``Scorer.unused`` finds the columns no split reads; skipping them changes no number of the test."""
    import lightgbm as lgb

    from ctrops_common.gbdt import GbdtModel
    from ctrops_common.ml import Preprocess
    from ctrops_common.model_loading import LoadedModel
    from ctrops_explainer.scoring import Scorer

    x, y = _data(3000, 4)
    names = [f"f{j}" for j in range(x.shape[1])]
    booster = lgb.train({"objective": "binary", "num_leaves": 3, "learning_rate": 0.2, "verbose": -1,
                         "num_threads": 1, "seed": 0, "min_data_in_leaf": 50}, lgb.Dataset(x, y), 4)
    used = booster.feature_importance("split") > 0
    assert used[0] and not used.all()  # the driver is read, most noise columns are not
    pre = Preprocess(names, [0.0] * len(names), 1, 1.0, 0, [], 0.0, float(y.mean()), float(y.mean()), kind="gbdt")
    scorer = Scorer(LoadedModel("gbdt", pre, GbdtModel(pre, booster, [])), 4096, threads=2)
    assert scorer.model.threads == 2
    skip = scorer.unused([*names, "seq"])
    assert np.array_equal(skip[:-1], ~used) and skip[-1]  # no seq_* column at all: the sequence is unused
    states = np.zeros((len(y), 0), dtype=np.float32)
    full = heldout_permutation(scorer, x, states, y, names, 2, 200, 7)
    fast = heldout_permutation(scorer, x, states, y, names, 2, 200, 7, skip=skip[:-1])
    for field in ("drop", "se", "p_raw", "ci", "p_bootstrap", "drop_std"):
        assert np.array_equal(getattr(full, field), getattr(fast, field)), field
    assert np.all(fast.p_raw[~used] == 1.0) and np.all(fast.drop[~used] == 0.0)
