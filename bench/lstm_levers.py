"""The LSTM+MLP's training levers, each on and off, at the frontend's settings.

One job: train the trainer's LSTM+MLP (``ctrops_trainer.training.train``) on generated data
(``ctrops_common.testdata.variant_parquet``, whose oracle is each row's generating click
probability) with the frontend's form values (epochs 10, batch 4096, lr 0.001, lstm_hidden
64, mlp_hidden 256,128, dropout 0.2, down-sampling, validation 0.2, early stopping patience
3), once with every lever as the trainer uses it and once with each lever turned off (or
swapped), and print val AUC, the oracle's AUC on the same validation rows, the batch plan
wall time and CPU time (both threads; on a machine shared with other work the CPU time
says more than the wall time), with the machine's load before and after.

    .venv/bin/python bench/lstm_levers.py                      # 60k mixed, seed 42, 2 threads
    .venv/bin/python bench/lstm_levers.py --rows 20000 --ctr 0.05 --data-seed 1 --seeds 1,2 --variant seq

Run it on a quiet machine: wall times on a shared one say more about the neighbours.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads must not spin on shared cores

FRONTEND = {"epochs": 10, "batch_size": 4096, "learning_rate": 0.001, "lstm_hidden": 64,
            "mlp_hidden": [256, 128], "dropout": 0.2, "downsampling": True, "validation_split": 0.2}


def variants() -> dict[str, tuple[dict, dict]]:
    """name -> (config overrides, lever overrides) against the trainer's defaults."""
    return {
        "all levers on (trainer default)": ({}, {}),
        "no step floor": ({}, {"min_steps": 0}),
        "fixed negatives (one subset)": ({}, {"fresh_negatives": False}),
        "scalar seq input (notebook)": ({"seq_encoding": "scalar"}, {}),
        "seq embedding dim 16": ({}, {"seq_embedding_dim": 16}),
        "no categorical embeddings": ({}, {"max_categories": 0}),
        "step floor 32": ({}, {"min_steps": 32}),
        "constant lr (no one-cycle)": ({}, {"schedule": "constant"}),
        "weight decay 1e-4 (AdamW)": ({}, {"weight_decay": 1e-4}),
        "weight decay 1e-2 (AdamW)": ({}, {"weight_decay": 1e-2}),
        "no early stopping": ({"early_stopping_patience": None}, {}),
        "early stopping patience 5": ({"early_stopping_patience": 5}, {}),
        "step floor 128": ({}, {"min_steps": 128}),
        "4 non-clicks per click per epoch": ({}, {"negatives_per_positive": 4}),
        "3 non-clicks per click per epoch": ({}, {"negatives_per_positive": 3}),
        "one-cycle warm-up 50% of the steps": ({}, {"warmup": 0.5}),
        "weight decay 1e-1 (AdamW)": ({}, {"weight_decay": 0.1}),
        "quantile input transform (rank-Gauss)": ({}, {"input_transform": "quantile"}),
        "robust input transform (median/IQR, clip 5)": ({}, {"input_transform": "robust"}),
        "input dropout 0.1": ({}, {"input_dropout": 0.1}),
        "EMA of weights (decay 0.99 per step)": ({}, {"ema": 0.99}),
        "no PLE": ({}, {"ple_bins": 0}),
        "PLE 8 bins": ({}, {"ple_bins": 8}),
        "PLE 16 bins": ({}, {"ple_bins": 16}),
        "PLE 32 bins": ({}, {"ple_bins": 32}),
        "cross 1 layer rank 32": ({}, {"cross_layers": 1}),
        "cross 2 layers rank 32": ({}, {"cross_layers": 2}),
        "PLE 16 bins + cross 1": ({}, {"ple_bins": 16, "cross_layers": 1}),
        "no BatchNorm, robust transform": ({}, {"tabular_norm": "none", "input_transform": "robust"}),
        "PLE 8 + cross 2": ({}, {"ple_bins": 8, "cross_layers": 2}),
        "cross 2 + no BatchNorm, robust": ({}, {"cross_layers": 2, "tabular_norm": "none", "input_transform": "robust"}),
        "recent pool 16": ({}, {"seq_pool": 16}),
        "recent pool 16 + PLE 8": ({}, {"seq_pool": 16, "ple_bins": 8}),
        "all off (as before issue 18)": ({"seq_encoding": "scalar"},
                                         {"min_steps": 0, "fresh_negatives": False, "schedule": "constant",
                                          "weight_decay": 0.0, "max_categories": 0, "ple_bins": 0}),
    }


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--variant", default="mixed", help="generator variant (ctrops_common.datagen.VARIANTS)")
    parser.add_argument("--ctr", type=float, default=0.02)
    parser.add_argument("--seeds", default="42", help="comma-separated training seeds")
    parser.add_argument("--data-seed", type=int, default=42, help="the generator's seed (test_model_quality uses 1)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", default="", help="comma-separated substrings of the lever sets to run")
    parser.add_argument("--sets", default="", help="instead of --variant/--ctr/--rows/--data-seed: variant:ctr:rows,... "
                        "with data seed = training seed, as bench/models.py (e.g. tabular:0.02:20000)")
    parser.add_argument("--data", type=Path, default=Path("/tmp/ctrops-bench-data"))
    args = parser.parse_args(argv)

    import numpy as np
    import torch
    from sklearn.metrics import roc_auc_score

    from ctrops_common.events import TrainingConfig
    from ctrops_common.testdata import variant_parquet
    from ctrops_trainer.data import read_training_file
    from ctrops_trainer.training import LEVERS, train

    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.sets:  # (set name, data seed, training seed)
        jobs = [((v, float(c), int(r)), seed, seed) for v, c, r in (item.split(":") for item in args.sets.split(","))
                for seed in seeds]
    else:
        jobs = [((args.variant, args.ctr, args.rows), args.data_seed, seed) for seed in seeds]
    print(f"torch {torch.__version__}, {args.threads} threads; levers {dataclasses.asdict(LEVERS)}")
    print(f"load before: {uptime()}")
    wanted = [w for w in args.only.split(",") if w]
    rows = []
    loaded: dict = {}
    for (variant, ctr, n_rows), data_seed, seed in jobs:
        key = (variant, ctr, n_rows, data_seed)
        if key not in loaded:
            loaded.clear()  # one data set in memory at a time
            path, truth, oracle = variant_parquet(args.data, variant, n_rows, seed=data_seed, ctr=ctr)
            loaded[key] = (read_training_file(path, 128), oracle)
        data, oracle = loaded[key]
        label = f"{variant} {ctr:.1%} {n_rows // 1000}k"
        print(f"data: {label} (data seed {data_seed}), {data.rows:,} rows, {int(data.labels.sum()):,} clicks",
              flush=True)
        for name, (config_over, lever_over) in variants().items():
            if wanted and not any(w in name for w in wanted):
                continue
            config = TrainingConfig(**{**FRONTEND, "seed": seed, **config_over})
            levers = dataclasses.replace(LEVERS, **lever_over)
            started, cpu_started = time.perf_counter(), time.process_time()
            result = train(data, config, levers=levers)
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
            oracle_auc = roc_auc_score(data.labels[result.split.val], oracle[result.split.val])
            auc = result.best_metrics["auc"]
            rows.append((f"{label}: {name}" if args.sets else name, seed, auc, oracle_auc, result.best_epoch, result.epochs_run, result.batch.used,
                         result.batch.steps_per_epoch, wall, cpu))
            aucs = " ".join(f"{m['auc']:.3f}" for m in result.history)
            print(f"{name:34s} seed {seed}: val AUC {auc:.4f} (oracle {oracle_auc:.4f}, gap {oracle_auc - auc:+.4f}) "
                  f"best epoch {result.best_epoch}/{result.epochs_run}, batch {result.batch.used} x "
                  f"{result.batch.steps_per_epoch} steps, {wall:.1f} s wall, {cpu:.1f} s CPU; per epoch: {aucs}",
                  flush=True)
    print(f"load after: {uptime()}")
    print("\n| lever set | seed | val AUC | oracle AUC | gap | best epoch / run | batch used x steps | wall s "
          "| CPU s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, seed, auc, oracle_auc, best, run, used, steps, wall, cpu in rows:
        print(f"| {name} | {seed} | {auc:.4f} | {oracle_auc:.4f} | {oracle_auc - auc:+.4f} | {best} / {run} | "
              f"{used} x {steps} | {wall:.1f} | {cpu:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
