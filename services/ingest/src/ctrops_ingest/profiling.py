"""Statistics of an upload, accumulated one block at a time in bounded memory.

- per column: missing cells, mean and standard deviation (Chan's parallel merge of
  per-block moments, numerically stable), min and max;
- ``seq`` lengths: an exact histogram (so the median is exact) of the valid rows;
- segments: rows, clicks and CTR by hour, day of week, inventory id and age group x
  gender, when those columns exist;
- duplicate rows: one 64-bit hash per row over its parsed values (two rows that differ
  only in how a number is spelled, ``1`` and ``1.0``, are duplicates; a dropped row-index
  column does not make rows unique). Hashes are kept (8 bytes a row) and counted exactly
  at the end; a false duplicate needs a 64-bit collision (odds about n^2 / 2^65, one in
  three hundred thousand for ten million rows).

``profile.json`` (``ProfileBuilder.profile``: a ``ctrops_common.documents.Profile``) is read by
the reporter and by ingest's own highlights (``highlights.py``, which the gateway's marketer dashboard
serves); its schema is that model (docs/ingest.md describes it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ctrops_common.documents import Profile

_NAN_BITS = np.uint64(0x7FF8000000000000)
HUGE = 2.0**500  # above this a block's squares (and soon its sums) would overflow float64


def _finite(value: float) -> float | None:
    """A statistic of values near float64's largest can itself be too large (a std over 1.8e308): None."""
    return value if math.isfinite(value) else None


