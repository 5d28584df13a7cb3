"""The training loop on generated data with a planted signal: it learns at the frontend's settings,
it is reproducible, the step floor and the batch plan, embedding and scalar seq input, early
stopping keeps the best weights, and a stop request stops it."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from ctrops_common.events import TrainingConfig
from ctrops_common.ml import load_model, save_model
from ctrops_common.testdata import variant_parquet
from ctrops_trainer.data import apply_fill, read_training_file, split_rows
from ctrops_trainer.training import (
    LEVERS,
    Cancelled,
    TrainingError,
    categorical_features,
    plan_batches,
    predict_raw,
    resolve_device,
    train,
)

# 5 epochs on 8,000 rows (~630 clicks). Measured here: val AUC 0.666 after 5 epochs before issue 18's
# levers, 0.713 with them (the generator's own logit scores 0.79 on this data); the floor leaves
# room for noise.
AUC_FLOOR = 0.60
FAST = {"batch_size": 256, "learning_rate": 0.003, "max_seq_len": 64}
TIMING_KEYS = {"seconds", "samples_per_s"}
# The frontend's form values (issue 18); early stopping patience is the default (3).
FRONTEND = {"epochs": 10, "batch_size": 4096, "learning_rate": 0.001, "lstm_hidden": 64, "mlp_hidden": [256, 128],
            "dropout": 0.2, "downsampling": True, "validation_split": 0.2}


@pytest.fixture(scope="module")
def data(generated):
    return read_training_file(generated[0], FAST["max_seq_len"])


def test_five_epochs_learn_the_planted_signal(data):
    epochs_seen = []
    result = train(data, TrainingConfig(epochs=5, **FAST), on_epoch=lambda e, m: epochs_seen.append((e, m)))
    assert [e for e, _ in epochs_seen] == [1, 2, 3, 4, 5]
    aucs = [m["auc"] for _, m in epochs_seen]
    print("val AUC per epoch:", [round(a, 3) for a in aucs])
    assert max(aucs) >= AUC_FLOOR
    assert result.best_metrics["auc"] == max(aucs)
    for _, metrics in epochs_seen:  # every metric the contract and the dataset spec ask for
        for key in ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "auc", "ap", "logloss",
                    "calibration", "score", "precision", "recall", "f1", "threshold"):
            assert metrics[key] is not None and np.isfinite(metrics[key]), key
    # Probabilities are corrected back to the real click rate: predicted clicks ~ actual clicks.
    assert 0.5 < result.best_metrics["calibration"] < 2.0
    assert result.preprocess.train_rate == pytest.approx(1 / 3, abs=0.01)
    assert result.preprocess.base_rate == pytest.approx(data.labels.mean(), abs=0.01)


def test_same_seed_same_data_same_config_gives_the_same_metrics(data):
    quick = {**FAST, "max_seq_len": 16}
    config = TrainingConfig(epochs=2, seed=11, **quick)
    first = train(data, config).history
    second = train(data, config).history
    strip = lambda history: [{k: v for k, v in m.items() if k not in TIMING_KEYS} for m in history]  # noqa: E731
    assert strip(first) == strip(second)
    other = train(data, TrainingConfig(epochs=2, seed=12, **quick)).history
    assert strip(other) != strip(first)


def test_early_stopping_stops_and_keeps_the_best_weights(data):
    # A learning rate this high overfits within a few epochs, so validation AUC stops improving.
    config = TrainingConfig(epochs=15, early_stopping_patience=2, batch_size=128, learning_rate=0.03,
                            max_seq_len=16, seed=3)
    result = train(data, config)
    aucs = [m["auc"] for m in result.history]
    print("early stopping: val AUC per epoch", [round(a, 3) for a in aucs])
    assert result.epochs_run < 15
    assert result.epochs_run == result.best_epoch + 2  # stopped after `patience` epochs without a better AUC
    assert result.best_epoch == int(np.argmax(aucs)) + 1

    # The returned model is the best epoch's, not the last one's.
    split = split_rows(data.labels, config.validation_split, config.downsampling, config.seed)
    features = torch.from_numpy(apply_fill(data.features, np.array(result.preprocess.fill_values, np.float32)))
    idx = torch.from_numpy(split.val)
    p = predict_raw(result.model, features[idx], torch.from_numpy(data.tokens)[idx],
                    torch.from_numpy(data.lengths)[idx], result.preprocess.seq_scale, 4)
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(data.labels[split.val], p) == pytest.approx(max(aucs), abs=1e-6)


def test_a_stop_request_interrupts_training(data):
    calls = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(Cancelled):
        train(data, TrainingConfig(epochs=50, **FAST), should_stop=should_stop)


def test_the_device_setting_resolves_or_says_what_to_change():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    # A GPU that is not there is a clear failure, never a silent fall-back to the CPU.
    missing = f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"
    with pytest.raises(TrainingError, match="CTROPS_TRAINER_DEVICE"):
        resolve_device(missing)


def test_the_fitted_model_comes_back_on_the_cpu_whatever_device_trained_it(data):
    result = train(data, TrainingConfig(epochs=1, seed=5, **{**FAST, "max_seq_len": 16}), device="auto")
    assert result.device == str(resolve_device("auto"))
    assert {p.device.type for p in result.model.parameters()} == {"cpu"}
    assert {b.device.type for b in result.model.buffers()} == {"cpu"}
    # Usable as the explainer uses it: CPU tensors in, finite probabilities out.
    p = predict_raw(result.model, torch.zeros(4, data.features.shape[1]), torch.ones(4, 16, dtype=torch.int32),
                    torch.full((4,), 16), result.preprocess.seq_scale, 2)
    assert p.shape == (4,) and np.isfinite(p).all()


def test_a_batch_that_would_give_too_few_steps_is_made_smaller_and_says_why():
    plan = plan_batches(4096, 2_880, min_steps=32, min_batch=16)
    assert (plan.requested, plan.used, plan.steps_per_epoch, plan.train_rows_per_epoch) == (4096, 90, 32, 2_880)
    assert plan.reason == ("4,096 would give 1 optimizer step per epoch on 2,880 training rows; "
                           "at least 32 are needed to learn")
    # Enough steps already: the requested batch is used, with no reason to give.
    plan = plan_batches(256, 28_000, min_steps=32, min_batch=16)
    assert (plan.used, plan.steps_per_epoch, plan.reason) == (256, 110, None)
    # Never below the smallest batch: then fewer steps than the floor, and the reason says so.
    plan = plan_batches(4096, 300, min_steps=32, min_batch=16)
    assert (plan.used, plan.steps_per_epoch) == (16, 19)
    assert "no batch is made smaller than 16" in plan.reason
    # Never larger than asked, and the floor can be turned off (to measure it).
    assert plan_batches(20, 2_880, min_steps=32, min_batch=16).used == 20
    assert plan_batches(4096, 2_880, min_steps=0, min_batch=16).steps_per_epoch == 1


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """8,000 rows of the default (mixed) variant at 8% clicks, with each row's generating probability."""
    path, _, oracle = variant_parquet(tmp_path_factory.mktemp("mixed"), "mixed", 8000, seed=42, ctr=0.08)
    return read_training_file(path, 128), oracle


