"""The trainer's own training loop on the CPU and, where torch sees one, on a CUDA GPU.

    .venv/bin/python bench/trainer_device.py [--rows 60000] [--epochs 10] [--workdir /tmp/ctrops-bench-device]

Same generated file (``ctrops-datagen``, seed 42, in the training layout via
``ctrops_common.testdata.training_parquet``: the same tensors as the ingest pipeline's), same
configs, ``ctrops_trainer.training.train`` with ``device="cpu"`` and then ``device="cuda"``
(CTROPS_TRAINER_DEVICE): samples/s of the training passes, wall time for all epochs
(validation included), best val AUC, AP and log loss. Configs (``--configs``):
``defaults`` = the contract's (batch 4096, down-sampling: about 3,000 training rows per
epoch); ``all-rows`` = batch 512 without down-sampling (48,000 rows per epoch), the costly
setting where a GPU matters.
CPU threads: all the machine's cores (``torch.get_num_threads()``), printed. Without CUDA
only the CPU row is printed. The optional device check in docs/benchmarks.md runs this on a
lent GPU machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for src in ("libs/common/src", "services/trainer/src"):  # also runs without `make install`
    if str(ROOT / src) not in sys.path:
        sys.path.insert(0, str(ROOT / src))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

CONFIGS = {"defaults": {}, "all-rows": {"batch_size": 512, "downsampling": False}}


def measure(parquet: Path, epochs: int, config_name: str, device: str) -> dict:
    import torch

    from ctrops_common.events import TrainingConfig
    from ctrops_trainer.data import read_training_file
    from ctrops_trainer.training import train

    config = TrainingConfig(epochs=epochs, **CONFIGS[config_name])
    data = read_training_file(parquet, config.max_seq_len)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    started = time.perf_counter()
    result = train(data, config, device=device)
    wall = time.perf_counter() - started
    rates = [m["samples_per_s"] for m in result.history if m["samples_per_s"]]
    best = result.best_metrics
    return {"config": config_name, "device": result.device, "wall_s": wall, "epochs": result.epochs_run,
            "train_rows": result.train_rows, "samples_per_s": sorted(rates)[len(rates) // 2],
            "auc": best["auc"], "ap": best["ap"], "logloss": best["logloss"], "best_epoch": result.best_epoch}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ctrops-bench-device"))
    parser.add_argument("--configs", default="defaults", help=f"comma-separated, of {', '.join(CONFIGS)}")
    args = parser.parse_args()

    import torch

    from ctrops_common.testdata import training_parquet

    parquet, _ = training_parquet(args.workdir, args.rows, seed=42)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: torch {torch.__version__}, "
          f"{os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, GPU: {gpu}; "
          f"{args.rows} rows, {args.epochs} epochs", flush=True)
    print("| config | device | train rows | epochs | wall s | samples/s (median epoch) | best val AUC | AP | log loss |")
    print("|---|---|---|---|---|---|---|---|---|")
    results = []
    for config_name in args.configs.split(","):
        pair = []
        for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
            r = measure(parquet, args.epochs, config_name, device)
            pair.append(r)
            print(f"| {config_name} | {r['device']} | {r['train_rows']} | {r['epochs']} | {r['wall_s']:.1f} | "
                  f"{r['samples_per_s']:,.0f} | {r['auc']:.4f} | {r['ap']:.4f} | {r['logloss']:.4f} |", flush=True)
        if len(pair) == 2:
            print(f"|  | cuda over cpu | | | {pair[0]['wall_s'] / pair[1]['wall_s']:.1f}x | "
                  f"{pair[1]['samples_per_s'] / pair[0]['samples_per_s']:.1f}x | | | |", flush=True)
        results += pair
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
