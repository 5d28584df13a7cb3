"""``ctrops-datagen``: synthetic ad-click logs in the Toss layout with a planted, known signal.

119 columns (../shared/spec/dataset.md), realistic ranges, blocks of columns missing
together, ``seq`` lengths from a few tokens to a few thousand, about 2% clicks. The click
probability follows a logistic model whose terms are written to a sidecar JSON
(``<out>.truth.json``) with the exact row and click counts, so tests can check the
platform's numbers and explanations against ground truth.

The planted logit, per row (``PLANTED`` and the sidecar say the same):

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

Options: ``--size-mb`` (a file of about that size instead of ``--rows``), ``--encoding
cp949`` / ``utf-8-sig``, ``--names renamed|korean`` (readable English or Korean names for a
few anonymous columns) and ``--index-column`` (a trailing unnamed row index).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from .dataset import toss_columns

CHUNK_ROWS = 50_000  # fixed, so the output depends on the seed only
VOCAB = 480  # ordinary tokens are 1..VOCAB-1
RECENT = 16
SEQ_TOKENS = {497: 1.4, 251: 0.9}  # token -> logit added when among the last RECENT tokens
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


def _seq_tokens(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flat tokens, row end offsets, logit effect). Row i's tokens are ``flat[ends[i-1]:ends[i]]``."""
    lengths = np.clip(rng.lognormal(mean=4.6, sigma=0.9, size=n), 3, 3000).astype(np.int64)
    flat = rng.zipf(1.3, size=int(lengths.sum())) % (VOCAB - 1) + 1
    ends = np.cumsum(lengths)
    for token in SEQ_TOKENS:
        plant = rng.random(n) < 0.12
        for i in np.flatnonzero(plant):
            window = min(RECENT, int(lengths[i]))
            flat[ends[i] - 1 - rng.integers(window)] = token
    # Measured on the final sequences, after all planting: a 251 planted over a 497 removes
    # the 497's effect, and a 251 that the ordinary draw put in the window counts too.
    row_of = np.repeat(np.arange(n), lengths)
    recent = np.arange(len(flat)) >= (ends - np.minimum(lengths, RECENT))[row_of]
    effect = np.zeros(n)
    for token, weight in SEQ_TOKENS.items():
        present = np.zeros(n, dtype=bool)
        present[row_of[recent & (flat == token)]] = True
        effect += weight * present
    return flat, ends, effect


def _chunk(rng: np.random.Generator, n: int) -> tuple[dict[str, np.ndarray], np.ndarray, pa.Array]:
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

    flat, ends, seq_effect = _seq_tokens(rng, n)
    z = lambda c: (cols[c] - cols[c].mean()) / (cols[c].std() + 1e-9)  # noqa: E731
    logit = (
        0.8 * z("history_a_1")
        + 0.9 * np.isin(cols["hour"], [19, 20, 21, 22])
        + 0.8 * np.isin(cols["l_feat_14"], [3, 7])
        + 0.6 * (cols["age_group"] == 5)
        + 0.5 * z("feat_a_3")
        + seq_effect
    )

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
             index_column: bool = False) -> dict:
    """Write ``rows`` rows (or about ``size_mb`` MB) to ``out`` and the ground truth to
    ``<out>.truth.json``; return the truth.

    Chunk ``i`` draws from its own seed (``SeedSequence(seed, spawn_key=(i,))``), so a
    file is the same for the same seed (and, from 50,000 rows on, its full 50,000-row chunks
    do not depend on the total size).
    ``index_column`` appends an unnamed row-index column, as some exports have.
    """
    if (rows is None) == (size_mb is None):
        raise ValueError("give either rows or size_mb")
    target_bytes = int(size_mb * 1e6) if size_mb is not None else None
    names = toss_columns()
    header = [rename.get(c, c) if rename else c for c in names] + ([""] if index_column else [])
    text_encoding = "utf-8" if encoding == "utf-8-sig" else encoding  # the BOM goes once, before the header
    intercept = None
    clicks = 0
    written = 0
    chunk = 0
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
            cols, logit, seq_text = _chunk(rng, n)
            if intercept is None:
                intercept = _intercept_for(logit, ctr)
            clicked = (rng.random(n) < 1 / (1 + np.exp(-(logit + intercept)))).astype(np.int8)
            clicks += int(clicked.sum())
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
            if index_column:
                arrays.append(pa.array(np.arange(written, written + n)))
            table = pa.Table.from_arrays(arrays, names=[f"c{i}" for i in range(len(arrays))])
            sink = pa.BufferOutputStream()
            pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
            data = sink.getvalue().to_pybytes()
            raw.write(data if text_encoding == "utf-8" else data.decode("utf-8").encode(text_encoding))
            written += n
            chunk += 1
    truth = {
        "rows": written,
        "clicks": clicks,
        "non_clicks": written - clicks,
        "ctr_percent": round(100 * clicks / written, 4) if written else 0.0,
        "columns": header,
        "encoding": encoding,
        "seed": seed,
        "planted": PLANTED,
        "planted_tabular": [rename.get(c, c) if rename else c for c in PLANTED_TABULAR],
        "seq_signal": {"tokens": {str(k): v for k, v in SEQ_TOKENS.items()}, "recent_window": RECENT,
                       "measured": "on the final sequence: a token counts when it is among the last 16"},
        "intercept": intercept,
    }
    Path(f"{out}.truth.json").write_text(json.dumps(truth, indent=2, ensure_ascii=False))
    return truth


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
    args = parser.parse_args(argv)
    if args.size_mb is None and args.rows is None:
        args.rows = 60_000
    if args.rows is not None and args.rows < 1:
        parser.error("--rows must be at least 1")
    if args.size_mb is not None and args.size_mb <= 0:
        parser.error("--size-mb must be positive")
    started = time.perf_counter()
    truth = generate(args.out, args.rows, args.seed, args.ctr, args.encoding, NAME_SETS[args.names] or None,
                     size_mb=args.size_mb, index_column=args.index_column)
    print(f"wrote {args.out}: {truth['rows']} rows, {truth['clicks']} clicks ({truth['ctr_percent']}%), "
          f"{args.out.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
