"""The gradient-boosting challenger: LightGBM on the LSTM's split, trained in every run.

Pure work (no Kafka, no files): ``train_challenger`` takes the run's ``TrainingData`` and
the ``Split`` the LSTM used and returns a ``GbdtModel`` with its validation metrics.

- Rows: it fits on ``split.train_all``, every training row, never down-sampled. The LSTM
  down-samples to make an epoch cheap; a histogram GBDT needs no such economy (48k rows x
  ~320 columns fit in seconds), and keeping 2 non-clicks per click drops about 95% of the
  non-clicks at 2% CTR with what they say about the features (``bench/challenger.py
  --downsampled``: lower val AUC on 7 of 8 generated sets, by up to 0.022) and leaves
  probabilities that must be corrected back to the base rate. Fitted at the base rate,
  ``train_rate == base_rate`` and no correction applies.
- Missing values stay NaN: LightGBM learns at each split which side they go to.
- Features: the tabular columns plus ``ctrops_common.gbdt.seq_features`` of the same
  ``seq`` window the LSTM sees, with a vocabulary of frequent recent tokens learned from the
  training rows only.
- Early stopping on the validation rows (``split.val``, the rows the LSTM keeps its best
  epoch on): boosting stops when validation AUC has not improved for ``PATIENCE`` rounds
  and the model is cut to the best round, as the LSTM keeps its best epoch. Both models'
  validation numbers are therefore chosen on the rows they are reported on, alike.
- Deterministic: LightGBM's ``deterministic`` mode, the config's seed, a fixed thread
  count and column-wise histograms; the same data, split and config give the same model.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np

from ctrops_common.events import TrainingConfig
from ctrops_common.gbdt import GbdtModel, SeqFeatureSpec, learn_vocab, seq_features
from ctrops_common.ml import Preprocess

from .data import Split, TrainingData, fill_values
from .metrics import validation_metrics
from .training import Cancelled

MAX_ROUNDS = 1_000  # an upper bound; early stopping ends a run far sooner (100-400 rounds measured)
PATIENCE = 50  # rounds without a better validation AUC before boosting stops
VOCAB_SIZE = 64  # frequent recent tokens counted by value (the rest are hashed)

# Chosen by measurement on the generator's variants (mixed, tabular, seq, hour; 0.5-5% clicks;
# notes in docs/training.md): small trees (7 leaves), half the features per tree (about 300
# columns, most of them noise in any one data set), and a leaf floor in hessian rather than
# rows: at p ~ 0.02 a row weighs p(1-p) ~ 0.02, so 2.0 asks for about 100 rows' worth, and
# the floor follows the click rate. Differences between the settings tried were within the
# validation noise of one set (+-0.01 AUC at 240 validation clicks); these were best on average.
PARAMS: dict[str, object] = {
    "objective": "binary",
    "metric": "auc",
    "learning_rate": 0.05,
    "num_leaves": 7,
    "min_child_samples": 20,
    "min_sum_hessian_in_leaf": 2.0,
    "feature_fraction": 0.5,
    "lambda_l2": 1.0,
    "max_bin": 255,
}


@dataclass
class ChallengerResult:
    model: GbdtModel
    metrics: dict[str, float | None]  # validation metrics of the best round (metrics.validation_metrics)
    val_probability: np.ndarray  # (len(split.val),) float64 click probability, in split.val order
    best_iteration: int  # boosting rounds kept
    iterations_run: int  # rounds trained before early stopping
    seconds: float  # seq features + fit + validation
    train_rows: int = 0
    val_rows: int = 0


def challenger_params(seed: int, threads: int) -> dict[str, object]:
    return {
        **PARAMS,
        "seed": seed,
        "deterministic": True,
        "force_col_wise": True,  # no timing-based choice between row- and column-wise histograms
        "num_threads": threads,
        "verbosity": -1,
    }


def train_challenger(
    data: TrainingData,
    split: Split,
    config: TrainingConfig,
    *,
    threads: int = 2,
    should_stop: Callable[[], bool] | None = None,
) -> ChallengerResult:
    """Fit LightGBM on ``split.train_all``, early-stopped on ``split.val``; ``should_stop()`` polled per round."""
    started = time.perf_counter()

    def check_stop() -> None:
        if should_stop is not None and should_stop():
            raise Cancelled()

    check_stop()
    train_rows, val_rows = split.train_all, split.val
    spec = SeqFeatureSpec(
        vocab=learn_vocab(data.tokens[train_rows], data.lengths[train_rows], SeqFeatureSpec.recent, VOCAB_SIZE)
    )
    names = spec.names()
    feature_names = [_safe_name(c) for c in data.feature_columns] + names

    def matrix(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(tabular + seq features, seq features) of ``rows``: built per part, never for the whole file."""
        seq = seq_features(data.tokens[rows], data.lengths[rows], spec)
        return np.concatenate([data.features[rows], seq], axis=1), seq

    train_x, _ = matrix(train_rows)
    val_x, val_seq = matrix(val_rows)
    check_stop()
    val_y = data.labels[val_rows]
    train_set = lgb.Dataset(train_x, data.labels[train_rows], feature_name=feature_names, free_raw_data=True)
    val_set = lgb.Dataset(val_x, val_y, reference=train_set)
    del train_x, val_x  # the Datasets hold them until they are binned, then free them

    rounds = [0]

    def poll(env: lgb.callback.CallbackEnv) -> None:
        rounds[0] = env.iteration + 1
        check_stop()

    booster = lgb.train(
        challenger_params(config.seed, threads),
        train_set,
        num_boost_round=MAX_ROUNDS,
        valid_sets=[val_set],
        valid_names=["val"],
        callbacks=[poll, lgb.early_stopping(PATIENCE, first_metric_only=True, verbose=False)],
    )
    iterations_run = rounds[0]
    best_iteration = booster.best_iteration or iterations_run
    # Keep only the best rounds (lgb.train has already cut to them; this makes it explicit):
    # the model in memory is exactly the one saved.
    booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best_iteration))

    base_rate = split.base_rate
    preprocess = Preprocess(
        feature_columns=list(data.feature_columns),
        fill_values=[float(v) for v in fill_values(data.features, train_rows)],
        max_seq_len=data.max_seq_len,
        seq_scale=1.0,
        lstm_hidden=0,
        mlp_hidden=[],
        dropout=0.0,
        base_rate=base_rate,
        train_rate=base_rate,
        kind="gbdt",
        extra={
            "seed": config.seed,
            "best_iteration": best_iteration,
            "iterations_run": iterations_run,
            "params": {k: v for k, v in PARAMS.items()},
            "seq_features": spec.to_json(),
            "feature_names": feature_names,
            "validation_split": config.validation_split,
            "downsampling": False,
            "train_rows": int(len(train_rows)),
            "val_rows": int(len(val_rows)),
            "ignored_columns": data.ignored_columns,
            "truncated_rows": data.truncated_rows,
            "missing_values": "NaN (LightGBM's learned missing-value branches); filled values score as values",
            "threshold_rule": "probability maximising F1 on the validation rows",
        },
    )
    model = GbdtModel(preprocess=preprocess, booster=booster, seq_feature_names=names)
    # Scored through the model's interface (encode_seq is seq_features with the saved spec).
    logits = model.logits(data.features[val_rows], val_seq)
    val_probability = 1.0 / (1.0 + np.exp(-logits))
    metrics = validation_metrics(val_y, val_probability, base_rate, base_rate)
    preprocess.threshold = float(metrics.get("threshold") or 0.5)
    return ChallengerResult(
        model=model,
        metrics=metrics,
        val_probability=val_probability,
        best_iteration=int(best_iteration),
        iterations_run=int(iterations_run),
        seconds=time.perf_counter() - started,
        train_rows=int(len(train_rows)),
        val_rows=int(len(val_rows)),
    )


def _safe_name(name: str) -> str:
    """LightGBM refuses JSON special characters in feature names; the columns keep theirs in preprocess."""
    return "".join("_" if c in '[]{}":,' else c for c in name)
