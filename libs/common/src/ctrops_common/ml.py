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

Optional input transform (``Preprocess.input_transform``, off in the trainer by default: it
measured no gain, bench/lstm_levers.py): a per-feature piecewise-linear map fitted on the
training rows (rank-Gauss quantiles, or median/IQR clipped), held as buffers and applied inside
``head`` before BatchNorm, so every caller keeps passing raw filled features.

Optional piecewise-linear encoding (``Preprocess.ple_edges``; Gorishniy et al. 2022, "On
Embeddings for Numerical Features in Tabular Deep Learning"): each feature's training quantiles
cut its range into up to T bins, and the feature also reaches the MLP as T numbers, bin t being
0 left of it, 1 right of it and the position inside it in between. A threshold ("above 1") or a
window of values is then one weight for the MLP's first layer, not a ReLU kink it must place.
The edges are buffers (saved with the weights) and the encoding runs inside ``head`` on the raw
filled features, so every caller (the explainer's LIME included) passes what it passed before.

Optional cross layers (``Preprocess.cross_layers``; DCN-v2, Wang et al. 2021, low-rank): before
the MLP, ``x_{l+1} = x_0 * (U_l (V_l x_l) + b_l) + x_l`` over the MLP's input, which makes
products of two inputs (feature interactions) one layer away.

A saved model is a folder in the file store: ``model.pt`` (state dict) and
``preprocess.json`` (``Preprocess``: features, fill values, sequence window, rates).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from .ctr_metrics import correct_probability  # noqa: F401 - its home before ctr_metrics; callers import it here
from .preprocess import Preprocess  # noqa: F401 - its home before preprocess.py; callers import it here


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
                 category_dim: int = 0, input_knots: list[list[float]] | None = None,
                 input_targets: list[list[float]] | None = None, input_dropout: float = 0.0,
                 ple_edges: list[list[float]] | None = None, cross_layers: int = 0, cross_rank: int = 0,
                 tabular_norm: str = "batch", seq_pool: int = 0) -> None:
        super().__init__()
        mlp_hidden = mlp_hidden or [256, 128]
        self.seq_encoding = seq_encoding
        self.seq_vocab = seq_vocab
        if tabular_norm not in ("batch", "none"):
            raise ValueError(f"tabular_norm must be 'batch' or 'none', not {tabular_norm!r}")
        # "none": the numeric inputs go in as the input transform leaves them (no batch statistics).
        self.bn = nn.BatchNorm1d(n_features) if tabular_norm == "batch" else nn.Identity()
        # Dropout on the normalised numeric inputs while training (identity in eval: nothing to save).
        self.input_dropout = nn.Dropout(input_dropout) if input_dropout > 0 else None
        # The input transform's points as buffers (saved with the weights); None: raw features.
        self.register_buffer("input_knots", None)
        self.register_buffer("input_targets", None)
        if input_knots:
            knots = torch.tensor(input_knots, dtype=torch.float32)
            targets = torch.tensor(input_targets, dtype=torch.float32)
            if knots.shape != (n_features, knots.shape[1]) or targets.shape != knots.shape or knots.shape[1] < 2:
                raise ValueError(f"input knots {tuple(knots.shape)} and targets {tuple(targets.shape)} must both be "
                                 f"({n_features}, K>=2)")
            self.register_buffer("input_knots", knots)
            self.register_buffer("input_targets", targets)
        # Piecewise-linear encoding's bins as buffers: left edges and widths, (F, T) each.
        self.register_buffer("ple_left", None)
        self.register_buffer("ple_width", None)
        ple_width = 0
        if ple_edges:
            edges = torch.tensor(ple_edges, dtype=torch.float32)
            if edges.ndim != 2 or edges.shape[0] != n_features or edges.shape[1] < 2:
                raise ValueError(f"PLE edges {tuple(edges.shape)} must be ({n_features}, T+1>=2)")
            self.register_buffer("ple_left", edges[:, :-1].contiguous())
            self.register_buffer("ple_width", (edges[:, 1:] - edges[:, :-1]).contiguous())
            ple_width = n_features * (edges.shape[1] - 1)
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
        # Recent-token pool: the vectors of the ``seq_pool`` most recent tokens, each weighted per
        # dimension by a learned weight of its age (1 = newest), summed into the state beside the LSTM's.
        self.seq_pool: nn.Parameter | None = None
        if seq_pool:
            if self.embedding is None:
                raise ValueError("seq_pool needs seq_encoding 'embedding'")
            self.seq_pool = nn.Parameter(torch.full((seq_pool, input_size), seq_pool ** -0.5))
        self.state_size = lstm_hidden + (input_size if seq_pool else 0)
        # Categorical features: column index -> its known values (a buffer, saved with the
        # weights) and an embedding with one extra row (0) for a value not seen in training.
        self.categorical_columns = sorted(categorical or {}) if category_dim else []
        self.category_embeddings = nn.ModuleList()
        for i, column in enumerate(self.categorical_columns):
            values = torch.tensor(sorted((categorical or {})[column]), dtype=torch.float32)
            self.register_buffer(f"category_values_{i}", values)
            self.category_embeddings.append(nn.Embedding(len(values) + 1, category_dim))
        layers: list[nn.Module] = []
        width = n_features + self.state_size + len(self.categorical_columns) * category_dim + ple_width
        self.cross = nn.ModuleList()
        for _ in range(cross_layers):
            if cross_rank < 1:
                raise ValueError(f"cross_rank must be at least 1 with cross layers, not {cross_rank}")
            self.cross.append(nn.Sequential(nn.Linear(width, cross_rank, bias=False), nn.Linear(cross_rank, width)))
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
        hidden = hidden * (lengths > 0).unsqueeze(-1).to(hidden.dtype)  # empty sequence -> zeros
        pool = getattr(self, "seq_pool", None)  # absent on models pickled before the pool
        if pool is None:
            return hidden
        age = torch.arange(pool.shape[0], device=seq.device).unsqueeze(1)  # (K, 1): 0 = newest
        at = lengths.unsqueeze(0) - 1 - age  # (K, B) time step of each recent token
        recent = steps.gather(0, at.clamp(min=0).unsqueeze(-1).expand(-1, -1, steps.shape[2]))  # (K, B, E)
        pooled = (recent * pool.unsqueeze(1) * (at >= 0).unsqueeze(-1).to(recent.dtype)).sum(0)
        return torch.cat([hidden, pooled], dim=1)

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

    def transform_inputs(self, x_tab: torch.Tensor) -> torch.Tensor:
        """Raw filled features -> the values BatchNorm sees: each feature through its piecewise-linear
        map (``input_knots`` -> ``input_targets``, flat beyond the end points), or unchanged."""
        knots = getattr(self, "input_knots", None)  # absent on models pickled before the transform
        if knots is None:
            return x_tab
        targets = self.input_targets
        x = x_tab.t().contiguous()  # (F, B)
        k = knots.shape[1]
        hi = torch.searchsorted(knots, x, right=True).clamp(1, k - 1)
        lo = hi - 1
        x0, x1 = knots.gather(1, lo), knots.gather(1, hi)
        y0, y1 = targets.gather(1, lo), targets.gather(1, hi)
        span = x1 - x0
        w = torch.where(span > 0, (x - x0) / torch.where(span > 0, span, torch.ones_like(span)),
                        torch.zeros_like(x)).clamp(0, 1)
        return (y0 + w * (y1 - y0)).t()

    def piecewise_linear(self, x_tab: torch.Tensor) -> list[torch.Tensor]:
        """Raw filled features -> [(B, F*T) piecewise-linear encoding], or [] without one."""
        left = getattr(self, "ple_left", None)  # absent on models pickled before the encoding
        if left is None:
            return []
        width = self.ple_width
        safe = torch.where(width > 0, width, torch.ones_like(width))
        code = ((x_tab.unsqueeze(-1) - left) / safe).clamp(0, 1) * (width > 0)
        return [code.flatten(1)]

    def head(self, x_tab: torch.Tensor, seq_state: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.transform_inputs(x_tab))
        dropout = getattr(self, "input_dropout", None)  # absent on models pickled before it existed
        if dropout is not None:
            x = dropout(x)
        h = torch.cat([x, seq_state, *self.categories(x_tab), *self.piecewise_linear(x_tab)], dim=1)
        x0 = h
        for layer in getattr(self, "cross", ()):  # absent on models pickled before cross layers
            h = x0 * layer(h) + h
        return self.mlp(h).squeeze(-1)

    def forward(self, x_tab: torch.Tensor, seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.head(x_tab, self.encode_seq(seq, lengths))


def fit_input_transform(features: np.ndarray, kind: str, knots: int = 64,
                        clip: float = 5.0) -> tuple[list[list[float]], list[list[float]]]:
    """Points of the per-feature input transform fitted on ``features`` (training rows, filled):
    (knots, targets), each ``n_features`` lists of the same length.

    - ``"quantile"`` (rank-Gauss): ``knots`` quantiles of each feature mapped to the standard
      normal's quantiles at the same levels (0.5% .. 99.5%), linear in between; a value shared by
      several quantiles (a discrete feature) maps to their mean. A skewed or heavy-tailed column
      reaches the MLP as a bell shape instead of a few outliers and a crowded middle.
    - ``"robust"``: (x - median) / IQR, clipped to +-``clip`` (two points).
    """
    from scipy.stats import norm

    n, f = features.shape
    out_knots: list[list[float]] = []
    out_targets: list[list[float]] = []
    if kind == "quantile":
        levels = np.linspace(0.0, 1.0, knots)
        normal = norm.ppf(np.clip(levels, 0.005, 0.995))
        for column in range(f):
            q = np.quantile(features[:, column].astype(np.float64), levels) if n else np.zeros(knots)
            values, inverse = np.unique(q, return_inverse=True)
            targets = np.bincount(inverse, weights=normal) / np.bincount(inverse)
            if len(values) < 2:  # a constant column: flat at 0
                values, targets = np.array([values[0], values[0] + 1.0]), np.zeros(2)
            pad = knots - len(values)  # equal widths for one tensor: repeat the last point (flat beyond it)
            out_knots.append([float(v) for v in np.concatenate([values, np.repeat(values[-1], pad)])])
            out_targets.append([float(v) for v in np.concatenate([targets, np.repeat(targets[-1], pad)])])
    elif kind == "robust":
        for column in range(f):
            x = features[:, column].astype(np.float64)
            q1, median, q3 = np.quantile(x, [0.25, 0.5, 0.75]) if n else (0.0, 0.0, 1.0)
            iqr = q3 - q1 if q3 > q1 else (np.std(x) if n and np.std(x) > 0 else 1.0)
            out_knots.append([float(median - clip * iqr), float(median + clip * iqr)])
            out_targets.append([-clip, clip])
    else:
        raise ValueError(f"input transform must be 'quantile' or 'robust', not {kind!r}")
    return out_knots, out_targets


def fit_ple_edges(features: np.ndarray, bins: int) -> list[list[float]]:
    """Edges of the piecewise-linear encoding fitted on ``features`` (training rows, filled): per
    feature ``bins + 1`` values, its quantiles at 0, 1/bins, .., 1 with repeats dropped and the
    last one repeated to the common width (an empty bin encodes as 0). A feature of k < bins
    distinct values gets at most k - 1 bins, one per step between neighbouring values."""
    if bins < 1:
        raise ValueError(f"PLE needs at least one bin, not {bins}")
    n, f = features.shape
    levels = np.linspace(0.0, 1.0, bins + 1)
    out: list[list[float]] = []
    for column in range(f):
        x = features[:, column].astype(np.float64)
        x = x[np.isfinite(x)]
        edges = np.unique(np.quantile(x, levels)) if x.size else np.zeros(1)
        edges = np.concatenate([edges, np.repeat(edges[-1], bins + 1 - len(edges))])
        out.append([float(v) for v in edges])
    return out


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
        input_knots=preprocess.input_knots or None, input_targets=preprocess.input_targets or None,
        ple_edges=preprocess.ple_edges or None, cross_layers=preprocess.cross_layers,
        cross_rank=preprocess.cross_rank, tabular_norm=preprocess.tabular_norm, seq_pool=preprocess.seq_pool,
    )
    model.load_state_dict(torch.load(folder / "model.pt", map_location="cpu", weights_only=True))
    model.eval()
    return model, preprocess
