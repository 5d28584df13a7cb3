"""``ctrops-datagen``: synthetic ad-click logs in the Toss layout with a planted, known signal.

119 columns (../shared/spec/dataset.md), realistic ranges, blocks of columns missing
together, ``seq`` lengths from a few tokens to a few thousand, about 2% clicks. The click
probability follows a logistic model whose terms are written to a sidecar JSON
(``<out>.truth.json``) with the exact row and click counts, so tests can check the
platform's numbers and explanations against ground truth, and each row's generating click
probability to ``<out>.oracle.npy`` (float64, file order): the oracle, whose AUC (over the
whole file in the sidecar, or on any subset of rows from the array) is the best any model
can reach on that file.

``--variant`` says where the signal lives (``VARIANTS``; the columns are drawn the same way
in all of them, only the logit and the planted tokens differ, and every variant's tokens and
features are its own, so a model that finds them knows nothing about them in advance):
``mixed`` (the default, below), ``tabular`` (joint indicators and products of two features
only), ``seq`` (recent tokens only, one of them also planted outside its window as a decoy),
``hour`` (one hour window) and ``none`` (constant probability: nothing to find). The sidecar
names the ``drivers`` (feature, kind, sign of the effect, weight, effect in words) and the
``non_drivers`` (every other column). The default variant's file is byte for byte what it was
before variants existed.

The planted logit of ``mixed``, per row (``PLANTED`` and the sidecar say the same):

    0.8 * z(history_a_1) + 0.9 * [hour in 19..22] + 0.8 * [l_feat_14 in {3, 7}]
    + 0.6 * [age_group == 5] + 0.5 * z(feat_a_3)
    + 1.4 * [token 497 among the 16 most recent seq tokens]
    + 0.9 * [token 251 among the 16 most recent seq tokens] + intercept

(z = standardised within the 50,000-row chunk; the intercept is solved on the first chunk
for the target CTR). Each signal token is planted in about 12% of rows at a random
position among the last 16 tokens; ordinary tokens are 1..479 (Zipf-distributed), so 497
only ever appears where planted while 251 also occurs naturally (in about 1% of rows) and
counts there too. Presence is measured on the final sequence. Dropping ``seq`` or keeping
only its oldest tokens loses this part of the signal; a recent-token window keeps it.
Every other column is noise. Blocks of columns (feat_e_*, history_b_21..30) go missing
together after the signal is computed.

``drift_sequence(kind)`` gives a deployed model's life instead of one file: monthly labelled
files (Toss layout, the ``mixed`` signal) where the click behaviour shifts at a known month, in a
driver's distribution (``feature``), in a driver's effect (``relation``) or in the base click rate
(``base_rate``), with the ground truth (shift month, feature, the alert it should raise).

Other options: ``--size-mb`` (a file of about that size instead of ``--rows``), ``--encoding
cp949`` / ``utf-8-sig``, ``--names renamed|korean`` (readable English or Korean names for a
few anonymous columns) and ``--index-column`` (a trailing unnamed row index).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from .dataset import SEQUENCE, TARGET, toss_columns
from .time_columns import DATE_COLUMN

CHUNK_ROWS = 50_000  # fixed, so the output depends on the seed only
VOCAB = 480  # ordinary tokens are 1..VOCAB-1
RECENT = 16
SEQ_TOKENS = {497: 1.4, 251: 0.9}  # token -> logit added when among the last RECENT tokens (variant "mixed")
INVENTORY_IDS = np.array([2, 11, 29, 36, 37, 42, 43, 46, 88, 91, 92])

PLANTED = [
    {"feature": "history_a_1", "effect": "+0.8 logit per standard deviation"},
    {"feature": "hour", "effect": "+0.9 logit for hours 19-22"},
    {"feature": "l_feat_14", "effect": "+0.8 logit for ad sets 3 and 7"},
    {"feature": "age_group", "effect": "+0.6 logit for age group 5"},
    {"feature": "feat_a_3", "effect": "+0.5 logit per standard deviation"},
    {"feature": "seq", "effect": "+1.4 logit if token 497, +0.9 if token 251 is among the 16 most recent tokens"},
]
PLANTED_TABULAR = ["history_a_1", "hour", "l_feat_14", "age_group", "feat_a_3"]


@dataclass(frozen=True)
class SeqToken:
    """A planted ``seq`` token: ``weight`` logit when it is among the ``window`` most recent tokens.

    Planted in a share ``rate`` of rows at a random position inside the window and, with
    ``decoy`` > 0, in that share of rows at a position older than the window, where it counts
    for nothing (so only recency carries the signal)."""

    token: int
    weight: float
    window: int
    rate: float
    decoy: float = 0.0


@dataclass(frozen=True)
class Variant:
    """Where a data set's signal lives: its tabular logit, its planted tokens and the truth about both.

    ``drivers`` lists every feature that moves the click probability, each with ``kind``
    (linear, values, threshold (above ``threshold``, or ``threshold_sd`` standard deviations above
    the mean), product (of the parts above the means of the feature and its ``partner``), tokens),
    ``sign`` (+1: the named values, or higher values, raise CTR; -1: they lower it; 0: no single
    direction, as for a ``seq`` whose tokens both raise and lower CTR),
    the logit ``weight`` and the effect in words; every other column is a non-driver.
    """

    name: str
    summary: str
    logit: Callable[[dict[str, np.ndarray]], np.ndarray]
    drivers: tuple[dict, ...]
    tokens: tuple[SeqToken, ...] = ()


def _z(cols: dict[str, np.ndarray], c: str) -> np.ndarray:
    return (cols[c] - cols[c].mean()) / (cols[c].std() + 1e-9)


def _mixed_logit(cols: dict[str, np.ndarray]) -> np.ndarray:
    return (
        0.8 * _z(cols, "history_a_1")
        + 0.9 * np.isin(cols["hour"], [19, 20, 21, 22])
        + 0.8 * np.isin(cols["l_feat_14"], [3, 7])
        + 0.6 * (cols["age_group"] == 5)
        + 0.5 * _z(cols, "feat_a_3")
    )


def _tabular_logit(cols: dict[str, np.ndarray]) -> np.ndarray:
    """Only joint effects: no term depends on one feature alone."""
    return (
        1.5 * (np.isin(cols["day_of_week"], [6, 7]) & np.isin(cols["inventory_id"], [36, 88]))
        + 1.5 * ((_z(cols, "feat_c_5") > 0.5) & (cols["history_b_3"] > 1.0))
        + 1.0 * np.maximum(_z(cols, "history_a_6"), 0.0) * (cols["age_group"] >= 6)
        + 1.0 * np.maximum(_z(cols, "feat_d_4"), 0.0) * np.maximum(_z(cols, "l_feat_11"), 0.0)
    )


def _hour_logit(cols: dict[str, np.ndarray]) -> np.ndarray:
    return 1.8 * np.isin(cols["hour"], [10, 11, 12, 13])


def _no_logit(cols: dict[str, np.ndarray]) -> np.ndarray:
    return np.zeros(len(cols["hour"]))


def _driver(feature: str, kind: str, sign: int, weight: float, effect: str, **extra) -> dict:
    return {"feature": feature, "kind": kind, "sign": sign, "weight": weight, "effect": effect, **extra}


VARIANTS: dict[str, Variant] = {
    "mixed": Variant(
        "mixed", "tabular main effects, an hour window and recent seq tokens (the original formula)",
        _mixed_logit,
        (
            _driver("history_a_1", "linear", 1, 0.8, "+0.8 logit per standard deviation"),
            _driver("hour", "values", 1, 0.9, "+0.9 logit for hours 19-22", values=[19, 20, 21, 22]),
            _driver("l_feat_14", "values", 1, 0.8, "+0.8 logit for ad sets 3 and 7", values=[3, 7]),
            _driver("age_group", "values", 1, 0.6, "+0.6 logit for age group 5", values=[5]),
            _driver("feat_a_3", "linear", 1, 0.5, "+0.5 logit per standard deviation"),
            _driver("seq", "tokens", 1, 1.4,
                    "+1.4 logit if token 497, +0.9 if token 251 is among the 16 most recent tokens",
                    tokens={"497": 1.4, "251": 0.9}, windows={"497": RECENT, "251": RECENT}),
        ),
        (SeqToken(497, 1.4, RECENT, 0.12), SeqToken(251, 0.9, RECENT, 0.12)),
    ),
    "tabular": Variant(
        "tabular", "tabular interactions only (joint indicators and products of two features), no seq signal",
        _tabular_logit,
        (
            _driver("day_of_week", "values", 1, 1.5, "+1.5 logit for days 6-7 together with inventory 36 or 88",
                    values=[6, 7], partner="inventory_id"),
            _driver("inventory_id", "values", 1, 1.5, "+1.5 logit for inventory 36 or 88 together with days 6-7",
                    values=[36, 88], partner="day_of_week"),
            _driver("feat_c_5", "threshold", 1, 1.5, "+1.5 logit above mean + 0.5 sd together with "
                    "history_b_3 > 1", threshold_sd=0.5, partner="history_b_3"),
            _driver("history_b_3", "threshold", 1, 1.5, "+1.5 logit above 1 together with feat_c_5 above "
                    "mean + 0.5 sd", threshold=1.0, partner="feat_c_5"),
            _driver("history_a_6", "linear", 1, 1.0,
                    "+1.0 logit per standard deviation above the mean, for age groups 6-8 only",
                    partner="age_group"),
            _driver("age_group", "values", 1, 1.0, "age groups 6-8 gain +1.0 logit per sd of history_a_6 above "
                    "its mean", values=[6, 7, 8], partner="history_a_6"),
            _driver("feat_d_4", "product", 1, 1.0, "+1.0 x (sd of feat_d_4 above its mean) x (sd of l_feat_11 "
                    "above its mean): higher raises CTR where l_feat_11 is above its mean too", partner="l_feat_11"),
            _driver("l_feat_11", "product", 1, 1.0, "+1.0 x (sd of feat_d_4 above its mean) x (sd of l_feat_11 "
                    "above its mean): higher raises CTR where feat_d_4 is above its mean too", partner="feat_d_4"),
        ),
    ),
    "seq": Variant(
        "seq", "recent seq tokens only (two raise CTR, one lowers it), nothing tabular",
        _no_logit,
        (
            _driver("seq", "tokens", 0, 1.6,
                    "+1.6 logit if token 333 is among the 8 most recent tokens (also planted older, where it "
                    "counts for nothing), +1.0 if token 58 is among the 16 most recent, -1.3 if token 140 is "
                    "among the 8 most recent",
                    tokens={"333": 1.6, "58": 1.0, "140": -1.3}, windows={"333": 8, "58": 16, "140": 8}),
        ),
        (SeqToken(333, 1.6, 8, 0.10, decoy=0.10), SeqToken(58, 1.0, 16, 0.12), SeqToken(140, -1.3, 8, 0.20)),
    ),
    "hour": Variant(
        "hour", "an hour window only",
        _hour_logit,
        (_driver("hour", "values", 1, 1.8, "+1.8 logit for hours 10-13", values=[10, 11, 12, 13]),),
    ),
    "none": Variant("none", "no planted signal: every feature is noise, the click probability is constant",
                    _no_logit, ()),
}
DEFAULT_VARIANT = "mixed"


def _seq_tokens(rng: np.random.Generator, n: int,
                tokens: tuple[SeqToken, ...] = ()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flat tokens, row end offsets, logit effect). Row i's tokens are ``flat[ends[i-1]:ends[i]]``."""
    lengths = np.clip(rng.lognormal(mean=4.6, sigma=0.9, size=n), 3, 3000).astype(np.int64)
    flat = rng.zipf(1.3, size=int(lengths.sum())) % (VOCAB - 1) + 1
    ends = np.cumsum(lengths)
    for spec in tokens:
        plant = rng.random(n) < spec.rate
        for i in np.flatnonzero(plant):
            window = min(spec.window, int(lengths[i]))
            flat[ends[i] - 1 - rng.integers(window)] = spec.token
        if spec.decoy:
            # Also planted where it does not count (older than the window): only recency carries signal.
            old = (rng.random(n) < spec.decoy) & (lengths > spec.window)
            for i in np.flatnonzero(old):
                flat[ends[i] - lengths[i] + rng.integers(lengths[i] - spec.window)] = spec.token
    # Measured on the final sequences, after all planting: a token planted over another removes
    # the other's effect, and a signal token that the ordinary draw put in the window counts too.
    row_of = np.repeat(np.arange(n), lengths)
    effect = np.zeros(n)
    for spec in tokens:
        recent = np.arange(len(flat)) >= (ends - np.minimum(lengths, spec.window))[row_of]
        present = np.zeros(n, dtype=bool)
        present[row_of[recent & (flat == spec.token)]] = True
        effect += spec.weight * present
    return flat, ends, effect


