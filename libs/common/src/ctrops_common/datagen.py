"""``ctrops-datagen``: synthetic ad-click logs in the Toss layout with a planted, known signal.

119 columns (../shared/spec/dataset.md), realistic ranges, blocks of columns missing
together, ``seq`` lengths from a few tokens to a few thousand, about 2% clicks. The click
probability follows a logistic model whose terms are written to a sidecar JSON
(``<out>.truth.json``) with the exact row and click counts, so tests can check the
platform's numbers and explanations against ground truth.

Part of the signal lives in ``seq``: whether token 497 (strong) or token 251 (weaker)
appears among the 16 most recent tokens (the end of the string). Dropping ``seq`` or
keeping only its oldest tokens loses that signal; a recent-token window keeps it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
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


def _seq_tokens(rng: np.random.Generator, n: int) -> tuple[list[np.ndarray], np.ndarray]:
    lengths = np.clip(rng.lognormal(mean=4.6, sigma=0.9, size=n), 3, 3000).astype(np.int64)
    flat = rng.zipf(1.3, size=int(lengths.sum())) % (VOCAB - 1) + 1
    seqs = np.split(flat, np.cumsum(lengths)[:-1])
    effect = np.zeros(n)
    for token, weight in SEQ_TOKENS.items():
        plant = rng.random(n) < 0.12
        for i in np.flatnonzero(plant):
            s = seqs[i]
            window = min(RECENT, len(s))
            s[len(s) - 1 - rng.integers(window)] = token
        # Planting happens above; the effect is measured on the final sequences so that
        # ordinary tokens can never collide with signal tokens (they are < VOCAB).
        present = np.array([token in s[-RECENT:] for s in seqs])
        effect += weight * present
    return seqs, effect


def _chunk(rng: np.random.Generator, n: int) -> tuple[dict[str, np.ndarray], np.ndarray, list[np.ndarray]]:
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

    seqs, seq_effect = _seq_tokens(rng, n)
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
    return cols, logit, seqs


def _intercept_for(logit: np.ndarray, ctr: float) -> float:
    lo, hi = -20.0, 5.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if (1 / (1 + np.exp(-(logit + mid)))).mean() > ctr:
            hi = mid
        else:
            lo = mid
    return (lo + hi) / 2


def generate(out: Path, rows: int, seed: int = 42, ctr: float = 0.0192, encoding: str = "utf-8",
             rename: dict[str, str] | None = None) -> dict:
    """Write ``rows`` rows to ``out`` and the ground truth to ``<out>.truth.json``; return the truth."""
    names = toss_columns()
    header = [rename.get(c, c) if rename else c for c in names]
    token_str = np.array([str(i) for i in range(500)], dtype=object)
    seeds = np.random.SeedSequence(seed).spawn((rows + CHUNK_ROWS - 1) // CHUNK_ROWS)
    intercept = None
    clicks = 0
    written = 0
    with open(out, "wb") as raw:
        raw.write((",".join(header) + "\n").encode(encoding))
        for chunk_seed in seeds:
            n = min(CHUNK_ROWS, rows - written)
            rng = np.random.default_rng(chunk_seed)
            cols, logit, seqs = _chunk(rng, n)
            if intercept is None:
                intercept = _intercept_for(logit, ctr)
            clicked = (rng.random(n) < 1 / (1 + np.exp(-(logit + intercept)))).astype(np.int8)
            clicks += int(clicked.sum())
            arrays = []
            for c in names:
                if c == "seq":
                    arrays.append(pa.array([",".join(token_str[s]) for s in seqs]))
                elif c == "clicked":
                    arrays.append(pa.array(clicked))
                elif c in ("gender", "age_group", "day_of_week", "hour", "inventory_id"):
                    arrays.append(pa.array(cols[c]).cast(pa.int64()) if c in ("inventory_id",) else pa.array(cols[c]))
                else:
                    arrays.append(pa.array(cols[c], from_pandas=True))
            table = pa.Table.from_arrays(arrays, names=header)
            sink = pa.BufferOutputStream()
            pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
            data = sink.getvalue().to_pybytes()
            raw.write(data if encoding == "utf-8" else data.decode("utf-8").encode(encoding))
            written += n
    truth = {
        "rows": rows,
        "clicks": clicks,
        "non_clicks": rows - clicks,
        "ctr_percent": round(100 * clicks / rows, 4) if rows else 0.0,
        "columns": header,
        "seed": seed,
        "planted": PLANTED,
        "planted_tabular": [rename.get(c, c) if rename else c for c in PLANTED_TABULAR],
        "seq_signal": {"tokens": {str(k): v for k, v in SEQ_TOKENS.items()}, "recent_window": RECENT},
        "intercept": intercept,
    }
    Path(f"{out}.truth.json").write_text(json.dumps(truth, indent=2, ensure_ascii=False))
    return truth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ctrops-datagen", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="CSV file to write")
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--ctr", type=float, default=0.0192, help="target click rate (fraction)")
    parser.add_argument("--encoding", default="utf-8", choices=["utf-8", "utf-8-sig", "cp949"])
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error("--rows must be at least 1")
    started = time.perf_counter()
    truth = generate(args.out, args.rows, args.seed, args.ctr, args.encoding)
    print(f"wrote {args.out}: {truth['rows']} rows, {truth['clicks']} clicks ({truth['ctr_percent']}%), "
          f"{args.out.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