def _splitmix(x: np.ndarray) -> np.ndarray:
    """A strong 64-bit mixer (SplitMix64 finaliser), vectorised; wraps modulo 2^64."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def row_hashes(columns: list[np.ndarray], extra: list[np.ndarray]) -> np.ndarray:
    """One hash per row over ``columns`` (float64, NaN for missing) and the ``extra`` uint64 columns."""
    n = len(columns[0]) if columns else len(extra[0])
    h = np.full(n, 0x243F6A8885A308D3, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j, col in enumerate(columns):
            bits = (col + 0.0).view(np.uint64)  # +0.0 folds -0.0 into 0.0
            bits = np.where(np.isnan(col), _NAN_BITS, bits)
            h = _splitmix(h ^ (bits + np.uint64(j)))
        for j, col in enumerate(extra, start=len(columns)):
            h = _splitmix(h ^ (col + np.uint64(j)))
    return h


def text_hashes(values: list[str | None]) -> np.ndarray:
    """Hashes of raw strings (Python's hash: fast, in C); None hashes as itself."""
    return np.fromiter((hash(v) for v in values), dtype=np.int64, count=len(values)).view(np.uint64)


@dataclass
class ColumnMoments:
    count: int = 0
    missing: int = 0
    mean: float = 0.0
    m2: float = 0.0  # sum of squared deviations from the mean
    low: float = math.inf
    high: float = -math.inf
    scale: float = 1.0  # mean and m2 are of value / scale (a power of two > 1 only for huge values)


class Segments:
    """Rows and clicks per value (or pair of values) of a key."""

    def __init__(self) -> None:
        self.rows: dict[Any, int] = {}
        self.clicks: dict[Any, int] = {}

    def add(self, keys: np.ndarray, clicked: np.ndarray) -> None:
        if not len(keys):
            return
        uniq, inverse = np.unique(keys, return_inverse=True)
        rows = np.bincount(inverse, minlength=len(uniq))
        clicks = np.bincount(inverse, weights=clicked, minlength=len(uniq))
        for key, r, c in zip(uniq.tolist(), rows.tolist(), clicks.tolist()):
            self.rows[key] = self.rows.get(key, 0) + r
            self.clicks[key] = self.clicks.get(key, 0) + int(c)

    def table(self) -> list[tuple[Any, int, int, float]]:
        return [(k, r, self.clicks[k], round(100 * self.clicks[k] / r, 4)) for k, r in self.rows.items()]


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


@dataclass
class ProfileBuilder:
    features: list[str]  # feature column names, in the order ``add_block`` receives them
    max_segment_values: int = 200
    moments: list[ColumnMoments] = field(init=False)
    seq_lengths: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    hashes: list[np.ndarray] = field(default_factory=list)
    segments: dict[str, Segments] = field(init=False)

    def __post_init__(self) -> None:
        self.moments = [ColumnMoments() for _ in self.features]
        self.segments = {k: Segments() for k in ("hour", "day_of_week", "inventory_id", "age_group_gender")}
        self._position = {name: i for i, name in enumerate(self.features)}

    def add_block(self, columns: list[pa.Array], clicked: np.ndarray, seq_lengths: np.ndarray | None,
                  row_hash: np.ndarray) -> None:
        """``columns``: the features' float64 arrays (null for missing, finite values), in
        ``features`` order; ``clicked``: int8 with -1 for bad values; ``seq_lengths``: token
        counts of the rows whose seq is valid; ``row_hash``: one hash per row."""
        for moments, column in zip(self.moments, columns):
            self._add_moments(moments, column)
        if seq_lengths is not None and len(seq_lengths):
            counts = np.bincount(seq_lengths)
            if len(counts) > len(self.seq_lengths):
                counts[: len(self.seq_lengths)] += self.seq_lengths
                self.seq_lengths = counts
            else:
                self.seq_lengths[: len(counts)] += counts
        self.hashes.append(row_hash)
        self._add_segments(columns, clicked)

    @staticmethod
    def _add_moments(m: ColumnMoments, column: pa.Array) -> None:
        """Arrow's kernels skip nulls without copying; blocks merge with Chan's formula."""
        m.missing += column.null_count
        nb = len(column) - column.null_count
        if nb == 0:
            return
        low_high = pc.min_max(column)
        low, high = low_high["min"].as_py(), low_high["max"].as_py()
        biggest = max(abs(low), abs(high))
        if biggest > HUGE:
            # Finite but huge values (1e308 is a float): their sum and squares overflow to inf.
            # Keep the moments of value / scale instead, with scale a power of two (exact).
            scale = max(m.scale, 2.0 ** (math.frexp(biggest)[1] - 1))  # value / scale within +-2
            if scale > m.scale:
                ratio = m.scale / scale
                m.mean *= ratio
                m.m2 *= ratio * ratio
                m.scale = scale
        if m.scale != 1.0:
            column = pc.divide(column, pa.scalar(m.scale))
        mean = pc.mean(column).as_py()
        m2 = pc.variance(column, ddof=0).as_py() * nb
        total = m.count + nb
        delta = mean - m.mean
        m.mean += delta * nb / total
        m.m2 += m2 + delta * delta * m.count * nb / total
        m.count = total
        m.low = min(m.low, low)
        m.high = max(m.high, high)

    def _add_segments(self, columns: list[pa.Array], clicked: np.ndarray) -> None:
        valid = clicked >= 0

        def values(name: str) -> np.ndarray | None:
            j = self._position.get(name)
            return None if j is None else columns[j].to_numpy(zero_copy_only=False)  # NaN for missing

        for name in ("hour", "day_of_week", "inventory_id"):
            col = values(name)
            if col is not None:
                keep = valid & ~np.isnan(col)
                self.segments[name].add(col[keep], clicked[keep])
        a, g = values("age_group"), values("gender")
        if a is not None and g is not None:
            keep = valid & ~np.isnan(a) & ~np.isnan(g)
            # complex numbers sort by (real, imag): one np.unique over the pairs
            self.segments["age_group_gender"].add(a[keep] + 1j * g[keep], clicked[keep])

    # -- results ------------------------------------------------------------------

    def duplicate_rows(self) -> int:
        if not self.hashes:
            return 0
        everything = np.concatenate(self.hashes)
        return int(len(everything) - len(np.unique(everything)))

    def column_stats(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name, m in zip(self.features, self.moments):
            has = m.count > 0
            out[name] = {
                "missing": m.missing,
                "mean": _finite(m.mean * m.scale) if has else None,
                "std": (_finite(math.sqrt(m.m2 / (m.count - 1)) * m.scale) if m.count > 1
                        else (0.0 if has else None)),
                "min": m.low if has else None,
                "max": m.high if has else None,
            }
        return out

    def seq_stats(self) -> dict[str, float | int | None]:
        hist = self.seq_lengths
        total = int(hist.sum())
        if total == 0:
            return {"min_len": None, "median_len": None, "max_len": None, "mean_len": None}
        lengths = np.flatnonzero(hist)
        cumulative = np.cumsum(hist)
        lower = int(np.searchsorted(cumulative, (total - 1) // 2, side="right"))
        upper = int(np.searchsorted(cumulative, total // 2, side="right"))
        return {
            "min_len": int(lengths[0]),
            "median_len": (lower + upper) / 2,
            "max_len": int(lengths[-1]),
            "mean_len": float((hist * np.arange(len(hist))).sum() / total),
        }

    def segment_tables(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for name in ("hour", "day_of_week"):
            out[name] = [{"value": _number(k), "rows": r, "clicks": c, "ctr": ctr}
                         for k, r, c, ctr in sorted(self.segments[name].table())]
        busiest = sorted(self.segments["inventory_id"].table(), key=lambda t: (-t[1], t[0]))
        out["inventory_id"] = [{"value": _number(k), "rows": r, "clicks": c, "ctr": ctr}
                               for k, r, c, ctr in busiest[: self.max_segment_values]]
        pairs = sorted(self.segments["age_group_gender"].table(), key=lambda t: (t[0].real, t[0].imag))
        out["age_group_gender"] = [{"age_group": k.real, "gender": k.imag, "rows": r, "clicks": c, "ctr": ctr}
                                   for k, r, c, ctr in pairs[: self.max_segment_values]]
        return out

    def profile(self, extra_columns: dict[str, dict[str, Any]] | None = None) -> Profile:
        columns = self.column_stats()
        for name, extra in (extra_columns or {}).items():
            columns.setdefault(name, {}).update(extra)
        return Profile.model_validate({"columns": columns, "seq": self.seq_stats(), "segments": self.segment_tables()})
