"""The model's scores of a set of rows after one feature is shuffled across them.

``shuffled_scores(scorer, x_tab, states)`` keeps the rows and their unshuffled scores
(``base``); ``scores(j, order)`` gives the logits with tabular column ``j`` (or, for
``j = None``, the whole sequence encoding) taken from row ``order[i]`` for row ``i``.

- Any model: the rows are scored again in full (the LSTM+MLP reads every input).
- A LightGBM: only the trees that split on the shuffled column(s) are walked again
  (``trees.TreeTable``, LightGBM's own decision rule, equal to ``Booster.predict`` to float
  rounding); where those are most of the ensemble (the sequence usually is) LightGBM scores
  the shuffled rows in full, which is faster there. Either way the numbers are the model's.
"""

from __future__ import annotations

import numpy as np

from .trees import TreeTable

SUBSET_SHARE = 0.125  # at most this share of the trees: walk them here; more: LightGBM scores in full
MAX_CELLS = 20_000_000  # rows x trees kept in memory for the tree path (160 MB of float64)


class Shuffled:
    """Scores after a shuffle, by scoring the rows again."""

    def __init__(self, scorer, x_tab: np.ndarray, states: np.ndarray) -> None:
        self.scorer = scorer
        self.x = np.array(x_tab, dtype=np.float32, copy=True)
        self.states = states
        self.base = scorer.logits(self.x, states)

    def scores(self, j: int | None, order: np.ndarray) -> np.ndarray:
        if j is None:
            return self.scorer.logits(self.x, self.states[order])
        kept = self.x[:, j].copy()
        self.x[:, j] = kept[order]
        try:
            return self.scorer.logits(self.x, self.states)
        finally:
            self.x[:, j] = kept


class TreeShuffled(Shuffled):
    """Scores after a shuffle for a LightGBM: only the trees that read the shuffled column(s) again."""

    def __init__(self, scorer, x_tab: np.ndarray, states: np.ndarray, table: TreeTable) -> None:
        super().__init__(scorer, x_tab, states)
        self.table = table
        self.features = scorer.model.features(self.x, states).astype(np.float64)  # the booster's columns
        self.per_tree = table.outputs(self.features, np.arange(len(table.trees)))
        self.tabular = self.x.shape[1]

    def scores(self, j: int | None, order: np.ndarray) -> np.ndarray:
        columns = np.arange(self.tabular, self.features.shape[1]) if j is None else np.array([j])
        trees = self.table.trees_reading(columns)
        if len(trees) == 0:
            return self.base.copy()
        if len(trees) > SUBSET_SHARE * len(self.table.trees):
            return super().scores(j, order)
        kept = self.features[:, columns]  # a copy (fancy indexing): the column(s) to put back
        self.features[:, columns] = kept[order]
        try:
            changed = self.table.outputs(self.features, trees)
        finally:
            self.features[:, columns] = kept
        return self.base - self.per_tree[:, trees].sum(axis=1) + changed.sum(axis=1)


def shuffled_scores(scorer, x_tab: np.ndarray, states: np.ndarray) -> Shuffled:
    """The fastest exact way for this model (see the module docstring)."""
    if getattr(scorer, "kind", None) == "gbdt":
        dump = scorer.model.booster.dump_model()
        if TreeTable.supported(dump) and len(x_tab) * len(dump["tree_info"]) <= MAX_CELLS:
            return TreeShuffled(scorer, x_tab, states, TreeTable(dump))
    return Shuffled(scorer, x_tab, states)
