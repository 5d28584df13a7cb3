"""A run's outcome from its two models: which one is the champion, and how sure the comparison is.

Pure work (no files, no Kafka): the LSTM+MLP result and the gradient-boosting challenger's
are compared on the same validation rows with a paired DeLong test of their AUCs, and the
one with the higher validation AUC becomes the run's champion (the LSTM on a tie, or when
neither has an AUC). The returned dict is what ``result.json`` holds and what
``training.done`` is built from; its ``models`` and ``comparison`` entries validate as
``ModelResult`` and ``AucComparison`` of ``ctrops_common.events``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ctrops_common.auc_stats import auc_ci, delong_paired
from ctrops_common.events import AucComparison, ModelMetrics, ModelResult, TrainingConfig

from .data import TrainingData

LABELS = {"lstm": "LSTM+MLP", "gbdt": "LightGBM"}


def model_location(run_id: str, kind: str) -> str:
    """A model's folder relative to the file store root."""
    return f"runs/{run_id}/model/{kind}"


def compare(labels: np.ndarray, p_lstm: np.ndarray, p_gbdt: np.ndarray) -> AucComparison | None:
    """Paired DeLong test on the validation rows; None when they hold one class only."""
    y = np.asarray(labels, dtype=np.float64)
    clicks = int(y.sum())
    if clicks == 0 or clicks == len(y):
        return None
    test = delong_paired(y, p_lstm, p_gbdt)
    return AucComparison(
        auc_lstm=test.auc_a, auc_gbdt=test.auc_b, difference=test.difference,
        ci_low=test.ci_low, ci_high=test.ci_high, p_value=test.p_value,
        val_rows=len(y), val_clicks=clicks,
    )


def auc_evidence(labels: np.ndarray, probability: np.ndarray) -> dict[str, Any]:
    """The validation AUC's DeLong 95% interval and the rows it rests on (no interval with one class)."""
    y = np.asarray(labels, dtype=np.float64)
    clicks = int(y.sum())
    evidence: dict[str, Any] = {"val_rows": len(y), "val_clicks": clicks}
    if 0 < clicks < len(y):
        interval = auc_ci(y, probability)
        evidence.update(auc_ci_low=interval.low, auc_ci_high=interval.high)
    return evidence


def choose_champion(lstm_auc: float | None, gbdt_auc: float | None) -> str:
    if gbdt_auc is not None and (lstm_auc is None or gbdt_auc > lstm_auc):
        return "gbdt"
    return "lstm"


def summarise(run_id: str, config: TrainingConfig, data: TrainingData, lstm, challenger) -> dict[str, Any]:
    """``lstm``: a ``training.TrainResult``; ``challenger``: a ``challenger.ChallengerResult``."""
    split = lstm.split
    y_val = data.labels[split.val]
    models = {
        "lstm": ModelResult(
            kind="lstm", label=LABELS["lstm"], metrics=ModelMetrics.model_validate(lstm.best_metrics),
            model_location=model_location(run_id, "lstm"), best_iteration=lstm.best_epoch,
            iterations_run=lstm.epochs_run, duration_s=lstm.seconds, **auc_evidence(y_val, lstm.val_probability),
        ),
        "gbdt": ModelResult(
            kind="gbdt", label=LABELS["gbdt"],
            metrics=ModelMetrics.model_validate({**challenger.metrics, "seconds": challenger.seconds}),
            model_location=model_location(run_id, "gbdt"), best_iteration=challenger.best_iteration,
            iterations_run=challenger.iterations_run, duration_s=challenger.seconds,
            **auc_evidence(y_val, challenger.val_probability),
        ),
    }
    comparison = compare(y_val, lstm.val_probability, challenger.val_probability)
    champion = choose_champion(models["lstm"].metrics.auc, models["gbdt"].metrics.auc)
    return {
        "champion": champion,
        "metrics": models[champion].metrics.model_dump(mode="json"),
        "model_location": models[champion].model_location,
        "models": [m.model_dump(mode="json") for m in models.values()],
        "comparison": comparison.model_dump(mode="json") if comparison is not None else None,
        "batch": lstm.batch.model_dump(mode="json"),
        "best_epoch": lstm.best_epoch,
        "epochs_run": lstm.epochs_run,
        "train_rows": lstm.train_rows,
        "val_rows": lstm.val_rows,
        "base_rate": lstm.preprocess.base_rate,
        "train_rate": lstm.preprocess.train_rate,
        "seq_scale": lstm.preprocess.seq_scale,
        "features": len(lstm.preprocess.feature_columns),
        "device": lstm.device,
        "seed": config.seed,
    }