def test_the_frontend_settings_learn_close_to_the_oracle(mixed):
    """Issue 18: at the frontend's own settings (batch 4096!) the model learns. 8,000 rows at 8%
    clicks leave ~1,520 rows per epoch: batch 4096 would be one step per epoch; the floor makes
    it 23 rows x 66 steps. Measured here (2 threads): val AUC 0.713 against the oracle's 0.781
    (gap 0.068; ~500 training clicks are few for 117 features and a sequence), 16 s. On the 60k
    benchmark file the gap is 0.037-0.05 (bench/lstm_levers.py). The floor of 0.10 leaves
    room for seed and thread-count noise; without the step floor the gap is ~0.27."""
    data, oracle = mixed
    started = time.perf_counter()
    result = train(data, TrainingConfig(**FRONTEND))
    elapsed = time.perf_counter() - started
    oracle_auc = roc_auc_score(data.labels[result.split.val], oracle[result.split.val])
    auc = result.best_metrics["auc"]
    print(f"frontend settings: val AUC {auc:.4f}, oracle {oracle_auc:.4f}, per epoch "
          f"{[round(m['auc'], 3) for m in result.history]}, {elapsed:.1f} s, batch {result.batch}")
    assert auc >= oracle_auc - 0.10
    assert result.batch.requested == 4096 and result.batch.used < 4096 and result.batch.steps_per_epoch >= 32
    assert result.batch.train_rows_per_epoch == result.train_rows == len(result.split.train)
    assert "4,096 would give 1 optimizer step per epoch" in result.batch.reason
    assert result.preprocess.extra["batch_size_used"] == result.batch.used
    # val_probability: the best epoch's corrected probabilities, in split.val order.
    assert result.val_probability.dtype == np.float64 and result.val_probability.shape == result.split.val.shape
    assert roc_auc_score(data.labels[result.split.val], result.val_probability) == pytest.approx(auc, abs=1e-9)
    assert result.val_probability.sum() / data.labels[result.split.val].sum() == pytest.approx(
        result.best_metrics["calibration"])
    assert 0 < result.seconds <= elapsed
    assert result.preprocess.seq_encoding == "embedding" and result.preprocess.seq_scale == 1.0


