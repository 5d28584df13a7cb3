"""The whole training stage of one run, as the trainer runs it: LSTM+MLP, then the LightGBM challenger.

    .venv/bin/python bench/training_stage.py [--rows 60000] [--variant mixed] [--seed 42] [--threads 2]

A generated file in the training layout (``ctrops_common.testdata.variant_parquet``) goes
through the trainer's own training process (``ctrops_trainer.worker.run``, forked from the fork
server of ``worker.PROCESSES`` exactly as the service starts it; this first start includes the
server's) at the frontend's settings (epochs 10, batch 4096, lr 0.001, lstm_hidden 64, mlp_hidden
256,128, dropout 0.2, down-sampling, validation 0.2; early stopping patience 3 is the default).
Prints: wall time of the whole stage (child start to saved models), the LSTM's and the challenger's
own times, the child's peak RSS, each model's val AUC beside the oracle's on the same validation
rows, the champion and the DeLong comparison, plus the machine (cores, load before and after). One
job: no comparison with other settings (bench/lstm_levers.py and bench/models.py do that).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for src in ("libs/common/src", "services/trainer/src"):  # also runs without `make install`
    if str(ROOT / src) not in sys.path:
        sys.path.insert(0, str(ROOT / src))

FRONTEND = {"epochs": 10, "batchSize": 4096, "learningRate": 0.001, "lstmHidden": 64, "mlpHidden": "256,128",
            "dropout": 0.2, "downsampling": True, "validationSplit": 0.2}


def peak_rss_mb(pid: int, seen: float) -> float:
    """The training process's peak RSS so far (``VmHWM``). It is the fork server's child, not ours, so
    ``getrusage(RUSAGE_CHILDREN)`` never sees it; read at each message, the last read is at ``done``."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return max(seen, int(line.split()[1]) / 1024)
    except OSError:
        pass  # already gone
    return seen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--variant", default="mixed")
    parser.add_argument("--ctr", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import numpy as np
    from sklearn.metrics import roc_auc_score

    from ctrops_common.events import TrainingConfig
    from ctrops_common.splits import validation_rows
    from ctrops_common.testdata import variant_parquet
    from ctrops_trainer import worker

    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} "
          f"{os.getloadavg()[2]:.2f}, threads {args.threads}")
    with tempfile.TemporaryDirectory(prefix="ctrops-stage-") as tmp:
        folder = Path(tmp)
        parquet, truth, oracle = variant_parquet(folder, args.variant, args.rows, seed=args.seed, ctr=args.ctr)
        config = TrainingConfig.model_validate({**FRONTEND, "seed": args.seed})
        job = {"run_id": "bench" + "0" * 27, "parquet_path": str(parquet), "data_dir": str(folder / "data"),
               "config": config.model_dump(mode="json"), "threads": args.threads, "seq_chunks": 4,
               "device": "cpu"}
        processes = worker.PROCESSES
        messages, stop = processes.Queue(), processes.Event()
        started = time.perf_counter()
        child = processes.Process(target=worker.run, args=(job, messages, stop))
        child.start()
        epochs, summary = 0, None
        challenger_at = None
        peak_mb = 0.0
        while summary is None:
            message = messages.get(timeout=1800)
            peak_mb = peak_rss_mb(child.pid, peak_mb)
            if message[0] == "epoch":
                epochs += 1
            elif message[0] == "challenger_started":
                challenger_at = time.perf_counter()
            elif message[0] == "done":
                summary = message[1]
            elif message[0] in ("failed", "cancelled"):
                print("training did not finish:", message)
                return 1
        wall = time.perf_counter() - started
        child.join()

        import pyarrow.parquet as pq

        labels = pq.read_table(parquet, columns=["clicked"]).column("clicked").to_numpy().astype(np.float64)
        val = validation_rows(labels, config.validation_split, config.seed)
        oracle_auc = roc_auc_score(labels[val], np.asarray(oracle)[val])
        models = {m["kind"]: m for m in summary["models"]}
        print(f"data: {args.variant} {args.rows} rows, {int(labels.sum())} clicks, oracle val AUC {oracle_auc:.4f}")
        print(f"whole training stage: {wall:.1f} s wall (child start to both models saved); "
              f"LSTM until the challenger started {challenger_at - started:.1f} s ({epochs} epochs); "
              f"peak RSS of the training process {peak_mb:.0f} MB")
        for kind in ("lstm", "gbdt"):
            m = models[kind]
            auc = m["metrics"]["auc"]
            print(f"  {m['label']:9s} val AUC {auc:.4f} [{m['auc_ci_low']:.4f}, {m['auc_ci_high']:.4f}] "
                  f"(oracle - {oracle_auc - auc:.4f}), AP {m['metrics']['ap']:.4f}, logloss "
                  f"{m['metrics']['logloss']:.4f}, {m['duration_s']:.1f} s, best {m['best_iteration']} "
                  f"of {m['iterations_run']}")
        c = summary["comparison"]
        print(f"champion {summary['champion']}; DeLong: gbdt - lstm {c['difference']:+.4f} "
              f"[{c['ci_low']:+.4f}, {c['ci_high']:+.4f}], p {c['p_value']:.3g}; batch {json.dumps(summary['batch'])}")
    print(f"load after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
