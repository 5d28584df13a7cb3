"""Benchmark: the trainer's input pipeline and training loop against the seed notebook's.

    .venv/bin/python bench/trainer.py [--rows 60000] [--epochs 10] [--workdir /tmp/ctrops-bench-trainer]
                                      [--ref-rows N] [--ref-epochs N] [--levers] [--skip-reference]

Same generated data (``ctrops-datagen``, seed 42: the planted signal partly lives in the 16
most recent ``seq`` tokens), same config (the contract's defaults: batch 4096, lr 1e-3, LSTM
64, MLP 256,128, dropout 0.2, down-sampling to 2 negatives per click, seed 42), the same
training and validation rows (a stratified 20% split of the original data), each method in
a fresh subprocess so its peak RSS is its own:

- ``ours``: ``ctrops_trainer`` as the service runs it - the training Parquet file (seq already
  ``list<int32>``), a 128-token recent window, one padded int32 matrix, batches gathered by
  index, rows sorted by length into ``CTROPS_TRAINER_SEQ_CHUNKS`` trimmed LSTM chunks, output
  taken at each row's last real step, metrics on the validation rows every epoch.
- ``reference``: the notebook as written - ``pandas.read_csv``, ``seq`` parsed per row in
  ``Dataset.__getitem__`` (``np.fromstring``), ``pad_sequence`` to each batch's longest
  sequence in a Python ``collate_fn``, ``pack_padded_sequence`` LSTM, no truncation, raw
  token values, missing values filled with 0. On CPU its packed backward costs about
  (longest sequence x tokens in the batch) per batch, so 10 epochs do not finish here: it
  trains ``--ref-batches`` batches of ``--ref-batch-size`` rows, timed, and the 10-epoch
  time is extrapolated from them (smaller batches favour it: the cost per row grows with
  the batch's longest sequence).
- ``untruncated`` (``--untruncated``): our engine with a 4096-token window, i.e. the whole
  sequences as the reference sees them (padded + gather equals packed exactly,
  libs/common/tests/test_ml.py): the val AUC the reference's math reaches, and what the
  128-token window costs or gains.

Figures: samples/s (training rows per second of the training pass), wall time for all
epochs (validation included), peak RSS (ru_maxrss of the child), best and last val AUC.
Also: this machine's fp32 matmul peak and the LSTM's achieved GFLOP/s (fwd+bwd at the shapes
training uses, and over the whole training pass), and with ``--levers`` one training epoch
per setting of the cost levers (window length, chunks, packed vs padded+gather).

Threads: ``torch.set_num_threads(2)`` (CTROPS_TRAINER_THREADS) and ``OMP_WAIT_POLICY=PASSIVE``
in every child. Generated files stay under --workdir. The machine is shared: run once.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

THREADS = 2
LSTM_HIDDEN = 64


def _setup_threads() -> None:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    os.environ["OMP_NUM_THREADS"] = str(THREADS)
    import torch

    torch.set_num_threads(THREADS)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def lstm_step_flops(hidden: int = LSTM_HIDDEN) -> int:
    """Forward FLOPs of one LSTM step for one row (input size 1): the two gate GEMVs."""
    return 2 * 4 * hidden * (hidden + 1)


# -- data ---------------------------------------------------------------------------------------------


def prepare(workdir: Path, rows: int) -> tuple[Path, Path]:
    """The generated CSV (for the reference) and its training Parquet (for us), cached."""
    import pyarrow.parquet as pq

    from ctrops_common.datagen import generate
    from ctrops_common.testdata import csv_to_training_table

    workdir.mkdir(parents=True, exist_ok=True)
    csv_path = workdir / f"ctr_{rows}.csv"
    parquet = workdir / f"ctr_{rows}.parquet"
    if not csv_path.exists():
        generate(csv_path, rows, seed=42)
    if not parquet.exists():
        pq.write_table(csv_to_training_table(csv_path), parquet)
    return csv_path, parquet


def split_for(parquet: Path, rows_limit: int | None = None):
    """The stratified split both methods use (our data.split_rows, seed 42)."""
    import numpy as np
    import pyarrow.parquet as pq

    from ctrops_trainer.data import split_rows

    labels = pq.read_table(parquet, columns=["clicked"]).column("clicked").to_numpy().astype(np.float32)
    if rows_limit:
        labels = labels[:rows_limit]
    return split_rows(labels, 0.2, downsampling=True, seed=42)


# -- children -------------------------------------------------------------------------------------------


def child_peak(_: argparse.Namespace) -> dict:
    _setup_threads()
    import torch

    def best_of(fn, repeats: int) -> float:
        fn()
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
        return min(times)

    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    matmul = 2 * n**3 / best_of(lambda: a @ b, 5) / 1e9
    # The recurrent GEMM of the LSTM at training shapes: (rows x 64) @ (64 x 256).
    h, w = torch.randn(1024, LSTM_HIDDEN), torch.randn(LSTM_HIDDEN, 4 * LSTM_HIDDEN)
    small = 2 * 1024 * LSTM_HIDDEN * 4 * LSTM_HIDDEN / best_of(lambda: h @ w, 200) / 1e9

    lstm = torch.nn.LSTM(1, LSTM_HIDDEN)
    shapes = {}
    for rows, steps in ((730, 128), (4096, 128), (730, 64)):
        x = torch.rand(steps, rows, 1)
        last = torch.randint(0, steps, (rows,))

        def fwd_bwd():
            out, _ = lstm(x)
            out[last, torch.arange(rows)].sum().backward()

        seconds = best_of(fwd_bwd, 3)
        shapes[f"{rows}x{steps}"] = 3 * rows * steps * lstm_step_flops() / seconds / 1e9
    return {"matmul_gflops": matmul, "gemm_1024x64x256_gflops": small, "lstm_fwd_bwd_gflops": shapes,
            "threads": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}


def child_ours(args: argparse.Namespace) -> dict:
    _setup_threads()
    started = time.perf_counter()
    from ctrops_common.events import TrainingConfig
    from ctrops_common.ml import TabularSeqModel
    from ctrops_trainer.data import read_training_file
    from ctrops_trainer.training import train

    steps = {"row_steps": 0}
    original = TabularSeqModel.encode_seq

    def counting(self, seq, lengths):  # LSTM work of the training pass (rows x trimmed steps)
        if self.training:
            steps["row_steps"] += seq.shape[0] * seq.shape[1]
        return original(self, seq, lengths)

    TabularSeqModel.encode_seq = counting
    config = TrainingConfig(epochs=args.epochs, max_seq_len=args.window, batch_size=args.batch_size)
    data = read_training_file(Path(args.parquet), config.max_seq_len)
    loaded = time.perf_counter() - started
    history = []
    result = train(data, config, seq_chunks=args.chunks, on_epoch=lambda e, m: history.append(m))
    wall = time.perf_counter() - started
    train_seconds = sum(result.train_rows / m["samples_per_s"] for m in history)
    lstm_flops = 3 * steps["row_steps"] * lstm_step_flops()
    return {
        "method": "ours", "window": args.window, "chunks": args.chunks, "epochs": len(history),
        "train_rows": result.train_rows, "val_rows": result.val_rows, "truncated_rows": data.truncated_rows,
        "load_s": loaded, "wall_s": wall, "train_s": train_seconds,
        "samples_per_s": result.train_rows * len(history) / train_seconds,
        "val_auc_best": max(m["auc"] for m in history), "val_auc_last": history[-1]["auc"],
        "val_auc": [round(m["auc"], 4) for m in history],
        "lstm_gflops_over_training_pass": lstm_flops / train_seconds / 1e9,
        "peak_rss_mb": _peak_rss_mb(),
    }


class _NotebookDataset:
    """The notebook's Dataset: features filled with 0, seq parsed per row in __getitem__."""

    def __init__(self, frame, feature_cols, rows):
        import numpy as np

        self.x = frame[feature_cols].astype(float).fillna(0).values[rows]
        self.seq = frame["seq"].astype(str).values[rows]
        self.y = frame["clicked"].astype(np.float32).values[rows]

    def __len__(self):
        return len(self.y)

    def __getitem__(self, idx):
        import numpy as np
        import torch

        x = torch.tensor(self.x[idx], dtype=torch.float)
        s = self.seq[idx]
        arr = np.fromstring(s, sep=",", dtype=np.float32) if s else np.array([], dtype=np.float32)
        if arr.size == 0:
            arr = np.array([0.0], dtype=np.float32)
        return x, torch.from_numpy(arr), torch.tensor(self.y[idx])


