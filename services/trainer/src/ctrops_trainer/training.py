"""The training loop: TabularSeqModel fitted on prepared arrays, metrics per epoch, best weights kept.

Pure work (no Kafka, no files): ``train`` takes ``TrainingData`` and a ``TrainingConfig``
and returns the fitted model with its ``Preprocess``. Per batch there is no Python work
per row: rows are gathered by index tensors, sorted by sequence length, and the LSTM
runs over a few length-sorted chunks, each trimmed to its own longest sequence, with the
output taken at each row's last real step (same result as a packed sequence, much
cheaper on CPU). BatchNorm and the MLP still see the whole random batch.

What makes the model learn at the frontend's settings on files of 20k-600k rows (each
measured on and off in bench/lstm_levers.py, figures in docs/training.md):
- fresh negatives: with down-sampling, every epoch fits on all training clicks and a new
  set of twice as many non-clicks (``Split.epoch_rows``);
- a floor on optimizer steps per epoch (``Levers.min_steps``): a batch that would give
  fewer steps is made smaller (never below ``Levers.min_batch``), and ``BatchPlan`` says so;
- ``seq`` tokens through a hashed, learned embedding (``config.seq_encoding``);
- each numeric feature also enters the MLP piecewise-linearly over 8 quantile bins of the
  training rows (``Levers.ple_bins``; edges saved with the model, applied inside ``head``);
- AdamW with a one-cycle learning-rate schedule whose peak is ``config.learning_rate``;
- early stopping on validation AUC, keeping the best epoch.

Validation runs over every validation row every epoch. Those rows never change, so they
are gathered and sorted by sequence length once per run, not once per epoch.

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

from ctrops_common.events import BatchPlan, TrainingConfig
from ctrops_common.ml import (Preprocess, TabularSeqModel, correct_probability, fit_input_transform,
                              fit_ple_edges)

from .data import NEGATIVES_PER_POSITIVE, Split, TrainingData, apply_fill, fill_values, split_rows
from .metrics import validation_metrics

MIN_CHUNK_ROWS = 1024 # fewest rows per length-sorted LSTM chunk (seq_states)
EVAL_BATCH = 2_048  # validation rows per forward pass: length-sorted blocks, each trimmed to its longest


@dataclass(frozen=True)
class Levers:
    """Training choices that are not config keys. The defaults are what the trainer uses; the
    others exist to measure each choice on and off (bench/lstm_levers.py)."""

    min_steps: int = 32  # floor on optimizer steps per epoch; 0 turns the floor off
    min_batch: int = 16  # the floor never makes a batch smaller than this
    negatives_per_positive: int = NEGATIVES_PER_POSITIVE  # down-sampling's non-clicks per click in an epoch
    fresh_negatives: bool = True  # down-sampling draws new non-clicks each epoch (False: one fixed subset)
    schedule: str = "onecycle"  # "onecycle" (warm-up to config.learning_rate, cosine down) or "constant"
    warmup: float = 0.3  # share of the run's steps spent warming up (one-cycle)
    weight_decay: float = 0.0  # AdamW's decoupled weight decay (0, the default: plain Adam; measured no gain)
    seq_vocab: int = 2**14  # hash buckets of the token embedding (power of two)
    seq_embedding_dim: int = 32  # width of a token's learned vector
    max_categories: int = 32  # integer features with 2..this many training values also get an embedding (0: off)
    category_dim: int = 4  # width of a categorical value's learned vector
    input_transform: str = "none"  # numeric inputs before BatchNorm: "none", "quantile" (rank-Gauss) or "robust"
    input_knots: int = 64  # points of the quantile transform per feature
    input_dropout: float = 0.0  # dropout on the BatchNorm-scaled numeric inputs while training
    ema: float = 0.0  # >0: validate and keep an exponential moving average of the weights (decay per step)
    ple_bins: int = 8  # >0: each feature also enters the MLP piecewise-linearly over this many quantile bins
    cross_layers: int = 0  # low-rank DCN-v2 cross layers over the MLP's input (0: none)
    cross_rank: int = 32  # rank of each cross layer
    seq_pool: int = 0  # >0: this many most recent token vectors, age-weighted, go to the MLP beside the LSTM state
    tabular_norm: str = "batch"  # "batch" (BatchNorm on the numeric inputs) or "none" (the input transform's scale)


def categorical_features(features: np.ndarray, rows: np.ndarray, max_categories: int) -> dict[int, list[float]]:
    """Columns whose training values (``rows``, missing ones aside) are 2..``max_categories``
    distinct integers -> those values. An MLP on one BatchNorm-scaled number finds "hour in
    19..22" or "ad set 3 or 7" only by placing several ReLU kinks exactly; a learned vector
    per value finds it at once."""
    found: dict[int, list[float]] = {}
    if not max_categories:
        return found
    subset = features[rows]
    for column in range(subset.shape[1]):
        x = subset[:, column]
        x = x[np.isfinite(x)]
        if x.size == 0 or not np.array_equal(x, np.round(x)):
            continue
        values = np.unique(x)
        if 2 <= len(values) <= max_categories:
            found[column] = [float(v) for v in values]
    return found


LEVERS = Levers()


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
    split: Split  # the rows trained and validated on (the challenger uses the same)
    val_probability: np.ndarray  # corrected click probability of the best epoch, float64, in split.val order
    batch: BatchPlan  # the batch size asked for and the one used
    history: list[dict[str, float | None]] = field(default_factory=list)
    train_rows: int = 0  # rows fitted on per epoch
    val_rows: int = 0
    device: str = "cpu"
    seconds: float = 0.0  # wall time of train(), preparation included


def plan_batches(requested: int, rows: int, min_steps: int, min_batch: int) -> BatchPlan:
    """The batch size to train with: ``requested``, unless that gives fewer than ``min_steps``
    optimizer steps per epoch over ``rows``; then ``rows // min_steps`` (not below ``min_batch``).

    Why: with down-sampling a 60k-row file leaves about 2,900 rows per epoch, and batch 4096
    is one step per epoch, ten in a run: the model barely moves (docs/training.md)."""
    rows = max(1, rows)

    def steps_at(size: int) -> int:
        return max(1, math.ceil(rows / size))

    if not min_steps or steps_at(requested) >= min_steps:
        return BatchPlan(requested=requested, used=requested, steps_per_epoch=steps_at(requested),
                         train_rows_per_epoch=rows)
    used = min(requested, max(min_batch, rows // min_steps))
    steps = steps_at(used)
    before = steps_at(requested)
    reason = (f"{requested:,} would give {before:,} optimizer step{'s' if before != 1 else ''} per epoch on "
              f"{rows:,} training rows; at least {min_steps} are needed to learn")
    if steps < min_steps:
        reason += f" (batches of {used} give {steps}: no batch is made smaller than {min_batch})"
    return BatchPlan(requested=requested, used=used, steps_per_epoch=steps, train_rows_per_epoch=rows,
                     reason=reason)


def seq_states(model: TabularSeqModel, tokens: torch.Tensor, lengths: torch.Tensor, scale: float,
               chunks: int) -> torch.Tensor:
    """LSTM states of rows already sorted by length, over ``chunks`` trimmed slices. Scalar models
    get tokens / ``scale``; embedding models the token ids themselves."""
    rows = tokens.shape[0]
    parts = []
    # A chunk is one LSTM call with a fixed cost per time step: below MIN_CHUNK_ROWS rows that cost,
    # not the rows, dominates (a batch of 46 rows in 4 chunks ran twice as slow as in one).
    chunks = max(1, min(chunks, rows // MIN_CHUNK_ROWS))
    bounds = np.linspace(0, rows, min(chunks, rows) + 1).round().astype(int)
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        if hi <= lo:
            continue
        longest = int(lengths[hi - 1])  # sorted ascending: the last row is the longest
        if longest == 0:
            parts.append(tokens.new_zeros((hi - lo, model.state_size), dtype=torch.float32))
            continue
        seq = tokens[lo:hi, :longest]
        if model.embedding is None:
            seq = seq.to(torch.float32) / scale
        parts.append(model.encode_seq(seq, lengths[lo:hi]))
    return torch.cat(parts) if len(parts) > 1 else parts[0]


def _predict_sorted(model: TabularSeqModel, features: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor,
                    scale: float, chunks: int) -> torch.Tensor:
    """Probabilities (training click rate) of rows already sorted by length, in that order."""
    model.eval()
    out = []
    with torch.inference_mode():
        for lo in range(0, features.shape[0], EVAL_BATCH):
            hi = lo + EVAL_BATCH
            state = seq_states(model, tokens[lo:hi], lengths[lo:hi], scale, chunks)
            out.append(torch.sigmoid(model.head(features[lo:hi], state)))
    return torch.cat(out) if out else features.new_zeros(0)


def predict_raw(model: TabularSeqModel, features: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor,
                scale: float, chunks: int) -> np.ndarray:
    """Probabilities at the training click rate (not corrected), in the rows' own order."""
    order = torch.argsort(lengths, stable=True)
    sorted_p = _predict_sorted(model, features[order], tokens[order], lengths[order], scale, chunks)
    out = torch.empty_like(sorted_p)
    out[order] = sorted_p
    return out.cpu().numpy().astype(np.float64)


