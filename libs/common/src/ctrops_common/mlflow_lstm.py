"""The LSTM+MLP as MLflow's pytorch flavor stores it: one float matrix in, the click probability out.

MLflow's pytorch pyfunc hands the model a single tensor (a DataFrame's values as float32),
while ``TabularSeqModel`` takes three (tabular features, tokens, lengths). ``LstmPyfunc``
wraps the trained model so ``mlflow.pyfunc.load_model(uri).predict(frame)`` works as an
MLflow user expects, on columns ``<features...>, seq_1..seq_L, seq_len``:

- the tabular features in ``preprocess.feature_columns`` order, missing values already filled
  (``preprocess.fill_values``);
- ``seq_1..seq_L``: the row's most recent ``L = preprocess.max_seq_len`` raw ``seq`` tokens,
  oldest first, right-padded with 0; ``seq_len``: how many of them are real;
- out: the click probability on the real base rate (prior-corrected when the model trained
  on down-sampled data), one value per row.

The wrapped ``TabularSeqModel`` stays reachable as ``.model``, so a loader gets the
explainer's split scoring (``encode_seq`` once per sequence, ``head`` per perturbation).
Pickled by MLflow (``serialization_format="pickle"``): torch.export's "pt2" would keep
only ``forward`` and lose that split. Needs torch (the ``ml`` extra).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .ml import Preprocess, TabularSeqModel

SEQ_LENGTH_COLUMN = "seq_len"


def seq_columns(max_seq_len: int) -> list[str]:
    return [f"seq_{i}" for i in range(1, max_seq_len + 1)]


def input_columns(preprocess: Preprocess) -> list[str]:
    """Column names of the pyfunc input, in order."""
    return [*preprocess.feature_columns, *seq_columns(preprocess.max_seq_len), SEQ_LENGTH_COLUMN]


class LstmPyfunc(nn.Module):
    def __init__(self, model: TabularSeqModel, preprocess: Preprocess) -> None:
        super().__init__()
        self.model = model
        self.n_features = len(preprocess.feature_columns)
        self.max_seq_len = int(preprocess.max_seq_len)
        self.seq_scale = float(preprocess.seq_scale or 1.0)
        # log(prior odds ratio): adding it to the logit is ctrops_common.ml.correct_probability.
        base, train = preprocess.base_rate, preprocess.train_rate
        shift = 0.0
        if 0 < base < 1 and 0 < train < 1:
            shift = math.log(base / (1 - base)) - math.log(train / (1 - train))
        self.logit_shift = shift

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        rows = rows.to(torch.float32)
        f, width = self.n_features, self.max_seq_len
        x_tab = rows[:, :f]
        tokens = rows[:, f:f + width] / self.seq_scale
        lengths = rows[:, f + width].round().long().clamp(0, width)
        longest = max(int(lengths.max()), 1) if len(lengths) else 1  # no LSTM steps on padding only
        logit = self.model(x_tab, tokens[:, :longest].contiguous(), lengths)
        return torch.sigmoid(logit.to(torch.float64) + self.logit_shift)