def _chunk(rng: np.random.Generator, n: int,
           variant: str = DEFAULT_VARIANT) -> tuple[dict[str, np.ndarray], np.ndarray, pa.Array]:
    cols: dict[str, np.ndarray] = {}
    cols["gender"] = rng.choice([1.0, 2.0], size=n, p=[0.55, 0.45])
    cols["age_group"] = rng.choice(np.arange(1.0, 9.0), size=n, p=[0.02, 0.08, 0.17, 0.22, 0.21, 0.15, 0.10, 0.05])
    cols["inventory_id"] = rng.choice(INVENTORY_IDS, size=n).astype(np.float64)
    cols["day_of_week"] = rng.integers(1, 8, size=n).astype(np.float64)
    hour_weights = np.array([2, 1, 1, 1, 1, 2, 3, 5, 6, 6, 6, 6, 7, 6, 6, 6, 6, 7, 8, 9, 9, 8, 6, 4], dtype=float)
    cols["hour"] = rng.choice(24, size=n, p=hour_weights / hour_weights.sum()).astype(np.float64)
    for i in range(1, 28):
        if i == 14:
            cols["l_feat_14"] = rng.choice(np.arange(1, 21), size=n).astype(np.float64)
        elif i % 3 == 0:
            cols[f"l_feat_{i}"] = rng.integers(0, 50, size=n).astype(np.float64)
        else:
            cols[f"l_feat_{i}"] = np.round(rng.gamma(2.0, 1.5, size=n), 3)
    for block, count in (("a", 18), ("b", 6), ("c", 8), ("d", 6), ("e", 10)):
        for i in range(1, count + 1):
            cols[f"feat_{block}_{i}"] = np.round(rng.normal(0, 1, size=n) * (i % 4 + 1) + i, 4)
    for i in range(1, 8):
        cols[f"history_a_{i}"] = np.round(rng.normal(0, 1, size=n), 5)
    for i in range(1, 31):
        cols[f"history_b_{i}"] = np.round(rng.exponential(1.0, size=n), 5)

    spec = VARIANTS[variant]
    flat, ends, seq_effect = _seq_tokens(rng, n, spec.tokens)
    logit = spec.logit(cols) + seq_effect

    # Blocks missing together, as in the real data (after the signal is computed).
    for block_cols, rate in ((["feat_e_%d" % i for i in range(1, 11)], 0.15),
                             (["history_b_%d" % i for i in range(21, 31)], 0.10)):
        gone = rng.random(n) < rate
        for c in block_cols:
            cols[c][gone] = np.nan
    for i in (2, 5, 8):
        cols[f"l_feat_{i}"][rng.random(n) < 0.01] = np.nan
    offsets = pa.array(np.concatenate([[0], ends]).astype(np.int32))
    tokens = pa.ListArray.from_arrays(offsets, pa.array(flat)).cast(pa.list_(pa.string()))
    return cols, logit, pc.binary_join(tokens, ",")