def test_the_step_floor_is_what_makes_the_frontend_settings_learn(mixed):
    """4 epochs: with the floor 0.70, at one step per epoch 0.52 (measured here; every lever on
    and off on 60k rows is in bench/lstm_levers.py)."""
    data, _ = mixed
    config = TrainingConfig(**{**FRONTEND, "epochs": 4, "max_seq_len": 32})
    floor_on = train(data, config)
    floor_off = train(data, config, levers=dataclasses.replace(LEVERS, min_steps=0))
    print("step floor on/off:", floor_on.best_metrics["auc"], floor_off.best_metrics["auc"])
    assert floor_off.batch.steps_per_epoch == 1 and floor_off.batch.reason is None
    assert floor_on.best_metrics["auc"] > floor_off.best_metrics["auc"] + 0.05


@pytest.mark.parametrize("encoding", ["embedding", "scalar"])
def test_embedding_and_scalar_seq_input_both_train_and_round_trip(data, encoding, tmp_path: Path):
    config = TrainingConfig(epochs=2, seed=4, seq_encoding=encoding, **{**FAST, "max_seq_len": 16})
    result = train(data, config)
    pre = result.preprocess
    assert result.best_metrics["auc"] > 0.55
    if encoding == "embedding":
        assert (pre.seq_scale, pre.seq_vocab) == (1.0, LEVERS.seq_vocab)
        assert pre.seq_embedding_dim == LEVERS.seq_embedding_dim
        assert result.model.embedding is not None
    else:
        assert pre.seq_scale == float(data.tokens[result.split.train_all].max()) and pre.seq_vocab == 0
        assert result.model.embedding is None and result.model.lstm.input_size == 1
    save_model(tmp_path / "model", result.model, pre)
    loaded, loaded_pre = load_model(tmp_path / "model")
    assert loaded_pre == pre
    # The loaded model scores the validation rows exactly as the best epoch did.
    features = torch.from_numpy(apply_fill(data.features, np.array(pre.fill_values, np.float32)))
    idx = torch.from_numpy(result.split.val)
    p = predict_raw(loaded, features[idx], torch.from_numpy(data.tokens)[idx], torch.from_numpy(data.lengths)[idx],
                    pre.seq_scale, 4)
    assert roc_auc_score(data.labels[result.split.val], p) == pytest.approx(result.best_metrics["auc"], abs=1e-9)


def test_low_cardinality_integer_features_are_found_as_categorical():
    rows = np.arange(6)
    features = np.array([
        # hour-like (3 integer values), continuous, constant, integers with a missing value, too many values
        [19, 0.5, 1, 2, 0], [20, 1.5, 1, np.nan, 1], [19, 2.5, 1, 3, 2],
        [21, 3.5, 1, 2, 3], [20, 4.5, 1, 3, 4], [99, 5.5, 1, 3, 5],  # row 5 is not a training row
    ], dtype=np.float32)
    found = categorical_features(features, rows[:5], max_categories=4)
    assert found == {0: [19.0, 20.0, 21.0], 3: [2.0, 3.0]}
    assert categorical_features(features, rows[:5], max_categories=0) == {}