def _notebook_collate(batch):
    import torch
    from torch import nn

    xs, seqs, ys = zip(*batch)
    padded = nn.utils.rnn.pad_sequence(seqs, batch_first=True, padding_value=0.0)
    lengths = torch.clamp(torch.tensor([len(s) for s in seqs], dtype=torch.long), min=1)
    return torch.stack(xs), padded, lengths, torch.stack(ys)


def _notebook_model(d_features: int):
    import torch
    from torch import nn

    class NotebookModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn_x = nn.BatchNorm1d(d_features)
            self.lstm = nn.LSTM(input_size=1, hidden_size=LSTM_HIDDEN, batch_first=True)
            layers, width = [], d_features + LSTM_HIDDEN
            for units in (256, 128):
                layers += [nn.Linear(width, units), nn.ReLU(), nn.Dropout(0.2)]
                width = units
            layers.append(nn.Linear(width, 1))
            self.mlp = nn.Sequential(*layers)

        def forward(self, x, seq, lengths):
            packed = nn.utils.rnn.pack_padded_sequence(seq.unsqueeze(-1), lengths.cpu(), batch_first=True,
                                                       enforce_sorted=False)
            _, (h_n, _) = self.lstm(packed)
            return self.mlp(torch.cat([self.bn_x(x), h_n[-1]], dim=1)).squeeze(1)

    return NotebookModel()