def _arrays(names: list[str], cols: dict[str, np.ndarray], clicked: np.ndarray, seq_text: pa.Array) -> list[pa.Array]:
    """One chunk's columns in file order, as the CSV writer takes them (NaN written as empty)."""
    arrays = []
    for c in names:
        if c == "seq":
            arrays.append(seq_text)
        elif c == "clicked":
            arrays.append(pa.array(clicked))
        elif c == "inventory_id":
            arrays.append(pa.array(cols[c]).cast(pa.int64()))
        else:
            arrays.append(pa.array(cols[c], mask=np.isnan(cols[c])))
    return arrays


def _intercept_for(logit: np.ndarray, ctr: float) -> float:
    lo, hi = -20.0, 5.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if (1 / (1 + np.exp(-(logit + mid)))).mean() > ctr:
            hi = mid
        else:
            lo = mid
    return (lo + hi) / 2


# Readable names for some anonymous columns, as in the customer's "renamed" file, and
# Korean ones (for the CP949 case). Planted and required columns keep their names.
NAME_SETS: dict[str, dict[str, str]] = {
    "toss": {},
    "renamed": {"feat_b_1": "content_category_id", "feat_c_1": "scroll_depth_percentage",
                "history_a_2": "impression_count_7d", "feat_d_1": "device_type"},
    "korean": {"feat_b_1": "콘텐츠_카테고리", "feat_c_1": "스크롤_깊이", "history_a_2": "최근_7일_노출수"},
}


