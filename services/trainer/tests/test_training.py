"""The training loop on generated data with a planted signal: it learns, it is reproducible,
early stopping keeps the best weights, and a stop request stops it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ctrops_common.events import TrainingConfig
from ctrops_trainer.data import apply_fill, read_training_file, split_rows
from ctrops_trainer.training import Cancelled, TrainingError, predict_raw, resolve_device, train

# 5 epochs on 8,000 rows (~630 clicks). Measured here: val AUC 0.666 after 5 epochs (the
# generator's own logit scores 0.79 on this data); the floor leaves room for noise.
AUC_FLOOR = 0.60
FAST = {"batch_size": 256, "learning_rate": 0.003, "max_seq_len": 64}
TIMING_KEYS = {"seconds", "samples_per_s"}


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
