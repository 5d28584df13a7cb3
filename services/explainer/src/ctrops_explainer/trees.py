"""A LightGBM's trees as arrays, so that a shuffled feature re-scores only the trees that read it.

The held-out permutation test shuffles one feature at a time and needs the model's score of
every row after each shuffle. A tree that never splits on the feature gives every row the
same leaf as before, so the new score is

    logit(x') = logit(x) - sum_{t reads j} tree_t(x) + sum_{t reads j} tree_t(x')

and only those trees (a few of the ensemble for most features) are evaluated again. The
trees come from LightGBM's own ``Booster.dump_model()`` and are walked with LightGBM's
numerical decision rule (``tree.h``, ``NumericalDecision``): a NaN is treated as 0 unless the
split's missing type is NaN; a missing value (NaN for type NaN; |x| <= 1e-35 for type Zero)
goes to the default side; otherwise ``x <= threshold`` goes left, in float64 as LightGBM
compares. ``full`` must equal ``Booster.predict(raw_score=True)`` (tested to 1e-9); a model
with categorical splits, several classes or linear trees is refused (``supported``) and the
caller scores with LightGBM instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_MISSING = {"None": 0, "Zero": 1, "NaN": 2}
_ZERO = 1e-35  # LightGBM's kZeroThreshold


class TreeTable:
    """Every tree of a binary LightGBM as flat node arrays (``node < 0``: leaf ``~node``)."""

    def __init__(self, dump: dict[str, Any]) -> None:
        self.trees: list[dict[str, np.ndarray]] = []
        readers: dict[int, list[int]] = {}
        for t, info in enumerate(dump["tree_info"]):
            feature, threshold, default_left, missing, left, right, leaves = [], [], [], [], [], [], []

            def walk(node: dict[str, Any]) -> int:
                if "leaf_value" in node or "split_feature" not in node:
                    leaves.append(float(node.get("leaf_value", 0.0)))
                    return ~(len(leaves) - 1)
                index = len(feature)
                feature.append(int(node["split_feature"]))
                threshold.append(float(node["threshold"]))
                default_left.append(bool(node["default_left"]))
                missing.append(_MISSING[node["missing_type"]])
                left.append(0)
                right.append(0)
                left[index] = walk(node["left_child"])
                right[index] = walk(node["right_child"])
                return index

            root = walk(info["tree_structure"])
            self.trees.append({
                "root": np.int64(root), "feature": np.asarray(feature, dtype=np.int64),
                "threshold": np.asarray(threshold, dtype=np.float64),
                "default_left": np.asarray(default_left, dtype=bool), "missing": np.asarray(missing, dtype=np.int8),
                "left": np.asarray(left, dtype=np.int64), "right": np.asarray(right, dtype=np.int64),
                "leaf": np.asarray(leaves, dtype=np.float64),
            })
            for f in set(feature):
                readers.setdefault(f, []).append(t)
        self.readers = {f: np.asarray(ts, dtype=np.int64) for f, ts in readers.items()}

    @staticmethod
    def supported(dump: dict[str, Any]) -> bool:
        """Only plain numerical binary trees (the challenger's kind) are walked here."""
        if dump.get("num_class", 1) != 1 or dump.get("num_tree_per_iteration", 1) != 1 or dump.get("average_output"):
            return False

        def plain(node: dict[str, Any]) -> bool:
            if "split_feature" not in node:
                return True
            return node.get("decision_type") == "<=" and plain(node["left_child"]) and plain(node["right_child"])

        return all(info.get("num_cat", 0) == 0 and plain(info["tree_structure"]) for info in dump["tree_info"])

    def trees_reading(self, columns: np.ndarray | list[int]) -> np.ndarray:
        """Indices of the trees that split on any of ``columns``."""
        found = [self.readers[c] for c in columns if c in self.readers]
        return np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)

    def outputs(self, x: np.ndarray, trees: np.ndarray) -> np.ndarray:
        """(n, len(trees)) leaf values of ``trees`` for the rows of ``x`` (n, columns)."""
        x = np.asarray(x, dtype=np.float64)
        out = np.empty((len(x), len(trees)))
        rows = np.arange(len(x))
        for k, t in enumerate(trees):
            tree = self.trees[int(t)]
            if tree["root"] < 0:
                out[:, k] = tree["leaf"][~int(tree["root"])]
                continue
            node = np.full(len(x), tree["root"], dtype=np.int64)
            active = rows
            while len(active):
                at = node[active]
                value = x[active, tree["feature"][at]]
                missing_type = tree["missing"][at]
                nan = np.isnan(value)
                is_missing = np.where(missing_type == 2, nan,
                                      (missing_type == 1) & (np.abs(np.where(nan, 0.0, value)) <= _ZERO))
                value = np.where(nan & (missing_type != 2), 0.0, value)
                go_left = np.where(is_missing, tree["default_left"][at], value <= tree["threshold"][at])
                node[active] = np.where(go_left, tree["left"][at], tree["right"][at])
                active = active[node[active] >= 0]
            out[:, k] = tree["leaf"][~node]
        return out

    def full(self, x: np.ndarray) -> np.ndarray:
        """Raw scores (sum over every tree) of the rows of ``x``."""
        return self.outputs(x, np.arange(len(self.trees))).sum(axis=1)
