"""How a saved model reads its inputs: ``preprocess.json`` beside the weights (``Preprocess``).

Its own module, without torch, so that code which only reads a model's inputs (the scorer's row
checks, the explainer's and scorer's model loading before a model is loaded) does not pay
torch's import; ``ctrops_common.ml`` re-exports it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Preprocess:
    feature_columns: list[str]
    fill_values: list[float]  # per feature, for missing values (training medians)
    max_seq_len: int  # most recent tokens kept
    seq_scale: float  # tokens are divided by this before the LSTM
    lstm_hidden: int
    mlp_hidden: list[int]
    dropout: float
    base_rate: float  # click rate of the original data
    train_rate: float  # click rate the model was trained at (after down-sampling)
    threshold: float = 0.5  # decision threshold for accuracy/precision/recall (on corrected p)
    extra: dict = field(default_factory=dict)
    # Added with embeddings; the defaults describe every model saved before (scalar LSTM input).
    kind: str = "lstm"  # which model family the folder holds ("lstm" here, "gbdt" for ctrops_common.gbdt)
    seq_encoding: str = "scalar"  # "embedding" (hashed tokens -> learned vectors) or "scalar" (token / seq_scale)
    seq_vocab: int = 0  # hash buckets of the embedding (a power of two); 0 for scalar
    seq_embedding_dim: int = 0  # width of a token's vector; 0 for scalar
    # Low-cardinality integer features (column -> its sorted training values), each also fed to
    # the MLP through a small learned embedding of its value; empty for models saved before.
    categorical_values: dict[str, list[float]] = field(default_factory=dict)
    category_dim: int = 0
    # Per-feature piecewise-linear input transform applied inside ``TabularSeqModel.head`` (so every
    # caller keeps passing raw filled features): feature i's value is mapped through the points
    # (input_knots[i][k], input_targets[i][k]), clamped at both ends. Empty: none (models saved before).
    input_transform: str = "none"  # "none", "quantile" (rank-Gauss) or "robust" (median/IQR, clipped)
    input_knots: list[list[float]] = field(default_factory=list)
    input_targets: list[list[float]] = field(default_factory=list)
    # Piecewise-linear encoding: per feature, the T+1 edges of its T quantile bins (fitted on the
    # training rows, filled; a feature with fewer distinct quantiles repeats its last edge, and an
    # empty bin encodes as 0). Empty: none (models saved before).
    ple_edges: list[list[float]] = field(default_factory=list)
    cross_layers: int = 0  # low-rank cross layers before the MLP (0: none, models saved before)
    cross_rank: int = 0
    seq_pool: int = 0  # recent tokens pooled into the state beside the LSTM's (0: none, models saved before)
    tabular_norm: str = "batch"  # "batch": BatchNorm over the numeric inputs (every model saved before); "none"

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> Preprocess:
        return cls(**json.loads(path.read_text()))
