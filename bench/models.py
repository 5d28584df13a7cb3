"""Model quality against the oracle: the LSTM+MLP and the LightGBM challenger on generated sets
whose true click probability is known.

    .venv/bin/python bench/models.py [--seeds 1,2] [--large] [--only seq] [--sets seq:0.05:20000,...]
                                     [--threads 2]
                                     [--workdir /tmp/ctrops-bench-models] [--json out.jsonl]

Data: ``ctrops_common.testdata.variant_parquet`` (the generator's variants, in the training
layout the ingest pipeline writes): signal only in tabular interactions (``tabular``), only in
recent ``seq`` tokens (``seq``), in an hour window (``hour``), all of these (``mixed``), and
none at all (``none``); CTRs 0.5%, 2%, 5%; 20k and 60k rows (600k with ``--large``). Data seed
= training seed = each of ``--seeds``.

Models, at the frontend's settings (epochs 10, batch 4096, lr 0.001, lstmHidden 64, mlpHidden
256,128, dropout 0.2, down-sampling on, validation 0.2; everything else the config's
defaults): ``ctrops_trainer.training.train`` (LSTM+MLP) and
``ctrops_trainer.challenger.train_challenger`` (LightGBM) on the LSTM's split. On the ``seq``
sets also a LightGBM on the tabular columns only (the challenger's parameters and early
stopping, no seq features): the LSTM must beat it there, which shows the sequence is learnt.

Printed per data set: the oracle's val AUC (the generating probability scored on exactly the
validation rows: the best any model can do on them), each model's val AUC and its gap to the
oracle, the champion (better val AUC) and its gap, the paired DeLong test of the two models
(``ctrops_common.auc_stats.delong_paired``: GBDT - LSTM, p), wall time of each; plus the
machine (CPUs, torch threads, load average before and after).

While the LSTM's ``TrainResult.split`` / ``val_probability``, the challenger or the DeLong
test are not in the tree yet, the bench says which is missing and exits 3 (``--wait N``: poll
for them up to N seconds first).
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

# (variant, ctr, rows): at least 6 sets at 20k/60k, every variant and CTR represented.
DATASETS = [
    ("mixed", 0.02, 20_000),
    ("tabular", 0.02, 20_000),
    ("seq", 0.02, 20_000),
    ("hour", 0.02, 20_000),
    ("none", 0.02, 20_000),
    ("mixed", 0.005, 60_000),
    ("tabular", 0.05, 60_000),
    ("seq", 0.05, 60_000),
    ("mixed", 0.02, 60_000),
]
LARGE = [("mixed", 0.02, 600_000), ("seq", 0.005, 600_000), ("tabular", 0.02, 600_000)]

# The frontend's form values (issue 18); every other key keeps TrainingConfig's default.
FRONTEND = dict(epochs=10, batch_size=4096, learning_rate=0.001, lstm_hidden=64, mlp_hidden=[256, 128],
                dropout=0.2, downsampling=True, validation_split=0.2)


def missing_inputs() -> list[str]:
    """What this bench needs from the other parts of the trainer and is not there yet."""
    missing = []
    try:
        from ctrops_trainer.training import TrainResult

        fields = getattr(TrainResult, "__dataclass_fields__", {})
        missing += [f"ctrops_trainer.training.TrainResult.{f}" for f in ("split", "val_probability", "seconds")
                    if f not in fields]
    except Exception as exc:  # noqa: BLE001 - a half-written module is as missing as an absent one
        missing.append(f"ctrops_trainer.training ({type(exc).__name__}: {exc})")
    try:
        from ctrops_trainer.challenger import train_challenger  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        missing.append(f"ctrops_trainer.challenger.train_challenger ({type(exc).__name__}: {exc})")
    try:
        from ctrops_common.auc_stats import delong_paired  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        missing.append(f"ctrops_common.auc_stats.delong_paired ({type(exc).__name__}: {exc})")
    return missing


def frontend_config(seed: int):
    from ctrops_common.events import TrainingConfig

    return TrainingConfig(seed=seed, **FRONTEND)


def tabular_only_gbdt(data, split, seed: int, threads: int) -> tuple[float, float]:
    """LightGBM on the tabular columns alone (the challenger's parameters and early stopping):
    (val AUC, seconds)."""
    import lightgbm as lgb

    from ctrops_common.auc_stats import auc_ci
    from ctrops_trainer.challenger import MAX_ROUNDS, PATIENCE, challenger_params

    started = time.perf_counter()
    train_set = lgb.Dataset(data.features[split.train_all], data.labels[split.train_all])
    val_set = lgb.Dataset(data.features[split.val], data.labels[split.val], reference=train_set)
    booster = lgb.train(challenger_params(seed, threads), train_set, num_boost_round=MAX_ROUNDS,
                        valid_sets=[val_set], valid_names=["val"],
                        callbacks=[lgb.early_stopping(PATIENCE, first_metric_only=True, verbose=False)])
    p = booster.predict(data.features[split.val], num_iteration=booster.best_iteration or None)
    return auc_ci(data.labels[split.val], p).auc, time.perf_counter() - started


def measure(parquet: Path, truth: dict, oracle, seed: int, threads: int, tabular_baseline: bool) -> dict:
    """Both models on one data set at the frontend's settings, against the oracle on the same rows."""
    from ctrops_common.auc_stats import auc_ci, delong_paired
    from ctrops_trainer.challenger import train_challenger
    from ctrops_trainer.data import read_training_file
    from ctrops_trainer.training import train

    config = frontend_config(seed)
    data = read_training_file(parquet, config.max_seq_len)
    lstm = train(data, config)
    split = lstm.split
    y = data.labels[split.val]
    gbdt = train_challenger(data, split, config, threads=threads)
    oracle_auc = auc_ci(y, oracle[split.val]).auc
    lstm_auc = auc_ci(y, lstm.val_probability).auc
    gbdt_auc = auc_ci(y, gbdt.val_probability).auc
    paired = delong_paired(y, lstm.val_probability, gbdt.val_probability)
    champion = "gbdt" if gbdt_auc > lstm_auc else "lstm"
    row = {
        "variant": truth["variant"], "ctr": truth["ctr_percent"], "rows": truth["rows"], "seed": seed,
        "file_oracle_auc": truth["oracle_auc"], "val_rows": int(len(split.val)), "val_clicks": int(y.sum()),
        "oracle_auc": oracle_auc, "lstm_auc": lstm_auc, "gbdt_auc": gbdt_auc,
        "champion": champion, "champion_auc": max(lstm_auc, gbdt_auc),
        "delong_diff": paired.difference, "delong_p": paired.p_value,
        "lstm_s": lstm.seconds, "gbdt_s": gbdt.seconds,
        "lstm_best_epoch": lstm.best_epoch, "lstm_epochs": lstm.epochs_run,
        "batch_used": getattr(lstm.batch, "used", None), "gbdt_rounds": gbdt.best_iteration,
    }
    if tabular_baseline:
        row["tab_gbdt_auc"], row["tab_gbdt_s"] = tabular_only_gbdt(data, split, seed, threads)
    return row


def machine() -> str:
    import torch

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs (nproc), "
            f"torch {torch.__version__} with {torch.get_num_threads()} threads, load average {load}")


