"""The training loop: TabularSeqModel fitted on prepared arrays, metrics per epoch, best weights kept.

Pure work (no Kafka, no files): ``train`` takes ``TrainingData`` and a ``TrainingConfig``
and returns the fitted model with its ``Preprocess``. Per batch there is no Python work
per row: rows are gathered by index tensors, sorted by sequence length, and the LSTM
runs over a few length-sorted chunks, each trimmed to its own longest sequence, with the
output taken at each row's last real step (same result as a packed sequence, much
cheaper on CPU). BatchNorm and the MLP still see the whole random batch.

``device`` ("auto", "cpu", "cuda", "cuda:N") places the model and the prepared tensors; the
fitted model comes back on the CPU, where the explainer and the reporter use it. On CUDA a
seed repeats a run closely but not bit for bit (cuDNN's LSTM backward is not deterministic).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ctrops_common.events import TrainingConfig
from ctrops_common.ml import Preprocess, TabularSeqModel

from .data import TrainingData, apply_fill, fill_values, split_rows
from .metrics import validation_metrics

EVAL_BATCH = 16_384


class Cancelled(Exception):
    """The run was asked to stop."""


class TrainingError(Exception):
    """Training cannot go on with this config; the message says what to change."""


def resolve_device(requested: str) -> torch.device:
    """``requested`` as a torch device; "auto" is the first CUDA device when torch sees one."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise TrainingError(f"the trainer is set to train on {requested} (CTROPS_TRAINER_DEVICE), but torch "
                                f"sees no CUDA device here: set CTROPS_TRAINER_DEVICE to auto or cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise TrainingError(f"the trainer is set to train on {requested} (CTROPS_TRAINER_DEVICE), but torch "
                                f"sees {torch.cuda.device_count()} CUDA device(s): pick one below that, or auto")
    return device


@dataclass
class TrainResult:
    model: TabularSeqModel
    preprocess: Preprocess
    best_epoch: int
    best_metrics: dict[str, float | None]
    epochs_run: int
    history: list[dict[str, float | None]] = field(default_factory=list)
    train_rows: int = 0
    val_rows: int = 0
    device: str = "cpu"


def seq_states(model: TabularSeqModel, tokens: torch.Tensor, lengths: torch.Tensor, scale: float,
               chunks: int) -> torch.Tensor:
    """LSTM states of rows already sorted by length, over ``chunks`` trimmed slices."""
    rows = tokens.shape[0]
    parts = []
    bounds = np.linspace(0, rows, min(chunks, rows) + 1).round().astype(int)
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        if hi <= lo:
            continue
        longest = int(lengths[hi - 1])  # sorted ascending: the last row is the longest
        if longest == 0:
            parts.append(tokens.new_zeros((hi - lo, model.lstm.hidden_size), dtype=torch.float32))
            continue
        seq = tokens[lo:hi, :longest].to(torch.float32) / scale
        parts.append(model.encode_seq(seq, lengths[lo:hi]))
    return torch.cat(parts) if len(parts) > 1 else parts[0]


def predict_raw(model: TabularSeqModel, features: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor,
                scale: float, chunks: int) -> np.ndarray:
    """Probabilities at the training click rate (not corrected), in the rows' own order."""
    model.eval()
    order = torch.argsort(lengths, stable=True)
    out = torch.empty(features.shape[0], dtype=torch.float32, device=features.device)
    with torch.no_grad():
        for lo in range(0, len(order), EVAL_BATCH):
            idx = order[lo:lo + EVAL_BATCH]
            state = seq_states(model, tokens[idx], lengths[idx], scale, chunks)
            out[idx] = torch.sigmoid(model.head(features[idx], state))
    return out.cpu().numpy().astype(np.float64)


