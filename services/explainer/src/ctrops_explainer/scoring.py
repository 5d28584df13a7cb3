"""Batched scoring with the trained model, split the way the explainer needs it.

Either model of a run (``ctrops_common.model_loading.LoadedModel``: the LSTM+MLP or the
LightGBM challenger) scores as ``logits(x_tab, encode(seq))``. The encoding of a row's
sequence (the LSTM's state at its last token; the GBDT's generic seq features) does not
change when only tabular features are perturbed, so it is computed once per sequence and
only ``logits`` runs on the many perturbed rows, in large batches.

A LightGBM scores with the explainer's threads (the trainer's copy keeps one: the services
share their cores, but the explainer works alone between training.done and report.ready).
``unused`` says which features a model provably ignores: a tree model's columns that no
split uses (shuffling them cannot change a score, so the permutation test need not score).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ctrops_common.model_loading import LoadedModel


class Scorer:
    def __init__(self, loaded: LoadedModel, batch_rows: int = 8192, threads: int | None = None) -> None:
        if loaded.kind == "gbdt" and threads is not None:
            loaded = replace(loaded, model=replace(loaded.model, threads=max(1, int(threads))))
        self.loaded = replace(loaded, batch_rows=batch_rows)
        self.model = self.loaded.model
        self.kind = loaded.kind
        self.preprocess = loaded.preprocess
        self.batch_rows = batch_rows

    def encode(self, seq: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """(n, L) right-padded tokens divided by ``seq_scale``, (n,) lengths -> (n, S) sequence states."""
        return self.loaded.encode(seq, lengths)

    def logits(self, x_tab: np.ndarray, states: np.ndarray) -> np.ndarray:
        """Logits for tabular rows and their precomputed sequence states, ``batch_rows`` at a time."""
        if self.kind == "lstm":  # LoadedModel batches the torch head itself
            return self.loaded.logits(x_tab, states)
        out = [self.loaded.logits(x_tab[start:start + self.batch_rows], states[start:start + self.batch_rows])
               for start in range(0, len(x_tab), self.batch_rows)]
        return np.concatenate(out) if out else np.zeros(0)

    def probability(self, logits: np.ndarray) -> np.ndarray:
        """Click probability on the real base rate (the model may have trained on down-sampled data)."""
        return self.loaded.probability(logits)

    def unused(self, names: list[str]) -> np.ndarray:
        """(len(names),) bool: features the model never reads, so no value of theirs changes a score.

        A LightGBM's tabular column is unused when no split of any tree is on it; ``seq`` when no
        split is on any of the ``seq_*`` columns. The LSTM+MLP reads every input (all False).
        """
        flags = np.zeros(len(names), dtype=bool)
        if self.kind != "gbdt":
            return flags
        splits = np.asarray(self.model.booster.feature_importance(importance_type="split"))
        columns = list(self.preprocess.feature_columns)
        position = {name: j for j, name in enumerate(columns)}
        for j, name in enumerate(names):
            if name in position:
                flags[j] = splits[position[name]] == 0
            else:  # the sequence: every seq_* column after the tabular ones
                flags[j] = not splits[len(columns):].any()
        return flags
