"""Batched scoring with the trained model, split the way the explainer needs it.

``TabularSeqModel`` is ``head(x_tab, encode_seq(seq))``. The LSTM encoding of a row's
sequence is the expensive part and does not change when only tabular features are
perturbed, so it is computed once per sequence and only ``head`` runs on the many
perturbed rows, in large batches.
"""

from __future__ import annotations

import numpy as np
import torch

from ctrops_common.ml import Preprocess, TabularSeqModel, correct_probability


class Scorer:
    def __init__(self, model: TabularSeqModel, preprocess: Preprocess, batch_rows: int = 8192) -> None:
        self.model = model.eval()
        self.preprocess = preprocess
        self.batch_rows = batch_rows

    @torch.inference_mode()
    def encode(self, seq: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """(n, L) scaled tokens, (n,) lengths -> (n, H) LSTM states at each row's last token."""
        states = []
        for start in range(0, len(lengths), self.batch_rows):
            stop = start + self.batch_rows
            chunk_len = lengths[start:stop]
            width = max(int(chunk_len.max()), 1) if len(chunk_len) else 1  # no work on padding past the longest
            states.append(self.model.encode_seq(
                torch.from_numpy(np.ascontiguousarray(seq[start:stop, :width])),
                torch.from_numpy(chunk_len.astype(np.int64)),
            ).numpy())
        if not states:
            return np.zeros((0, self.model.lstm.hidden_size), dtype=np.float32)
        return np.concatenate(states)

    @torch.inference_mode()
    def logits(self, x_tab: np.ndarray, states: np.ndarray) -> np.ndarray:
        """Logits of the head for tabular rows and their precomputed sequence states."""
        out = []
        for start in range(0, len(x_tab), self.batch_rows):
            stop = start + self.batch_rows
            out.append(self.model.head(
                torch.from_numpy(np.ascontiguousarray(x_tab[start:stop], dtype=np.float32)),
                torch.from_numpy(np.ascontiguousarray(states[start:stop], dtype=np.float32)),
            ).numpy().astype(np.float64))
        return np.concatenate(out) if out else np.zeros(0)

    def probability(self, logits: np.ndarray) -> np.ndarray:
        """Click probability on the real base rate (the model may have trained on down-sampled data)."""
        p = 1.0 / (1.0 + np.exp(-np.clip(logits, -60, 60)))
        return correct_probability(p, self.preprocess.train_rate, self.preprocess.base_rate)