def train(
    data: TrainingData,
    config: TrainingConfig,
    *,
    seq_chunks: int = 4,
    device: str = "cpu",
    on_epoch: Callable[[int, dict[str, float | None]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Fit the model; ``on_epoch(epoch, metrics)`` after each epoch; ``should_stop()`` polled per batch."""
    where = resolve_device(device)
    torch.manual_seed(config.seed)
    split = split_rows(data.labels, config.validation_split, config.downsampling, config.seed)
    medians = fill_values(data.features, split.train)
    features = torch.from_numpy(apply_fill(data.features, medians)).to(where)
    tokens = torch.from_numpy(data.tokens).to(where)
    lengths = torch.from_numpy(data.lengths).to(where)
    labels = torch.from_numpy(data.labels).to(where)
    train_tokens = data.tokens[split.train]
    seq_scale = float(max(1, int(train_tokens.max()) if train_tokens.size else 1))

    model = TabularSeqModel(features.shape[1], config.lstm_hidden, config.mlp_hidden, config.dropout).to(where)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    loss_fn = nn.BCEWithLogitsLoss(reduction="sum")
    rng = np.random.default_rng(config.seed + 1)  # batch order; the split used ``seed`` itself

    val_idx = torch.from_numpy(split.val).to(where)
    val_labels = data.labels[split.val]
    n_batches = max(1, math.ceil(len(split.train) / config.batch_size))

    history: list[dict[str, float | None]] = []
    best_key = -math.inf
    best_state: dict[str, torch.Tensor] | None = None
    best_epoch = 0
    best_metrics: dict[str, float | None] = {}
    stale_epochs = 0
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        model.train()
        loss_sum = 0.0
        correct = 0
        # Equal-sized batches (never a last batch of one row, which BatchNorm cannot train on).
        for batch in np.array_split(rng.permutation(split.train), n_batches):
            if should_stop is not None and should_stop():
                raise Cancelled()
            batch = batch[np.argsort(data.lengths[batch], kind="stable")]
            idx = torch.from_numpy(batch).to(where)
            target = labels[idx]
            state = seq_states(model, tokens[idx], lengths[idx], seq_scale, seq_chunks)
            logits = model.head(features[idx], state)
            loss = loss_fn(logits, target)
            optimizer.zero_grad(set_to_none=True)
            (loss / len(batch)).backward()
            optimizer.step()
            loss_sum += float(loss.detach())
            correct += int(((logits.detach() > 0) == (target > 0.5)).sum())
        train_seconds = time.perf_counter() - started
        if not math.isfinite(loss_sum):
            raise TrainingError(
                f"training diverged in epoch {epoch} (the loss is not a number): "
                f"lower learning_rate (now {config.learning_rate})"
            )

        p_raw = predict_raw(model, features[val_idx], tokens[val_idx], lengths[val_idx], seq_scale, seq_chunks)
        metrics: dict[str, float | None] = {
            "train_loss": loss_sum / len(split.train),
            "train_accuracy": correct / len(split.train),
            **validation_metrics(val_labels, p_raw, split.train_rate, split.base_rate),
            "seconds": time.perf_counter() - started,
            "samples_per_s": len(split.train) / train_seconds if train_seconds > 0 else None,
        }
        history.append(metrics)
        key = metrics["auc"] if metrics["auc"] is not None else -float(metrics["val_loss"] or 0.0)
        if key > best_key:
            best_key, best_epoch, best_metrics = key, epoch, metrics
            best_state = copy.deepcopy(model.state_dict())
            stale_epochs = 0
        else:
            stale_epochs += 1
        if on_epoch is not None:
            on_epoch(epoch, metrics)
        if config.early_stopping_patience is not None and stale_epochs >= config.early_stopping_patience:
            break

    assert best_state is not None  # at least one epoch ran
    model.load_state_dict(best_state)
    model.to("cpu").eval()
    preprocess = Preprocess(
        feature_columns=data.feature_columns,
        fill_values=[float(v) for v in medians],
        max_seq_len=data.max_seq_len,
        seq_scale=seq_scale,
        lstm_hidden=config.lstm_hidden,
        mlp_hidden=list(config.mlp_hidden),
        dropout=config.dropout,
        base_rate=split.base_rate,
        train_rate=split.train_rate,
        threshold=float(best_metrics.get("threshold") or 0.5),
        extra={
            "seed": config.seed,
            "best_epoch": best_epoch,
            "downsampling": config.downsampling,
            "validation_split": config.validation_split,
            "train_rows": int(len(split.train)),
            "val_rows": int(len(split.val)),
            "ignored_columns": data.ignored_columns,
            "truncated_rows": data.truncated_rows,
            "threshold_rule": "corrected probability maximising F1 on the validation rows",
        },
    )
    return TrainResult(
        model=model,
        preprocess=preprocess,
        best_epoch=best_epoch,
        best_metrics=best_metrics,
        epochs_run=len(history),
        history=history,
        train_rows=int(len(split.train)),
        val_rows=int(len(split.val)),
        device=str(where),
    )
