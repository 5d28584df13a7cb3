"""Benchmark: the LightGBM challenger (ctrops_trainer.challenger) on the generator's variants.

    .venv/bin/python bench/challenger.py [--sets mixed:60000:1:0.02,seq:60000:1:0.02,...]
                                         [--threads 2] [--workdir /tmp/ctrops-bench-challenger]
                                         [--no-baselines] [--downsampled]

Per data set (``ctrops_common.testdata.variant_parquet``: variant, rows, seed, CTR; each
with its generating probability, the oracle), on the trainer's split at the frontend's
settings (validation 20%, down-sampling on, seed 42: the challenger ignores the
down-sample and fits every training row), the 128-token window:

- ``oracle``: the generating probability's AUC on the validation rows (the best possible);
- ``challenger``: ``train_challenger`` as the trainer runs it (tabular + seq features,
  early stopping on validation AUC), its val AUC, rounds kept / run and wall seconds
  (seq features + fit + validation) with the CPU seconds of this process beside them (on a
  loaded machine the wall time says more about the neighbours than about the challenger);
- ``lgb tabular``: the same LightGBM settings on the tabular columns only (what the seq
  features add);
- ``HGB tabular``: scikit-learn's HistGradientBoostingClassifier with its defaults
  (early stopping on its own 10% of the training rows) on the tabular columns, the
  issue's baseline;
- with ``--downsampled``: the challenger fitted on the LSTM's 1:2 down-sample instead of
  every training row (why it does not down-sample).

Threads: ``--threads`` for LightGBM (and OMP_NUM_THREADS for scikit-learn);
``OMP_WAIT_POLICY=PASSIVE`` as in the trainer. The machine's load (``os.getloadavg``)
is printed before and after: timings on a shared machine are only as good as its load.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

DEFAULT_SETS = ("mixed:60000:1:0.02,seq:60000:1:0.02,tabular:60000:1:0.02,hour:60000:1:0.02,"
                "mixed:60000:2:0.005,seq:60000:2:0.05,seq:20000:3:0.02,mixed:20000:3:0.02")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=DEFAULT_SETS, help="variant:rows:seed:ctr, comma-separated")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ctrops-bench-challenger"))
    parser.add_argument("--no-baselines", action="store_true", help="the challenger only")
    parser.add_argument("--downsampled", action="store_true", help="also fit on the 1:2 down-sample")
    args = parser.parse_args(argv)

    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from ctrops_common.events import TrainingConfig
    from ctrops_common.testdata import variant_parquet
    from ctrops_trainer.challenger import train_challenger
    from ctrops_trainer.data import read_training_file, split_rows

    config = TrainingConfig()  # the frontend's settings: validation 0.2, down-sampling on, seed 42
    print(f"machine: {os.cpu_count()} CPUs, load {os.getloadavg()}, threads {args.threads}", flush=True)
    header = ("| set | rows | clicks | oracle | challenger | rounds | s | lgb tabular | s | HGB tabular | s |"
              + (" challenger down-sampled |" if args.downsampled else ""))
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for item in args.sets.split(","):
        variant, rows, seed, ctr = item.split(":")
        path, _truth, oracle = variant_parquet(args.workdir, variant, int(rows), int(seed), float(ctr))
        data = read_training_file(path, config.max_seq_len)
        split = split_rows(data.labels, config.validation_split, config.downsampling, config.seed)
        y_val = data.labels[split.val]
        oracle_auc = roc_auc_score(y_val, oracle[split.val])

        cpu = time.process_time()
        result = train_challenger(data, split, config, threads=args.threads)
        cpu = time.process_time() - cpu
        cells = [f"{variant} s{seed} {float(ctr):.1%}", rows, str(int(data.labels.sum())), f"{oracle_auc:.4f}",
                 f"{result.metrics['auc']:.4f}", f"{result.best_iteration}/{result.iterations_run}",
                 f"{result.seconds:.1f} ({cpu:.1f} CPU)"]
        if args.no_baselines:
            cells += ["", "", "", ""]
        else:
            auc, seconds = _lgb_tabular(data, split, config.seed, args.threads)
            cells += [f"{auc:.4f}", f"{seconds:.1f}"]
            auc, seconds = _hgb_tabular(data, split, config.seed)
            cells += [f"{auc:.4f}", f"{seconds:.1f}"]
        if args.downsampled:
            small = train_challenger(data, replace(split, train_all=split.train), config, threads=args.threads)
            cells.append(f"{small.metrics['auc']:.4f} ({len(split.train)} rows)")
        print("| " + " | ".join(cells) + " |", flush=True)
        del data
    print(f"load after: {os.getloadavg()}")
    return 0


def _lgb_tabular(data, split, seed: int, threads: int) -> tuple[float, float]:
    import lightgbm as lgb
    from sklearn.metrics import roc_auc_score

    from ctrops_trainer.challenger import MAX_ROUNDS, PATIENCE, challenger_params

    started = time.perf_counter()
    train = lgb.Dataset(data.features[split.train_all], data.labels[split.train_all])
    val = lgb.Dataset(data.features[split.val], data.labels[split.val], reference=train)
    booster = lgb.train(challenger_params(seed, threads), train, MAX_ROUNDS, valid_sets=[val],
                        callbacks=[lgb.early_stopping(PATIENCE, verbose=False)])
    auc = roc_auc_score(data.labels[split.val], booster.predict(data.features[split.val], raw_score=True))
    return float(auc), time.perf_counter() - started


def _hgb_tabular(data, split, seed: int) -> tuple[float, float]:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    started = time.perf_counter()
    model = HistGradientBoostingClassifier(random_state=seed, early_stopping=True)
    model.fit(data.features[split.train_all], data.labels[split.train_all])
    auc = roc_auc_score(data.labels[split.val], model.predict_proba(data.features[split.val])[:, 1])
    return float(auc), time.perf_counter() - started


if __name__ == "__main__":
    sys.exit(main())
