"""Benchmark: upload + validate + profile + convert, the ingest pipeline against pandas.

    .venv/bin/python bench/ingest.py [--workdir /tmp/ctrops-bench-ingest] [--cases 60k,600k,500mb]

For each generated file (60,000 rows; 600,000 rows; about 500 MB), two methods run one
after the other, each in a fresh subprocess so peak RSS is its own:

- ``pipeline``: the upload streamed into a file store in 1 MB chunks (what the gateway
  does), then ``ctrops_ingest.pipeline.ingest_csv`` (validation, profile, Parquet).
- ``pandas`` (the issue's baseline): the same upload copy, then ``pandas.read_csv`` with
  default settings and the same checks, statistics (per-column missing/mean/std/min/max, seq
  lengths, duplicate rows, CTR segments) and conversion done with pandas (seq tokenised with
  ``df.seq.str.split(",")``, features float64, Parquet, snappy).
- ``pandas-tuned``: the same, except seq is tokenised by NumPy (``np.fromstring`` per row)
  instead of ``str.split``: a stricter baseline than the issue asks for, to show where the
  pipeline's remaining edge is.

Figures: wall seconds, MB/s (file size / wall), CPU seconds (user + system, all threads),
peak RSS (the child's ru_maxrss, which includes the interpreter and the libraries, loaded
before the clock starts for both methods, as in a running service). Generated files stay under --workdir, never in the
repository. The machine is shared with other work: numbers are indicative, run once.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

CASES = {"60k": {"rows": 60_000}, "600k": {"rows": 600_000}, "500mb": {"size_mb": 500}}
CHUNK = 1 << 20


def _upload_copy(source: Path, store: Path) -> Path:
    """Stream the file into the store the way the gateway does (chunks, temp name, rename)."""
    target = store / "uploads" / "bench" / "original.csv"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".part")
    with open(source, "rb") as src, open(tmp, "wb") as dst:
        while chunk := src.read(CHUNK):
            dst.write(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    os.replace(tmp, target)
    return target


def run_pipeline(path: Path, store: Path) -> dict:
    from ctrops_ingest.pipeline import ingest_csv

    upload = _upload_copy(path, store)
    out = store / "files" / "bench" / "data.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = ingest_csv(upload, out)
    (out.parent / "profile.json").write_text(json.dumps(result.profile, allow_nan=False))
    return {"rows": result.rows, "clicks": result.info["clicked_one"], "duplicates": result.info["duplicate_rows"],
            "valid": result.is_valid}


def run_pandas(path: Path, store: Path, tuned: bool = False) -> dict:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    upload = _upload_copy(path, store)
    df = pd.read_csv(upload)
    index_cols = [c for c in df.columns if c.startswith("Unnamed:")]
    df = df.drop(columns=index_cols)
    # validation
    clicked = df["clicked"]
    bad_clicked = int((~clicked.isin([0, 1])).sum())
    seq_text = df["seq"].astype("string")
    bad_seq = int((~seq_text.str.fullmatch(r"-?\d+(,-?\d+)*").fillna(False)).sum())
    # conversion of the feature columns and seq
    features = df.drop(columns=["seq", "clicked"]).apply(pd.to_numeric, errors="coerce").astype("float64")
    if tuned:  # NumPy parses each row's text directly
        tokens = [np.fromstring(s, sep=",", dtype=np.int32) for s in df["seq"].astype(str)]
    else:  # the pandas way: str.split, then one array per row
        tokens = list(df["seq"].astype(str).str.split(",").map(lambda t: np.array(t, dtype=np.int32)))
    lengths = np.fromiter((len(t) for t in tokens), dtype=np.int64, count=len(tokens))
    # statistics
    profile = {
        "columns": {name: {"missing": int(features[name].isna().sum()), "mean": features[name].mean(),
                           "std": features[name].std(), "min": features[name].min(), "max": features[name].max()}
                    for name in features.columns},
        "seq": {"min_len": int(lengths.min()), "median_len": float(np.median(lengths)),
                "max_len": int(lengths.max()), "mean_len": float(lengths.mean())},
        "segments": {},
    }
    for key in (["hour"], ["day_of_week"], ["inventory_id"], ["age_group", "gender"]):
        grouped = df.groupby(key)["clicked"].agg(["size", "sum"])
        profile["segments"]["_".join(key)] = [
            {"value": str(k), "rows": int(r["size"]), "clicks": int(r["sum"]), "ctr": 100 * r["sum"] / r["size"]}
            for k, r in grouped.iterrows()
        ]
    missing_values = int(df.isna().sum().sum())
    duplicates = int(df.duplicated().sum())
    clicks = int((clicked == 1).sum())
    # the training layout
    out = store / "files" / "bench" / "data.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    seq_array = pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.concatenate(tokens)))
    arrays, names = [], []
    for name in df.columns:
        names.append(name)
        if name == "clicked":
            arrays.append(pa.array(clicked.to_numpy().astype(np.int8)))
        elif name == "seq":
            arrays.append(seq_array)
        else:
            arrays.append(pa.array(features[name].to_numpy(), from_pandas=True))
    pq.write_table(pa.Table.from_arrays(arrays, names=names), out, compression="snappy")
    (out.parent / "profile.json").write_text(json.dumps(profile, default=float))
    return {"rows": len(df), "clicks": clicks, "duplicates": duplicates, "missing": missing_values,
            "valid": bad_clicked == 0 and bad_seq == 0}


def child(method: str, path: Path, store: Path) -> None:
    # Libraries load before the clock starts, for both methods: a running service has them
    # loaded already (Arrow's Parquet writer pulls in pandas on first use, so does pandas).
    import numpy  # noqa: F401
    import pandas  # noqa: F401
    import pyarrow.compute  # noqa: F401
    import pyarrow.csv  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    import ctrops_ingest.pipeline  # noqa: F401

    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    if method == "pipeline":
        outcome = run_pipeline(path, store)
    else:
        outcome = run_pandas(path, store, tuned=method == "pandas-tuned")
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)  # all threads
    print(json.dumps({"wall_s": wall, "cpu_s": cpu, "peak_rss_bytes": after.ru_maxrss * 1024, **outcome}))


def measure(method: str, path: Path, workdir: Path) -> dict:
    store = workdir / f"store-{method}"
    shutil.rmtree(store, ignore_errors=True)
    store.mkdir(parents=True)
    proc = subprocess.run([sys.executable, __file__, "--child", method, str(path), str(store)],
                          capture_output=True, text=True)
    shutil.rmtree(store, ignore_errors=True)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ensure_file(case: str, workdir: Path) -> tuple[Path, dict]:
    from ctrops_common.datagen import generate

    path = workdir / f"ctr_{case}.csv"
    truth_path = Path(f"{path}.truth.json")
    if path.exists() and truth_path.exists():
        return path, json.loads(truth_path.read_text())
    started = time.perf_counter()
    truth = generate(path, seed=42, **CASES[case])
    print(f"generated {path.name}: {truth['rows']} rows, {path.stat().st_size / 1e6:.0f} MB "
          f"in {time.perf_counter() - started:.0f} s", flush=True)
    return path, truth


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ctrops-bench-ingest"))
    parser.add_argument("--cases", default="60k,600k,500mb")
    parser.add_argument("--methods", default="pipeline,pandas,pandas-tuned")
    parser.add_argument("--child", nargs=3, metavar=("METHOD", "CSV", "STORE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        method, path, store = args.child
        child(method, Path(path), Path(store))
        return 0

    args.workdir.mkdir(parents=True, exist_ok=True)
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.platform()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    print("| file | rows | MB | method | wall s | MB/s | CPU s | peak RSS MB | check |")
    print("|---|---|---|---|---|---|---|---|---|")
    for case in args.cases.split(","):
        path, truth = ensure_file(case, args.workdir)
        size_mb = path.stat().st_size / 1e6
        results = {}
        for method in args.methods.split(","):
            r = results[method] = measure(method, path, args.workdir)
            if "error" in r:
                print(f"| {case} | {truth['rows']} | {size_mb:.0f} | {method} | failed: {r['error']} | | | | |")
                continue
            check = "rows+clicks = truth" if (r["rows"], r["clicks"]) == (truth["rows"], truth["clicks"]) else "MISMATCH"
            print(f"| {case} | {truth['rows']} | {size_mb:.0f} | {method} | {r['wall_s']:.1f} | "
                  f"{size_mb / r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['peak_rss_bytes'] / 2**20:.0f} | {check} |",
                  flush=True)
        for baseline in ("pandas", "pandas-tuned"):
            if "wall_s" in results.get(baseline, {}) and "wall_s" in results.get("pipeline", {}):
                speedup = results[baseline]["wall_s"] / results["pipeline"]["wall_s"]
                cpu_ratio = results[baseline]["cpu_s"] / results["pipeline"]["cpu_s"]
                print(f"|  |  |  | {baseline} / pipeline | {speedup:.2f}x |  | {cpu_ratio:.2f}x |  |  |", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
