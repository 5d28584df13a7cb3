"""What a training config costs in memory, estimated before it is sent to the trainer.

Every config field is bounded on its own (``TrainingConfig``), but their product is not: the
largest allowed values together (batch 65,536 x 4,096 sequence steps x 1,024 LSTM units)
would need terabytes, and the trainer only finds out after it has loaded the data, with a
raw allocation error. POST /api/train therefore estimates the peak memory of one training
step and refuses (422) a config whose estimate is above ``CTROPS_TRAINING_MEMORY_LIMIT_MB``,
naming the fields that drive it.

The estimate (float32, 4 bytes a number) is an upper bound of the LSTM+MLP's largest step:
- the LSTM over a full batch of full-length sequences: per step and row the token vector
  (``SEQ_EMBEDDING_DIM``) and about 6 x ``lstm_hidden`` saved for the backward pass (4
  gates, cell, hidden state), doubled for the gradients of the backward pass;
- the MLP: its input (the features, their piecewise-linear encoding, the sequence state) and
  every hidden layer, kept for backward and doubled for the gradients;
- the parameters 4 times over (weights, gradients, Adam's two moments).
Sequences shorter than ``max_seq_len`` cost less in practice; the estimate assumes full ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from ctrops_common.events import TrainingConfig

BYTES_PER_FLOAT = 4
FEATURES = 128  # numeric feature columns of the log format (118), rounded up
PLE_BINS = 8  # the trainer's piecewise-linear encoding bins per feature (ctrops_trainer.training.Levers)
SEQ_EMBEDDING_DIM = 32  # the trainer's token vector width (Levers.seq_embedding_dim)
SEQ_VOCAB = 2**14  # the trainer's hashed token vocabulary (Levers.seq_vocab)
MB = 1 << 20


@dataclass(frozen=True)
class MemoryEstimate:
    lstm_bytes: int
    mlp_bytes: int
    parameter_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.lstm_bytes + self.mlp_bytes + self.parameter_bytes

    @property
    def total_mb(self) -> float:
        return self.total_bytes / MB


def estimate(config: TrainingConfig) -> MemoryEstimate:
    batch, steps, hidden = config.batch_size, config.max_seq_len, config.lstm_hidden
    token = SEQ_EMBEDDING_DIM if config.seq_encoding == "embedding" else 1
    lstm = batch * steps * (token + 6 * hidden) * 2
    width = FEATURES * (1 + PLE_BINS) + hidden + token
    mlp = batch * (width + 2 * sum(config.mlp_hidden)) * 2
    params = 4 * hidden * (token + hidden + 2)  # LSTM
    params += SEQ_VOCAB * SEQ_EMBEDDING_DIM if config.seq_encoding == "embedding" else 0
    previous = width
    for size in config.mlp_hidden:
        params += (previous + 1) * size
        previous = size
    params += previous + 1
    return MemoryEstimate(lstm * BYTES_PER_FLOAT, mlp * BYTES_PER_FLOAT, 4 * params * BYTES_PER_FLOAT)


def too_big(config: TrainingConfig, limit_mb: float) -> str | None:
    """Why the config cannot fit the trainer's memory, or None when it fits."""
    cost = estimate(config)
    if cost.total_mb <= limit_mb:
        return None
    layers = ",".join(str(s) for s in config.mlp_hidden)
    return (f"config needs an estimated {cost.total_mb:,.0f} MB of trainer memory, above the limit of "
            f"{limit_mb:,.0f} MB (CTROPS_TRAINING_MEMORY_LIMIT_MB): batchSize {config.batch_size} x maxSeqLen "
            f"{config.max_seq_len} x lstmHidden {config.lstm_hidden} for the LSTM ({cost.lstm_bytes / MB:,.0f} MB), "
            f"mlpHidden [{layers}] for the MLP ({(cost.mlp_bytes + cost.parameter_bytes) / MB:,.0f} MB with the "
            "weights). Lower batchSize, maxSeqLen, lstmHidden or mlpHidden.")