def _schedule(optimizer: torch.optim.Optimizer, kind: str, peak: float, total_steps: int,
              warmup: float) -> torch.optim.lr_scheduler.LRScheduler | None:
    if kind == "constant":
        return None
    if kind == "onecycle":
        # Warm-up over the first ``warmup`` of the steps from peak/25, cosine down to peak/2.5e5: the
        # early steps on fresh weights are small, the last ones settle the best epoch's weights.
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=peak, total_steps=max(2, total_steps),
                                                   pct_start=warmup, cycle_momentum=False)
    raise ValueError(f"unknown schedule {kind!r}")


def train(
    data: TrainingData,
    config: TrainingConfig,
    *,
    seq_chunks: int = 4,
    device: str = "cpu",
    on_epoch: Callable[[int, dict[str, float | None]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_plan: Callable[[BatchPlan], None] | None = None,
    levers: Levers = LEVERS,
) -> TrainResult:
    """Fit the model; ``on_plan(batch_plan)`` once before the first epoch; ``on_epoch(epoch, metrics)``
    after each epoch; ``should_stop()`` polled per batch."""
    run_started = time.perf_counter()
    where = resolve_device(device)
    torch.manual_seed(config.seed)
    split = split_rows(data.labels, config.validation_split, config.downsampling, config.seed,
                       levers.negatives_per_positive)
    medians = fill_values(data.features, split.train_all)
    features = torch.from_numpy(apply_fill(data.features, medians)).to(where)
    tokens = torch.from_numpy(data.tokens).to(where)
    lengths = torch.from_numpy(data.lengths).to(where)
    labels = torch.from_numpy(data.labels).to(where)
    embedding = config.seq_encoding == "embedding"
    if embedding:
        seq_scale = 1.0  # raw token ids go in; callers that divide by seq_scale pass them unchanged
    else:
        train_tokens = data.tokens[split.train_all]
        seq_scale = float(max(1, int(train_tokens.max()) if train_tokens.size else 1))
        del train_tokens

    categorical = categorical_features(data.features, split.train_all, levers.max_categories)
    knots: list[list[float]] = []
    targets: list[list[float]] = []
    ple_edges: list[list[float]] = []
    if levers.input_transform != "none" or levers.ple_bins:
        filled_train = features[torch.from_numpy(split.train_all).to(where)].cpu().numpy()
        if levers.input_transform != "none":
            knots, targets = fit_input_transform(filled_train, levers.input_transform, levers.input_knots)
        if levers.ple_bins:
            ple_edges = fit_ple_edges(filled_train, levers.ple_bins)
        del filled_train
    model = TabularSeqModel(
        features.shape[1], config.lstm_hidden, config.mlp_hidden, config.dropout,
        seq_encoding=config.seq_encoding,
        seq_vocab=levers.seq_vocab if embedding else 0,
        seq_embedding_dim=levers.seq_embedding_dim if embedding else 0,
        categorical=categorical, category_dim=levers.category_dim if categorical else 0,
        input_knots=knots or None, input_targets=targets or None, input_dropout=levers.input_dropout,
        ple_edges=ple_edges or None, cross_layers=levers.cross_layers,
        cross_rank=levers.cross_rank if levers.cross_layers else 0, tabular_norm=levers.tabular_norm,
        seq_pool=levers.seq_pool if embedding else 0,
    ).to(where)
    plan = plan_batches(config.batch_size, split.rows_per_epoch, levers.min_steps, levers.min_batch)
    if on_plan is not None:
        on_plan(plan)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=levers.weight_decay)
    scheduler = _schedule(optimizer, levers.schedule, config.learning_rate, config.epochs * plan.steps_per_epoch,
                          levers.warmup)
    loss_fn = nn.BCEWithLogitsLoss(reduction="sum")
    averaged = None
    if levers.ema:
        averaged = torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(levers.ema), use_buffers=True)
    scored: TabularSeqModel = averaged.module if averaged is not None else model  # validated and kept
    rng = np.random.default_rng(config.seed + 1)  # batch order; the split used ``seed`` itself

    # The validation rows are the same every epoch: gathered and length-sorted once.
    val_order = np.argsort(data.lengths[split.val], kind="stable")
    val_sorted = torch.from_numpy(split.val[val_order]).to(where)
    val_features, val_tokens, val_lengths = features[val_sorted], tokens[val_sorted], lengths[val_sorted]
    val_labels = data.labels[split.val]

    history: list[dict[str, float | None]] = []
    best_key = -math.inf
    best_state: dict[str, torch.Tensor] | None = None
    best_epoch = 0
    best_metrics: dict[str, float | None] = {}
    best_p = np.zeros(0)
    stale_epochs = 0
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        model.train()
        rows = split.epoch_rows(epoch, fresh=levers.fresh_negatives)
        loss_sum = 0.0
        correct = 0
        # Equal-sized batches (never a last batch of one row, which BatchNorm cannot train on).
        for batch in np.array_split(rng.permutation(rows), plan.steps_per_epoch):
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
            if scheduler is not None:
                scheduler.step()
            if averaged is not None:
                averaged.update_parameters(model)
            loss_sum += float(loss.detach())
            correct += int(((logits.detach() > 0) == (target > 0.5)).sum())
        train_seconds = time.perf_counter() - started
        if not math.isfinite(loss_sum):
            raise TrainingError(
                f"training diverged in epoch {epoch} (the loss is not a number): "
                f"lower learning_rate (now {config.learning_rate})"
            )

        p_sorted = _predict_sorted(scored, val_features, val_tokens, val_lengths, seq_scale, seq_chunks)
        p_raw = np.empty(len(val_order), dtype=np.float64)
        p_raw[val_order] = p_sorted.cpu().numpy()
        metrics: dict[str, float | None] = {
            "train_loss": loss_sum / len(rows),
            "train_accuracy": correct / len(rows),
            **validation_metrics(val_labels, p_raw, split.train_rate, split.base_rate),
            "seconds": time.perf_counter() - started,
            "samples_per_s": len(rows) / train_seconds if train_seconds > 0 else None,
        }
        history.append(metrics)
        key = metrics["auc"] if metrics["auc"] is not None else -float(metrics["val_loss"] or 0.0)
        if key > best_key:
            best_key, best_epoch, best_metrics, best_p = key, epoch, metrics, p_raw
            best_state = copy.deepcopy(scored.state_dict())
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
            "fresh_negatives": bool(levers.fresh_negatives and split.negatives_per_epoch),
            "validation_split": config.validation_split,
            "train_rows": int(split.rows_per_epoch),
            "train_rows_all": int(len(split.train_all)),
            "val_rows": int(len(split.val)),
            "batch_size_requested": plan.requested,
            "batch_size_used": plan.used,
            "steps_per_epoch": plan.steps_per_epoch,
            "schedule": levers.schedule,
            "weight_decay": levers.weight_decay,
            "ignored_columns": data.ignored_columns,
            "truncated_rows": data.truncated_rows,
            "threshold_rule": "corrected probability maximising F1 on the validation rows",
        },
        kind="lstm",
        seq_encoding=config.seq_encoding,
        seq_vocab=model.seq_vocab,
        seq_embedding_dim=model.embedding.embedding_dim if model.embedding is not None else 0,
        categorical_values={data.feature_columns[c]: v for c, v in categorical.items()},
        category_dim=levers.category_dim if categorical else 0,
        input_transform=levers.input_transform if knots else "none",
        input_knots=knots,
        input_targets=targets,
        ple_edges=ple_edges,
        cross_layers=levers.cross_layers,
        cross_rank=levers.cross_rank if levers.cross_layers else 0,
        tabular_norm=levers.tabular_norm,
        seq_pool=levers.seq_pool if embedding else 0,
    )
    return TrainResult(
        model=model,
        preprocess=preprocess,
        best_epoch=best_epoch,
        best_metrics=best_metrics,
        epochs_run=len(history),
        split=split,
        val_probability=correct_probability(best_p, split.train_rate, split.base_rate),
        batch=plan,
        history=history,
        train_rows=int(split.rows_per_epoch),
        val_rows=int(len(split.val)),
        device=str(where),
        seconds=time.perf_counter() - run_started,
    )
