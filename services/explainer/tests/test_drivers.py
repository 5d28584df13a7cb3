"""Issue 13's bar on generated data whose drivers are known (ctrops_common.datagen variants).

A LightGBM (the challenger's kind of model, small and fast) is fitted on the training rows
of the trainer's split and explained with the explainer's defaults except sizes; the
held-out test then runs on the validation rows the model never saw. For each variant:
every planted driver has adjusted p < 0.01, ranks in the top 10 and its direction of
effect is the planted one; fewer than 10% of the non-drivers reach adjusted p < 0.05. On
the ``none`` variant (no signal at all) nothing is significant.
"""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from ctrops_common.model_loading import LoadedModel
from ctrops_common.splits import training_rows
from ctrops_common.testdata import variant_parquet
from ctrops_explainer.pipeline import ExplainConfig, explain

ROWS, CTR = 40_000, 0.25
CONFIG = ExplainConfig(bootstrap=300, permutation_rows=8_000, eval_rows=8_000, correlation_rows=10_000,
                       torch_threads=1)
# The challenger's shape (7 leaves, half the columns per tree), fewer rounds: seconds on one thread.
GBDT = {"num_leaves": 7, "feature_fraction": 0.5, "min_child_samples": 40, "learning_rate": 0.1}


@pytest.fixture(scope="module")
def explained(tmp_path_factory, gbdt_trainer):
    cache: dict[str, tuple[dict, dict]] = {}

    def run(variant: str) -> tuple[dict, dict]:
        if variant not in cache:
            root = tmp_path_factory.mktemp(variant)
            parquet, truth, _ = variant_parquet(root, variant, ROWS, seed=3, ctr=CTR)
            clicked = pq.read_table(parquet, columns=["clicked"]).column(0).to_numpy()
            features = [c for c in pq.read_schema(parquet).names if c not in ("seq", "clicked")]
            model = gbdt_trainer(parquet, features, root / "gbdt", rounds=200,
                                    rows=training_rows(clicked, 0.2, 42), params=GBDT)
            result = explain(LoadedModel("gbdt", model.preprocess, model), parquet, CONFIG)
            cache[variant] = (result, truth)
        return cache[variant]

    return run


def _planted_direction_holds(feature: dict, driver: dict) -> bool:
    effect = feature["effect"]
    if driver["feature"] == "seq":
        return effect["kind"] == "sequence"
    if "values" in driver:
        named = set(effect.get("values", []))
        return effect["kind"] == "values" and bool(named) and named <= {float(v) for v in driver["values"]}
    return effect["kind"] == "monotone" and effect["sign"] == driver["sign"]


@pytest.mark.parametrize("variant", ["mixed", "tabular", "hour"])
def test_planted_drivers_are_found_ranked_and_directed(explained, variant):
    result, truth = explained(variant)
    by_name = {f["feature"]: f for f in result["features"]}
    top10 = [f["feature"] for f in result["features"][:10]]
    for driver in truth["drivers"]:
        f = by_name[driver["feature"]]
        assert f["pValue"] < 0.01, (driver["feature"], f["pValue"], f["auc_drop"])
        assert driver["feature"] in top10, (driver["feature"], top10)
        assert _planted_direction_holds(f, driver), (driver, f["effect"])
    false = [c for c in truth["non_drivers"] if by_name[c]["pValue"] < 0.05]
    assert len(false) < 0.1 * len(truth["non_drivers"]), false
    assert by_name[truth["drivers"][0]["feature"]]["pValue"] == by_name[truth["drivers"][0]["feature"]]["p_value"]
    assert all(f["p_value_raw"] <= f["pValue"] for f in result["features"])  # BH never lowers a p-value


def test_mixed_seq_direction_names_the_planted_tokens(explained):
    result, truth = explained("mixed")
    seq = next(f for f in result["features"] if f["feature"] == "seq")
    planted = {int(t) for t in next(d for d in truth["drivers"] if d["feature"] == "seq")["tokens"]}
    assert set(seq["effect"]["tokens_raise"][:2]) & planted, seq["effect"]


def test_no_signal_means_no_significant_feature(explained):
    result, truth = explained("none")
    significant = [f["feature"] for f in result["features"] if f["pValue"] < 0.05]
    assert len(significant) <= 1, significant  # at most a stray false discovery (BH at 5%)
    assert result["significant_features"] == significant
    assert abs(result["permutation"]["baseline"] - 0.5) < 0.05


def test_the_method_is_stated_in_the_result(explained):
    result, _ = explained("hour")
    method = result["method"]
    assert method["attribution"] == "treeshap" and "Benjamini-Hochberg" in method["correction"]
    assert "validation" in method["test"] and "AUC" in method["null"]
    assert result["sample"]["validation_rows"] == 8_000 and result["permutation"]["rows"] == 8_000
    correlation = result["correlation"]
    assert correlation["threshold"] == 0.3 and correlation["pairs"] == []  # the generator's columns are independent
    assert "no pair" in correlation["pairs_note"]
    assert result["timings"]["treeshap_ms_per_row"] < 5