def child_reference(args: argparse.Namespace) -> dict:
    """The notebook pipeline on all rows; trains ``--ref-batches`` batches of ``--ref-batch-size`` rows.

    Its ``pack_padded_sequence`` backward on CPU allocates a full-size gradient per time step,
    so one batch costs about (longest sequence x tokens in the batch): 10 epochs of the 60k
    file do not finish in hours here. We time a few batches and extrapolate.
    """
    _setup_threads()
    started = time.perf_counter()
    import pandas as pd
    import torch
    from torch.utils.data import DataLoader

    torch.manual_seed(42)
    frame = pd.read_csv(args.csv)
    split = split_for(Path(args.parquet))
    feature_cols = [c for c in frame.columns if c not in ("clicked", "seq")]
    train_set = _NotebookDataset(frame, feature_cols, split.train)
    del frame
    loaded = time.perf_counter() - started

    # The input pipeline alone: one pass of per-row parsing and per-batch padding.
    pipeline_started = time.perf_counter()
    longest = 0
    for _, seq, _, _ in DataLoader(train_set, batch_size=args.batch_size, collate_fn=_notebook_collate):
        longest = max(longest, seq.shape[1])
    input_pass_s = time.perf_counter() - pipeline_started

    loader = DataLoader(train_set, batch_size=args.ref_batch_size, shuffle=True, collate_fn=_notebook_collate)
    model = _notebook_model(len(feature_cols))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.train()
    batch_times, rows, steps = [], 0, []
    batch_started = time.perf_counter()
    for x, seq, lengths, y in loader:
        optimizer.zero_grad()
        loss = loss_fn(model(x, seq, lengths), y)
        loss.backward()
        optimizer.step()
        batch_times.append(time.perf_counter() - batch_started)
        rows += len(y)
        steps.append(int(seq.shape[1]))
        print(f"reference batch {len(batch_times)}: {len(y)} rows, longest {steps[-1]} tokens, "
              f"{batch_times[-1]:.1f}s", file=sys.stderr, flush=True)
        if len(batch_times) >= args.ref_batches:
            break
        batch_started = time.perf_counter()
    train_s = sum(batch_times)
    samples_per_s = rows / train_s
    return {
        "method": "reference", "train_rows": len(train_set), "batch_size": args.ref_batch_size,
        "batches_timed": len(batch_times), "rows_timed": rows, "longest_in_batches": steps,
        "longest_in_data": longest, "batch_s": batch_times, "load_s": loaded, "input_pass_s": input_pass_s,
        "samples_per_s": samples_per_s,
        "extrapolated_10_epoch_train_s": 10 * len(train_set) / samples_per_s,
        "peak_rss_mb": _peak_rss_mb(),
    }


