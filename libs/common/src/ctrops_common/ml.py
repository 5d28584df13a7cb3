"""The CTR model shared by the trainer (which fits it) and the explainer (which loads it).

Needs the ``ml`` extra (torch). ``TabularSeqModel`` is the seed notebook's architecture:
BatchNorm over tabular features, an LSTM over the ``seq`` tokens fed as scalars, an MLP
with ReLU and dropout, one logit. The sequence goes in as a right-padded batch and the
LSTM output is taken at each row's last real step: the same result as a packed sequence
for a unidirectional LSTM, at a fraction of the cost on CPU.

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

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> Preprocess:
        return cls(**json.loads(path.read_text()))


class TabularSeqModel(nn.Module):
    def __init__(self, n_features: int, lstm_hidden: int = 64, mlp_hidden: list[int] | None = None,
                 dropout: float = 0.2) -> None:
        super().__init__()
        mlp_hidden = mlp_hidden or [256, 128]
        self.bn = nn.BatchNorm1d(n_features)
        # Time-major (batch_first=False): the LSTM's output needs no transposed copy, which on
        # CPU cost as much as the recurrence itself; the weights are the same either way.
        self.lstm = nn.LSTM(input_size=1, hidden_size=lstm_hidden)
        layers: list[nn.Module] = []
        width = n_features + lstm_hidden
        for size in mlp_hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def encode_seq(self, seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, L) right-padded scaled tokens, (B,) lengths -> (B, H) state at the last real step."""
        out, _ = self.lstm(seq.t().contiguous().unsqueeze(-1))  # (L, B, H)
        last = (lengths - 1).clamp(min=0)
        hidden = out[last, torch.arange(out.shape[1], device=out.device)]
        return hidden * (lengths > 0).unsqueeze(-1).to(hidden.dtype)  # empty sequence -> zeros

    def head(self, x_tab: torch.Tensor, seq_state: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([self.bn(x_tab), seq_state], dim=1)).squeeze(-1)

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
        len(preprocess.feature_columns), preprocess.lstm_hidden, preprocess.mlp_hidden, preprocess.dropout
    )
    model.load_state_dict(torch.load(folder / "model.pt", map_location="cpu", weights_only=True))
    model.eval()
    return model, preprocess
