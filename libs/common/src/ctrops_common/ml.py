"""The CTR model shared by the trainer (which fits it) and the explainer (which loads it).

Needs the ``ml`` extra (torch). ``TabularSeqModel`` is the seed notebook's architecture:
BatchNorm over tabular features, an LSTM over the ``seq`` tokens, an MLP with ReLU and
dropout, one logit. The sequence goes in as a right-padded batch and the LSTM output is
taken at each row's last real step: the same result as a packed sequence for a
unidirectional LSTM, at a fraction of the cost on CPU.

How tokens enter the LSTM (``seq_encoding``):
- ``"embedding"`` (the trainer's default): each token is hashed into ``seq_vocab`` buckets
  (``hash_tokens``: Fibonacci multiplicative hashing, ``(token * 2654435761) mod 2^32``,
  top ``log2(seq_vocab)`` bits) and looked up in a learned ``seq_vocab x seq_embedding_dim``
  table. A token id is a category, not a quantity: token 497 is not "a bit more" than
  token 496, and a scalar input makes the LSTM learn that from one number per step.
  Fibonacci hashing spreads consecutive ids evenly, so any run of up to about
  ``0.3 * seq_vocab`` consecutive ids (0..5,000 at 2^14) lands in distinct buckets; larger
  vocabularies share buckets. The padding token 0 has a bucket like any token; it is never
  read because the state is gathered at each row's last real step.
- ``"scalar"`` (the notebook's, and every model saved before embeddings): the token divided
  by ``seq_scale`` as one number per step.

A saved model is a folder in the file store: ``model.pt`` (state dict) and
``preprocess.json`` (``Preprocess``: features, fill values, sequence window, rates).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn


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

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> Preprocess:
        return cls(**json.loads(path.read_text()))


FIBONACCI_MULTIPLIER = 2654435761  # round(2^32 / golden ratio), Knuth's multiplicative hash


def hash_tokens(tokens: torch.Tensor, vocab: int) -> torch.Tensor:
    """Token ids (int, or float holding integers) -> bucket in [0, vocab): the top log2(vocab)
    bits of ``(token * 2654435761) mod 2^32``. ``vocab`` is a power of two; tokens are below
    2^31 (the trainer refuses others), so the product fits in int64."""
    bits = vocab.bit_length() - 1
    if vocab < 2 or vocab != 1 << bits or bits > 32:
        raise ValueError(f"seq_vocab must be a power of two between 2 and 2^32, not {vocab}")
    if tokens.is_floating_point():
        tokens = tokens.round()
    mixed = (tokens.long() * FIBONACCI_MULTIPLIER) & 0xFFFFFFFF
    return mixed >> (32 - bits)


class TabularSeqModel(nn.Module):
    def __init__(self, n_features: int, lstm_hidden: int = 64, mlp_hidden: list[int] | None = None,
                 dropout: float = 0.2, seq_encoding: str = "scalar", seq_vocab: int = 0,
                 seq_embedding_dim: int = 0, categorical: dict[int, list[float]] | None = None,
                 category_dim: int = 0) -> None:
        super().__init__()
        mlp_hidden = mlp_hidden or [256, 128]
        self.seq_encoding = seq_encoding
        self.seq_vocab = seq_vocab
        self.bn = nn.BatchNorm1d(n_features)
        if seq_encoding == "embedding":
            hash_tokens(torch.zeros(1, dtype=torch.long), seq_vocab)  # a bad vocabulary fails here, not later
            if seq_embedding_dim < 1:
                raise ValueError(f"seq_embedding_dim must be at least 1, not {seq_embedding_dim}")
            self.embedding: nn.Embedding | None = nn.Embedding(seq_vocab, seq_embedding_dim)
            input_size = seq_embedding_dim
        elif seq_encoding == "scalar":
            self.embedding = None
            input_size = 1
        else:
            raise ValueError(f"seq_encoding must be 'embedding' or 'scalar', not {seq_encoding!r}")
        # Time-major (batch_first=False): the LSTM's output needs no transposed copy, which on
        # CPU cost as much as the recurrence itself; the weights are the same either way.
        self.lstm = nn.LSTM(input_size=input_size, hidden_size=lstm_hidden)
        # Categorical features: column index -> its known values (a buffer, saved with the
        # weights) and an embedding with one extra row (0) for a value not seen in training.
        self.categorical_columns = sorted(categorical or {}) if category_dim else []
        self.category_embeddings = nn.ModuleList()
        for i, column in enumerate(self.categorical_columns):
            values = torch.tensor(sorted((categorical or {})[column]), dtype=torch.float32)
            self.register_buffer(f"category_values_{i}", values)
            self.category_embeddings.append(nn.Embedding(len(values) + 1, category_dim))
        layers: list[nn.Module] = []
        width = n_features + lstm_hidden + len(self.categorical_columns) * category_dim
        for size in mlp_hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def encode_seq(self, seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, L) right-padded tokens, (B,) lengths -> (B, H) state at the last real step.

        Scalar models take the tokens divided by ``seq_scale`` (float); embedding models take
        the raw token ids, as an int tensor or a float tensor holding integers."""
        if self.embedding is not None:
            steps = self.embedding(hash_tokens(seq.t(), self.seq_vocab))  # (L, B, E), time-major
        else:
            steps = seq.t().contiguous().unsqueeze(-1)  # (L, B, 1)
        out, _ = self.lstm(steps)  # (L, B, H)
        last = (lengths - 1).clamp(min=0)
        hidden = out[last, torch.arange(out.shape[1], device=out.device)]
        return hidden * (lengths > 0).unsqueeze(-1).to(hidden.dtype)  # empty sequence -> zeros

    def categories(self, x_tab: torch.Tensor) -> list[torch.Tensor]:
        """Each categorical column's value -> its learned vector (unseen values share row 0)."""
        out = []
        for i, (column, embedding) in enumerate(zip(self.categorical_columns, self.category_embeddings)):
            values = getattr(self, f"category_values_{i}")
            x = x_tab[:, column].contiguous()
            at = torch.searchsorted(values, x).clamp(max=len(values) - 1)
            index = torch.where(values[at] == x, at + 1, torch.zeros_like(at))
            out.append(embedding(index))
        return out

    def head(self, x_tab: torch.Tensor, seq_state: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([self.bn(x_tab), seq_state, *self.categories(x_tab)], dim=1)).squeeze(-1)

    def forward(self, x_tab: torch.Tensor, seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.head(x_tab, self.encode_seq(seq, lengths))


def correct_probability(p: np.ndarray, train_rate: float, base_rate: float) -> np.ndarray:
    """Map probabilities learned at ``train_rate`` back to the true ``base_rate`` (prior shift)."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    if train_rate <= 0 or train_rate >= 1 or base_rate <= 0 or base_rate >= 1:
        return p
    ratio = (base_rate / (1 - base_rate)) / (train_rate / (1 - train_rate))
    odds = p / (1 - p) * ratio
    return odds / (1 + odds)


def save_model(folder: Path, model: TabularSeqModel, preprocess: Preprocess) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), folder / "model.pt")
    preprocess.save(folder / "preprocess.json")


def load_model(folder: Path) -> tuple[TabularSeqModel, Preprocess]:
    preprocess = Preprocess.load(folder / "preprocess.json")
    model = TabularSeqModel(
        len(preprocess.feature_columns), preprocess.lstm_hidden, preprocess.mlp_hidden, preprocess.dropout,
        seq_encoding=preprocess.seq_encoding, seq_vocab=preprocess.seq_vocab,
        seq_embedding_dim=preprocess.seq_embedding_dim,
        categorical={preprocess.feature_columns.index(c): v for c, v in preprocess.categorical_values.items()},
        category_dim=preprocess.category_dim,
    )
    model.load_state_dict(torch.load(folder / "model.pt", map_location="cpu", weights_only=True))
    model.eval()
    return model, preprocess