def child_lever(args: argparse.Namespace) -> dict:
    """One training epoch of our pipeline with one lever changed (no validation pass)."""
    _setup_threads()
    import numpy as np
    import torch

    from ctrops_common.ml import TabularSeqModel
    from ctrops_trainer.data import apply_fill, fill_values, read_training_file
    from ctrops_trainer.training import seq_states

    data = read_training_file(Path(args.parquet), args.window)
    split = split_for(Path(args.parquet))
    torch.manual_seed(42)
    features = torch.from_numpy(apply_fill(data.features, fill_values(data.features, split.train)))
    tokens, lengths, labels = (torch.from_numpy(a) for a in (data.tokens, data.lengths, data.labels))
    model = TabularSeqModel(features.shape[1], LSTM_HIDDEN, [256, 128], 0.2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    scale = float(data.tokens.max())
    order = np.random.default_rng(1).permutation(split.train)
    batches = np.array_split(order, max(1, int(np.ceil(len(order) / args.batch_size))))
    started = time.perf_counter()
    for batch in batches:
        batch = batch[np.argsort(data.lengths[batch], kind="stable")]
        idx = torch.from_numpy(batch)
        if args.packed:
            seq = tokens[idx].float() / scale
            packed = torch.nn.utils.rnn.pack_padded_sequence(seq.unsqueeze(-1), lengths[idx].clamp(min=1),
                                                             batch_first=True, enforce_sorted=False)
            lstm = torch.nn.LSTM(1, LSTM_HIDDEN, batch_first=True)
            lstm.load_state_dict(model.lstm.state_dict())
            _, (h_n, _) = lstm(packed)
            state = h_n[-1]
        else:
            state = seq_states(model, tokens[idx], lengths[idx], scale, args.chunks)
        loss = loss_fn(model.head(features[idx], state), labels[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    seconds = time.perf_counter() - started
    return {"window": args.window, "chunks": args.chunks, "packed": bool(args.packed),
            "batch_size": args.batch_size, "samples_per_s": len(order) / seconds, "epoch_s": seconds}


CHILDREN = {"peak": child_peak, "ours": child_ours, "reference": child_reference, "lever": child_lever}


def run_child(kind: str, extra: list[str], common: list[str], timeout_s: float | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, *common, *extra]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": str(THREADS)}
    started = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish within {timeout_s:.0f}s", "wall_s": time.perf_counter() - started}
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-3:]
        return {"error": f"exit code {done.returncode}: {' | '.join(tail)}", "wall_s": time.perf_counter() - started}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ctrops-bench-trainer"))
    parser.add_argument("--ref-batches", type=int, default=2, help="reference batches to time")
    parser.add_argument("--ref-batch-size", type=int, default=256, help="rows per timed reference batch")
    parser.add_argument("--untruncated", action="store_true",
                        help="also train our engine on whole sequences (window 4096) for the AUC cost of truncation")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--levers", action="store_true", help="one epoch per cost lever setting")
    parser.add_argument("--lever-repeats", type=int, default=3)
    parser.add_argument("--only-levers", action="store_true", help="skip ours and the reference")
    parser.add_argument("--child", choices=sorted(CHILDREN))
    parser.add_argument("--csv")
    parser.add_argument("--parquet")
    parser.add_argument("--window", type=int, default=128)
    parser.add_argument("--chunks", type=int, default=4)
    parser.add_argument("--packed", type=int, default=0)
    args = parser.parse_args()

    if args.child:
        print(json.dumps(CHILDREN[args.child](args)))
        return 0

    csv_path, parquet = prepare(args.workdir, args.rows)
    common = ["--csv", str(csv_path), "--parquet", str(parquet), "--batch-size", str(args.batch_size)]
    report: dict = {"rows": args.rows, "epochs": args.epochs, "threads": THREADS, "omp_wait_policy": "PASSIVE",
                    "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "load_before": os.getloadavg()}
    print(f"data: {csv_path} ({csv_path.stat().st_size / 1e6:.0f} MB), {parquet}", flush=True)
    report["peak"] = run_child("peak", [], common)
    print("machine:", json.dumps(report["peak"]), flush=True)
    if not args.only_levers:
        report["ours"] = run_child("ours", ["--epochs", str(args.epochs)], common)
        print("ours:", json.dumps(report["ours"]), flush=True)
    if not (args.skip_reference or args.only_levers):
        ref_extra = ["--ref-batches", str(args.ref_batches), "--ref-batch-size", str(args.ref_batch_size)]
        report["reference"] = run_child("reference", ref_extra, common)
        print("reference:", json.dumps(report["reference"]), flush=True)
    if args.untruncated:
        # More chunks: whole sequences have a long tail (up to 3,000 tokens); the math is the same.
        report["untruncated"] = run_child("ours", ["--epochs", str(args.epochs), "--window", "4096", "--chunks", "16"],
                                          common)
        print("untruncated (ours, window 4096):", json.dumps(report["untruncated"]), flush=True)
    if args.levers:
        # Interleaved repeats, best of each: one epoch is a few seconds, so load spikes matter.
        settings = [(128, 1, 0), (128, 2, 0), (128, 4, 0), (128, 8, 0), (64, 4, 0), (256, 4, 0), (128, 4, 1)]
        runs: dict[tuple, list[dict]] = {s: [] for s in settings}
        for repeat in range(args.lever_repeats):
            for window, chunks, packed in settings:
                if packed and repeat:  # the packed epoch is slow and far behind: once is enough
                    continue
                lever = run_child("lever", ["--window", str(window), "--chunks", str(chunks),
                                            "--packed", str(packed)], common, timeout_s=1800)
                runs[(window, chunks, packed)].append(lever)
                print("lever:", json.dumps(lever), flush=True)
        report["levers"] = [
            {**max(found, key=lambda r: r.get("samples_per_s", 0)),
             "all_samples_per_s": [round(r.get("samples_per_s", 0), 1) for r in found]}
            for found in runs.values()
        ]
    report["load_after"] = os.getloadavg()
    out = args.workdir / "report.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