HEADER = ("| set (variant, CTR, rows) | seed | val clicks | oracle | LSTM (gap) | GBDT (gap) | champion (gap) "
          "| DeLong GBDT-LSTM (p) | tab-only GBDT | LSTM s | GBDT s |")


def format_row(r: dict) -> str:
    def gap(auc: float) -> str:
        return f"{auc:.4f} ({auc - r['oracle_auc']:+.4f})"

    tab = f"{r['tab_gbdt_auc']:.4f}" if "tab_gbdt_auc" in r else "-"
    return (f"| {r['variant']}, {r['ctr']:.2f}%, {r['rows'] // 1000}k | {r['seed']} | {r['val_clicks']} "
            f"| {r['oracle_auc']:.4f} | {gap(r['lstm_auc'])} | {gap(r['gbdt_auc'])} "
            f"| {r['champion']} {gap(r['champion_auc'])} | {r['delong_diff']:+.4f} ({r['delong_p']:.3g}) "
            f"| {tab} | {r['lstm_s']:.1f} | {r['gbdt_s']:.1f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--large", action="store_true", help="also the 600k-row sets (minutes each on 2 cores)")
    parser.add_argument("--only", default="", help="comma-separated variants to keep")
    parser.add_argument("--sets", default="", help="instead of the built-in list: variant:ctr:rows,... "
                        "(e.g. seq:0.05:20000, the sets of services/trainer/tests/test_model_quality.py)")
    parser.add_argument("--max-rows", type=int, default=0, help="skip sets larger than this")
    parser.add_argument("--threads", type=int, default=2, help="torch and LightGBM threads")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ctrops-bench-models"))
    parser.add_argument("--json", type=Path, default=None, help="append one JSON line per result")
    parser.add_argument("--wait", type=float, default=0.0, help="poll this many seconds for missing inputs")
    args = parser.parse_args()

    deadline = time.monotonic() + args.wait
    while missing := missing_inputs():
        if time.monotonic() >= deadline:
            print("not run: waiting for " + "; ".join(missing), file=sys.stderr)
            return 3
        time.sleep(min(30.0, max(1.0, deadline - time.monotonic())))
        for name in [m for m in sys.modules if m.startswith(("ctrops_trainer", "ctrops_common"))]:
            del sys.modules[name]  # re-import what may have landed meanwhile

    import torch

    from ctrops_common.testdata import variant_parquet

    torch.set_num_threads(args.threads)
    sets = DATASETS + (LARGE if args.large else [])
    if args.sets:
        sets = [(v, float(c), int(r)) for v, c, r in (item.split(":") for item in args.sets.split(","))]
    if args.only:
        sets = [s for s in sets if s[0] in args.only.split(",")]
    if args.max_rows:
        sets = [s for s in sets if s[2] <= args.max_rows]
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"before: {machine()}", flush=True)
    print(f"settings: {FRONTEND} (other keys: TrainingConfig defaults)", flush=True)
    print(HEADER)
    print("|" + "---|" * (HEADER.count("|") - 1), flush=True)
    results = []
    for variant, ctr, rows in sets:
        for seed in seeds:
            parquet, truth, oracle = variant_parquet(args.workdir, variant, rows, seed=seed, ctr=ctr)
            row = measure(parquet, truth, oracle, seed, args.threads, tabular_baseline=variant == "seq")
            row["load_1m"] = os.getloadavg()[0]
            results.append(row)
            print(format_row(row), flush=True)
            if args.json:
                with args.json.open("a") as out:
                    out.write(json.dumps(row) + "\n")
    print(f"after: {machine()}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