def generate(out: Path, rows: int | None = None, seed: int = 42, ctr: float = 0.0192, encoding: str = "utf-8",
             rename: dict[str, str] | None = None, *, size_mb: float | None = None,
             index_column: bool = False, variant: str = DEFAULT_VARIANT,
             progress: Callable[[int, int], None] | None = None) -> dict:
    """Write ``rows`` rows (or about ``size_mb`` MB) to ``out``, the ground truth to
    ``<out>.truth.json`` and each row's generating click probability (float64, file order)
    to ``<out>.oracle.npy``; return the truth.

    Chunk ``i`` draws from its own seed (``SeedSequence(seed, spawn_key=(i,))``), so a
    file is the same for the same seed (and, from 50,000 rows on, its full 50,000-row chunks
    do not depend on the total size).
    ``index_column`` appends an unnamed row-index column, as some exports have.
    ``progress(rows_written, bytes_written)`` is called after each chunk (the CLI's progress bar).
    """
    if (rows is None) == (size_mb is None):
        raise ValueError("give either rows or size_mb")
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    spec = VARIANTS[variant]
    target_bytes = int(size_mb * 1e6) if size_mb is not None else None
    names = toss_columns()
    header = [rename.get(c, c) if rename else c for c in names] + ([""] if index_column else [])
    text_encoding = "utf-8" if encoding == "utf-8-sig" else encoding  # the BOM goes once, before the header
    intercept = None
    clicks = 0
    written = 0
    chunk = 0
    probabilities: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    with open(out, "wb") as raw:
        raw.write((",".join(header) + "\n").encode(encoding))
        while True:
            if rows is not None:
                n = min(CHUNK_ROWS, rows - written)
            else:
                size = raw.tell()
                if size >= target_bytes:
                    break
                per_row = size / written if written else 1200.0
                n = int(min(CHUNK_ROWS, max(1, -(-(target_bytes - size) // per_row))))
            if n <= 0:
                break
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(chunk,)))
            cols, logit, seq_text = _chunk(rng, n, variant)
            if intercept is None:
                intercept = _intercept_for(logit, ctr)
            probability = 1 / (1 + np.exp(-(logit + intercept)))
            clicked = (rng.random(n) < probability).astype(np.int8)
            clicks += int(clicked.sum())
            probabilities.append(probability)
            labels.append(clicked)
            arrays = _arrays(names, cols, clicked, seq_text)
            if index_column:
                arrays.append(pa.array(np.arange(written, written + n)))
            table = pa.Table.from_arrays(arrays, names=[f"c{i}" for i in range(len(arrays))])
            sink = pa.BufferOutputStream()
            pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
            data = sink.getvalue().to_pybytes()
            raw.write(data if text_encoding == "utf-8" else data.decode("utf-8").encode(text_encoding))
            written += n
            chunk += 1
            if progress is not None:
                progress(written, raw.tell())
    named = (lambda c: rename.get(c, c)) if rename else (lambda c: c)
    oracle = np.concatenate(probabilities) if probabilities else np.zeros(0)
    np.save(f"{out}.oracle.npy", oracle)
    drivers = [{**d, "feature": named(d["feature"])} for d in spec.drivers]
    driver_names = {d["feature"] for d in drivers}
    features = [named(c) for c in names if c != TARGET]
    truth = {
        "rows": written,
        "clicks": clicks,
        "non_clicks": written - clicks,
        "ctr_percent": round(100 * clicks / written, 4) if written else 0.0,
        "columns": header,
        "encoding": encoding,
        "seed": seed,
        "variant": variant,
        "summary": spec.summary,
        "drivers": drivers,
        "non_drivers": [c for c in features if c not in driver_names],
        "oracle_auc": round(roc_auc(np.concatenate(labels), oracle), 6) if labels else 0.5,
        "oracle": f"{Path(out).name}.oracle.npy",
        "planted": [{"feature": d["feature"], "effect": d["effect"]} for d in drivers],
        "planted_tabular": [d["feature"] for d in drivers if d["feature"] != SEQUENCE],
        "seq_signal": _seq_signal(spec.tokens),
        "intercept": intercept,
    }
    Path(f"{out}.truth.json").write_text(json.dumps(truth, indent=2, ensure_ascii=False))
    return truth


def _seq_signal(tokens: tuple[SeqToken, ...]) -> dict | None:
    if not tokens:
        return None
    windows = {str(t.token): t.window for t in tokens}
    signal = {"tokens": {str(t.token): t.weight for t in tokens}, "recent_window": max(windows.values())}
    if len(set(windows.values())) == 1:
        signal["measured"] = f"on the final sequence: a token counts when it is among the last {tokens[0].window}"
    else:
        signal["windows"] = windows
        signal["measured"] = "on the final sequence: a token counts when it is among the last <its window> tokens"
    return signal


# -- a model's life: monthly labelled files whose click behaviour shifts at a known month ----------

DRIFT_KINDS = ("feature", "relation", "base_rate")
DRIFT_FEATURE = "history_a_1"  # the strongest tabular driver of the mixed variant (+0.8 logit per sd)
DRIFT_FEATURE_SHIFT = 1.0  # "feature": history_a_1 ~ N(1, 1) instead of N(0, 1) from the shift month
DRIFT_RELATION_WEIGHT = -0.8  # "relation": its effect turns from +0.8 to -0.8 logit per sd
DRIFT_BASE_RATE_FACTOR = 2.5  # "base_rate": the odds of a click multiply by this for every row


@dataclass
class DriftMonth:
    """One month of labelled rows in the Toss layout (``table``), with each row's true probability."""

    label: str  # "2026-01"
    table: pa.Table  # the Toss columns in file order, ``clicked`` included
    oracle: np.ndarray  # each row's generating click probability
    shifted: bool  # at or after the shift month

    @property
    def clicks(self) -> int:
        return int(pc.sum(self.table.column(TARGET)).as_py() or 0)

    def csv_bytes(self) -> bytes:
        """The month as a CSV file exactly like ``generate`` writes one (UTF-8, header, empty = missing)."""
        sink = pa.BufferOutputStream()
        renamed = self.table.rename_columns([f"c{i}" for i in range(self.table.num_columns)])
        pacsv.write_csv(renamed, sink, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
        return (",".join(self.table.column_names) + "\n").encode() + sink.getvalue().to_pybytes()

    def csv_text(self) -> str:
        return self.csv_bytes().decode()


@dataclass
class DriftSequence:
    """Monthly labelled files where the click behaviour shifts at ``truth["shift_month"]``."""

    kind: str
    months: list[DriftMonth]
    truth: dict

    @property
    def labels(self) -> list[str]:
        return [m.label for m in self.months]

    @property
    def shift_month(self) -> str:
        return self.truth["shift_month"]

    @property
    def feature(self) -> str | None:
        return self.truth["feature"]

    def combined_table(self, labels: list[str] | None = None, *, seed: int = 0) -> pa.Table:
        """The months ``labels`` (default all) as one table in time order, with a ``date`` column first
        (``YYYY-MM-DD``): each row a seeded random day of its own month, rows kept in their month's
        order (so within a month the days are not sorted, as in a real export)."""
        chosen = self.labels if labels is None else list(labels)
        unknown = [label for label in chosen if label not in self.labels]
        if unknown or not chosen:
            raise ValueError(f"months must be some of {', '.join(self.labels)}, not {unknown or 'none'}")
        tables = []
        for month in (m for m in self.months if m.label in chosen):
            first = np.datetime64(month.label, "D")
            days = int(((np.datetime64(month.label, "M") + 1).astype("datetime64[D]") - first).astype(np.int64))
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(int(first.astype(np.int64)),)))
            dates = first + rng.integers(0, days, month.table.num_rows)
            tables.append(month.table.add_column(0, DATE_COLUMN, pa.array(dates.astype(str))))
        return pa.concat_tables(tables)

    def combined_csv_bytes(self, labels: list[str] | None = None, *, seed: int = 0) -> bytes:
        """``combined_table`` as one CSV (a date per row, inside its month), written like ``csv_bytes``."""
        table = self.combined_table(labels, seed=seed)
        return DriftMonth("combined", table, np.zeros(0), False).csv_bytes()

    def write(self, folder: Path) -> list[Path]:
        """``<folder>/<month>.csv`` per month and ``<folder>/drift.truth.json``; returns the CSV paths."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for month in self.months:
            path = folder / f"{month.label}.csv"
            path.write_bytes(month.csv_bytes())
            paths.append(path)
        (folder / "drift.truth.json").write_text(json.dumps(self.truth, indent=2, ensure_ascii=False))
        return paths


def _month_labels(start: str, count: int) -> list[str]:
    try:
        year, month = (int(part) for part in start.split("-"))
    except ValueError:
        raise ValueError(f"start must be a month like 2026-01, not {start!r}") from None
    if not 1 <= month <= 12:
        raise ValueError(f"start must be a month like 2026-01, not {start!r}")
    labels = []
    for i in range(count):
        y, m = divmod(month - 1 + i, 12)
        labels.append(f"{year + y:04d}-{m + 1:02d}")
    return labels


def _drift_logit(cols: dict[str, np.ndarray], driver_weight: float) -> np.ndarray:
    """The mixed variant's tabular logit with FIXED standardisation (the generating distributions'
    moments, not the chunk's): a shifted feature then moves the click rate, as it would in life."""
    return (
        driver_weight * cols[DRIFT_FEATURE]  # N(0, 1) before any shift
        + 0.9 * np.isin(cols["hour"], [19, 20, 21, 22])
        + 0.8 * np.isin(cols["l_feat_14"], [3, 7])
        + 0.6 * (cols["age_group"] == 5)
        + 0.5 * (cols["feat_a_3"] - 3.0) / 4.0  # feat_a_3 ~ 4 * N(0, 1) + 3
    )


def drift_sequence(kind: str, *, months: int = 6, shift_at: int = 3, rows_per_month: int = 20_000,
                   start: str = "2026-01", seed: int = 42, ctr: float = 0.0192) -> DriftSequence:
    """``months`` monthly labelled files (Toss layout, the ``mixed`` variant's signal) where, from
    month index ``shift_at`` on, the click behaviour shifts in one of three ways (``kind``):

    - ``"feature"``: the driver ``history_a_1`` shifts by one standard deviation (N(1, 1)); its
      effect stays the same, so more rows click. Expected alert: feature drift on history_a_1.
    - ``"relation"``: history_a_1 keeps its distribution but its effect flips from +0.8 to -0.8 logit
      per sd; the click rate barely moves, the old model's ranking breaks. Expected alert: AUC drop.
    - ``"base_rate"``: every row's click odds multiply by 2.5 (about 2.4x the clicks); features and
      ranking unchanged. Expected alert: calibration (predicted / actual clicks about 0.4).

    Months are drawn independently (``SeedSequence(seed, spawn_key=(month, chunk))``); the
    intercept is solved once on the first month for ``ctr``. Returns the months (tables, oracle
    probabilities) and the ground truth: labels, shift month, feature, expected alert, per-month
    rows, clicks and oracle AUC.
    """
    if kind not in DRIFT_KINDS:
        raise ValueError(f"unknown drift kind {kind!r}; choose one of {', '.join(DRIFT_KINDS)}")
    if months < 2 or not 1 <= shift_at < months:
        raise ValueError("need at least 2 months and 1 <= shift_at < months (a month before and one after)")
    if rows_per_month < 1:
        raise ValueError("rows_per_month must be at least 1")
    labels = _month_labels(start, months)
    names = toss_columns()
    intercept = None
    out: list[DriftMonth] = []
    per_month = []
    for index, label in enumerate(labels):
        shifted = index >= shift_at
        tables, oracles = [], []
        written = 0
        chunk = 0
        while written < rows_per_month:
            n = min(CHUNK_ROWS, rows_per_month - written)
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index, chunk)))
            cols, logit, seq_text = _chunk(rng, n, DEFAULT_VARIANT)
            seq_effect = logit - _mixed_logit(cols)  # the planted tokens' part of the logit
            if shifted and kind == "feature":
                cols[DRIFT_FEATURE] = np.round(cols[DRIFT_FEATURE] + DRIFT_FEATURE_SHIFT, 5)
            weight = DRIFT_RELATION_WEIGHT if shifted and kind == "relation" else 0.8
            month_logit = _drift_logit(cols, weight) + seq_effect
            if intercept is None:
                intercept = _intercept_for(_drift_logit(cols, 0.8) + seq_effect, ctr)
            offset = np.log(DRIFT_BASE_RATE_FACTOR) if shifted and kind == "base_rate" else 0.0
            probability = 1 / (1 + np.exp(-(month_logit + intercept + offset)))
            clicked = (rng.random(n) < probability).astype(np.int8)
            tables.append(pa.Table.from_arrays(_arrays(names, cols, clicked, seq_text), names=names))
            oracles.append(probability)
            written += n
            chunk += 1
        table = pa.concat_tables(tables)
        oracle = np.concatenate(oracles)
        month = DriftMonth(label, table, oracle, shifted)
        out.append(month)
        labels_array = table.column(TARGET).to_numpy()
        per_month.append({
            "month": label, "rows": table.num_rows, "clicks": month.clicks,
            "ctr_percent": round(100 * month.clicks / table.num_rows, 4), "shifted": shifted,
            "oracle_auc": round(roc_auc(labels_array, oracle), 6),
        })
    feature = None if kind == "base_rate" else DRIFT_FEATURE
    expected = {"feature": "feature_drift", "relation": "auc_drop", "base_rate": "calibration"}[kind]
    described = {
        "feature": f"{DRIFT_FEATURE} shifts by {DRIFT_FEATURE_SHIFT:g} standard deviation (same effect on clicks)",
        "relation": f"the effect of {DRIFT_FEATURE} turns from +0.8 to {DRIFT_RELATION_WEIGHT:+g} logit per sd",
        "base_rate": f"every row's click odds multiply by {DRIFT_BASE_RATE_FACTOR:g}",
    }[kind]
    truth = {
        "kind": kind, "months": labels, "shift_index": shift_at, "shift_month": labels[shift_at],
        "feature": feature, "expected_alert": expected, "change": described, "rows_per_month": rows_per_month,
        "seed": seed, "ctr": ctr, "intercept": intercept, "per_month": per_month,
    }
    return DriftSequence(kind, out, truth)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve with ties counted half (mid-ranks); 0.5 when a class is absent."""
    labels = np.asarray(labels).astype(bool)
    positives = int(labels.sum())
    negatives = labels.size - positives
    if positives == 0 or negatives == 0:
        return 0.5
    order = np.argsort(scores, kind="mergesort")
    ordered = np.asarray(scores)[order]
    starts = np.r_[0, np.flatnonzero(np.diff(ordered)) + 1]
    counts = np.diff(np.r_[starts, ordered.size])
    mid = starts + (counts + 1) / 2.0  # 1-based mid-rank of each run of equal scores
    ranks = np.empty(labels.size)
    ranks[order] = np.repeat(mid, counts)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ctrops-datagen", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="CSV file to write")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--rows", type=int, default=None, help="rows to write (default 60000)")
    size.add_argument("--size-mb", type=float, default=None, help="write about this many MB instead of --rows")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--ctr", type=float, default=0.0192, help="target click rate (fraction)")
    parser.add_argument("--encoding", default="utf-8", choices=["utf-8", "utf-8-sig", "cp949"])
    parser.add_argument("--names", default="toss", choices=sorted(NAME_SETS),
                        help="column names: toss (as in the challenge), renamed (readable English for a few "
                             "anonymous columns), korean (Korean for a few; pair with --encoding cp949)")
    parser.add_argument("--index-column", action="store_true", help="append an unnamed row-index column")
    parser.add_argument("--variant", default=DEFAULT_VARIANT, choices=list(VARIANTS),
                        help="where the planted signal lives: " + "; ".join(
                            f"{v.name}: {v.summary}" for v in VARIANTS.values()))
    args = parser.parse_args(argv)
    if args.size_mb is None and args.rows is None:
        args.rows = 60_000
    if args.rows is not None and args.rows < 1:
        parser.error("--rows must be at least 1")
    if args.size_mb is not None and args.size_mb <= 0:
        parser.error("--size-mb must be positive")
    started = time.perf_counter()
    # A tqdm bar on stderr in a terminal (rows, or MB with --size-mb); nothing when piped.
    from tqdm import tqdm

    by_rows = args.rows is not None
    bar = tqdm(total=args.rows if by_rows else int(args.size_mb * 1e6), unit="rows" if by_rows else "B",
               unit_scale=True, unit_divisor=1000, desc=args.out.name, disable=None, file=sys.stderr)

    def advance(rows: int, size: int) -> None:
        bar.update(min(rows if by_rows else size, bar.total) - bar.n)

    try:
        truth = generate(args.out, args.rows, args.seed, args.ctr, args.encoding, NAME_SETS[args.names] or None,
                         size_mb=args.size_mb, index_column=args.index_column, variant=args.variant,
                         progress=advance)
    finally:
        bar.close()
    print(f"wrote {args.out}: {truth['rows']} rows, {truth['clicks']} clicks ({truth['ctr_percent']}%), "
          f"variant {args.variant}, oracle AUC {truth['oracle_auc']:.4f}, "
          f"{args.out.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
