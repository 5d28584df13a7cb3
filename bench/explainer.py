"""Explainer benchmark.

1. LIME on ``--rows`` rows x ``--samples`` perturbations each, with the explainer's batched
   ``predict_proba`` (LSTM once per sequence, ``head`` over all samples in large batches)
   against the naive way: a ``predict_proba`` that runs the full model one perturbed row at
   a time. Same model, same LIME explainer settings, same rows, one process. The naive way
   costs minutes per row, so it runs on the first ``--naive-rows`` rows; the batched way is
   timed on those same rows (like-for-like ratio) and on all ``--rows``. A third variant,
   "full batch", scores all samples of a row in one call but re-runs the LSTM for every
   sample (what a straightforward vectorised wrapper does).
2. Wall time from ``training.done`` to ``explanation.done`` for the 60k-row file: a real
   explainer process on an embedded broker, default settings.

The model is ``TabularSeqModel`` with the default training config's architecture (LSTM 64,
MLP 256-128, 128 most recent tokens), trained here for a few epochs on the down-sampled
generated file, or the trainer's model when ``--model`` points at a saved model folder.

Usage: .venv/bin/python bench/explainer.py [--rows 200] [--samples 5000] [--naive-rows 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import torch

from ctrops_common.datagen import generate
from ctrops_common.ml import Preprocess, TabularSeqModel, load_model, save_model


def to_training_layout(csv: Path, out: Path) -> None:
    table = pacsv.read_csv(csv, convert_options=pacsv.ConvertOptions(column_types={"seq": pa.string()}))
    columns = [pc.cast(pc.split_pattern(table.column(n), ","), pa.list_(pa.int32())) if n == "seq"
               else table.column(n).cast(pa.int8() if n == "clicked" else pa.float64()) for n in table.column_names]
    pq.write_table(pa.table(columns, names=table.column_names), out)


def train_stand_in(parquet: Path, folder: Path, epochs: int, threads: int) -> None:
    """Default architecture, down-sampled negatives (2 per click), a few epochs: a realistic-size model."""
    from ctrops_common.model_inputs import DataFile

    torch.manual_seed(42)
    torch.set_num_threads(threads)
    names = [c for c in pq.read_schema(parquet).names if c not in ("seq", "clicked")]
    raw = pq.read_table(parquet, columns=names)
    values = np.column_stack([raw.column(c).to_numpy(zero_copy_only=False) for c in names])
    clicked = pq.read_table(parquet, columns=["clicked"]).column(0).to_numpy().astype(int)
    rng = np.random.default_rng(42)
    clicks = np.flatnonzero(clicked == 1)
    kept = np.sort(np.r_[clicks, rng.choice(np.flatnonzero(clicked == 0), 2 * len(clicks), replace=False)])
    base_rate, train_rate = float(clicked.mean()), float(clicked[kept].mean())
    preprocess = Preprocess(names, np.nan_to_num(np.nanmedian(values, axis=0)).tolist(), 128, 500.0,
                            64, [256, 128], 0.2, base_rate, train_rate)
    rows = DataFile(parquet, preprocess).rows(kept)
    model = TabularSeqModel(len(names), 64, [256, 128], 0.2)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, seq = torch.from_numpy(rows.x_tab), torch.from_numpy(rows.seq)
    lengths, y = torch.from_numpy(rows.lengths), torch.from_numpy(rows.clicked.astype(np.float32))
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y))
        for start in range(0, len(y), 256):
            batch = order[start:start + 256]
            if len(batch) < 2:
                continue
            optimiser.zero_grad()
            torch.nn.functional.binary_cross_entropy_with_logits(
                model(x[batch], seq[batch], lengths[batch]), y[batch]).backward()
            optimiser.step()
    save_model(folder, model.eval(), preprocess)


class NaivePredictor:
    """LIME's predict_fn the naive way: the full model (LSTM included), one perturbed row at a time."""

    def __init__(self, model, preprocess, own_seq, own_len, bank_seq, bank_len, seed: int) -> None:
        self.model, self.preprocess = model, preprocess
        self.own = (torch.from_numpy(own_seq[None, :max(own_len, 1)]), torch.tensor([own_len]))
        self.bank = [(torch.from_numpy(bank_seq[i:i + 1, :max(int(n), 1)]), torch.tensor([int(n)]))
                     for i, n in enumerate(bank_len)]
        self.rng = np.random.default_rng(seed)

    @torch.inference_mode()
    def __call__(self, rows: np.ndarray) -> np.ndarray:
        from ctrops_common.ml import correct_probability

        p = np.empty(len(rows))
        for k, row in enumerate(rows):
            seq, length = self.own if row[-1] >= 0.5 else self.bank[self.rng.integers(len(self.bank))]
            x = torch.from_numpy(row[None, :-1].astype(np.float32))
            p[k] = torch.sigmoid(self.model(x, seq, length)).item()
        p = correct_probability(p, self.preprocess.train_rate, self.preprocess.base_rate)
        return np.column_stack([1 - p, p])


class FullBatchPredictor(NaivePredictor):
    """All of a row's samples in one forward pass, but the LSTM re-run on every sample's sequence."""

    @torch.inference_mode()
    def __call__(self, rows: np.ndarray) -> np.ndarray:
        from ctrops_common.ml import correct_probability

        own = rows[:, -1] >= 0.5
        width = max(self.own[0].shape[1], max(s.shape[1] for s, _ in self.bank))
        seq = torch.zeros((len(rows), width))
        lengths = torch.zeros(len(rows), dtype=torch.int64)
        picks = self.rng.integers(len(self.bank), size=len(rows))
        for k in range(len(rows)):
            s, n = self.own if own[k] else self.bank[picks[k]]
            seq[k, :s.shape[1]] = s[0]
            lengths[k] = n[0]
        logits = self.model(torch.from_numpy(rows[:, :-1].astype(np.float32)), seq, lengths).numpy()
        p = correct_probability(1 / (1 + np.exp(-logits)), self.preprocess.train_rate, self.preprocess.base_rate)
        return np.column_stack([1 - p, p])


def bench_lime(model, preprocess, parquet: Path, rows: int, samples: int, naive_rows: int, threads: int) -> dict:
    from threadpoolctl import threadpool_limits

    from ctrops_common.model_inputs import DataFile
    from ctrops_explainer.lime import TabularSeqLime
    from ctrops_explainer.pipeline import stratified_sample
    from ctrops_common.model_loading import LoadedModel
    from ctrops_explainer.scoring import Scorer

    torch.set_num_threads(threads)
    data = DataFile(parquet, preprocess)
    rng = np.random.default_rng(42)
    index = stratified_sample(data.clicked, rows, 0.5, rng)
    rng.shuffle(index)  # clicks and non-clicks mixed, so the naive subset is representative
    rest = np.setdiff1d(np.arange(len(data)), index)
    background = data.rows(np.sort(rng.choice(rest, 2000, replace=False)))
    explained = data.rows(index)
    subset = data.rows(index[:naive_rows])
    scorer = Scorer(LoadedModel("lstm", preprocess, model), 8192)
    out: dict = {}
    with threadpool_limits(limits=1, user_api="blas"):
        def run(name, target_rows, factory=None):
            lime = TabularSeqLime(scorer, background, 256, 42)
            started = time.perf_counter()
            local = lime.explain(target_rows, samples, factory if factory is None else factory(lime, target_rows))
            out[name] = time.perf_counter() - started
            return local

        def naive(cls):
            def make(lime, target_rows):
                bank = np.arange(len(lime.bank_states))
                return lambda i, row, own_state: cls(model, preprocess, target_rows.seq[i], int(target_rows.lengths[i]),
                                                     background.seq[bank], background.lengths[bank], 42 + i)
            return make

        batched_subset = run("batched_subset_s", subset)
        run("batched_all_s", explained)
        naive_local = run("naive_subset_s", subset, naive(NaivePredictor))
        run("full_batch_subset_s", subset, naive(FullBatchPredictor))
    # Same seeds, same perturbations: the two ways must agree (float32 batch vs row arithmetic aside).
    out["max_weight_difference"] = float(np.abs(batched_subset.weights - naive_local.weights).max())
    out["rows"], out["naive_rows"], out["samples"] = rows, naive_rows, samples
    return out


async def bench_end_to_end(data_root: Path, parquet: Path, model_folder: Path) -> dict:
    from ctrops_common.broker import EmbeddedBroker, free_port
    from ctrops_common.bus import Bus
    from ctrops_common.dataset import parquet_path
    from ctrops_common.events import ModelMetrics, Topic, TrainingConfig, TrainingDone, new_id
    from ctrops_common.settings import CommonSettings
    from ctrops_common.testing import read_events, start_service

    broker = EmbeddedBroker(free_port(), log_file=data_root / "broker.log").start()
    os.environ.update(CTROPS_KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers, CTROPS_DATA_DIR=str(data_root / "store"),
                      CTROPS_TOPIC_PREFIX=f"bench{new_id()[:8]}.", CTROPS_LOG_JSON="false")
    run_id, file_id = new_id(), new_id()
    store = data_root / "store"
    (store / parquet_path(file_id)).parent.mkdir(parents=True)
    shutil.copy(parquet, store / parquet_path(file_id))
    shutil.copytree(model_folder, store / "runs" / run_id / "model")
    explainer = start_service("explainer", data_root / "logs")
    bus = Bus(CommonSettings(), "bench")
    await bus.start()
    try:
        done = TrainingDone(run_id=run_id, file_id=file_id, model_location=f"runs/{run_id}/model/",
                            metrics=ModelMetrics(train_loss=0, val_loss=0, train_accuracy=0, val_accuracy=0),
                            best_epoch=1, epochs_run=1, duration_s=0, experiment_name="bench", config=TrainingConfig())
        sent = await bus.publish(Topic.TRAINING_DONE, done, correlation_id=run_id)
        started = time.perf_counter()
        [explained] = await read_events(Topic.EXPLANATION_DONE, timeout_s=3600,
                                        predicate=lambda e: e.payload.run_id == run_id)
        wall = time.perf_counter() - started
    finally:
        await bus.stop()
        explainer.stop()
        broker.stop()
    from ctrops_common.dataset import explanation_path
    from ctrops_common.documents import Explanation, read_document
    from ctrops_common.storage import FileStore

    result = read_document(FileStore(store), explanation_path(run_id), Explanation)
    return {"wall_s": wall, "event_time_s": (explained.time - sent.time).total_seconds(),
            "timings": result.timings, "top": [(f.feature, round(f.importance, 3), f.p_value)
                                               for f in result.features[:10]],
            "permutation_top": [f.feature for f in result.permutation.features[:10]],
            "overlap": result.permutation.top10_overlap_with_lime}


def bench_stages(parquet: Path, lstm_folder: Path, root: Path, threads: int) -> dict:
    """The explanation's stages (default settings, the trainer's default split) for both model kinds:
    a LightGBM fitted here on the split's training rows (the challenger's shape) and the LSTM stand-in."""
    import lightgbm as lgb

    from ctrops_common.gbdt import GbdtModel, SeqFeatureSpec, learn_vocab, seq_features
    from ctrops_common.model_loading import load_ctr_model
    from ctrops_common.splits import training_rows
    from ctrops_common.model_inputs import DataFile
    from ctrops_explainer.pipeline import ExplainConfig, explain

    names = [c for c in pq.read_schema(parquet).names if c not in ("seq", "clicked")]
    clicked = pq.read_table(parquet, columns=["clicked"]).column(0).to_numpy()
    train = training_rows(clicked, 0.2, 42)
    rate = float(clicked[train].mean())
    pre = Preprocess(names, [0.0] * len(names), 128, 1.0, 0, [], 0.0, rate, rate, kind="gbdt")
    rows = DataFile(parquet, pre).rows(train)
    spec = SeqFeatureSpec(vocab=learn_vocab(rows.seq, rows.lengths, 16, 64))
    pre.extra = {"seq_features": spec.to_json()}
    booster = lgb.train({"objective": "binary", "num_leaves": 7, "feature_fraction": 0.5, "learning_rate": 0.05,
                         "verbose": -1, "num_threads": 1, "seed": 0},
                        lgb.Dataset(np.column_stack([rows.x_tab, seq_features(rows.seq, rows.lengths, spec)]),
                                    rows.clicked), 300)
    GbdtModel(pre, booster, spec.names()).save(root / "gbdt")
    out = {"permutation_ways": compare_permutation_ways(root / "gbdt", parquet, threads)}
    for kind, folder in (("gbdt", root / "gbdt"), ("lstm", lstm_folder)):
        loaded = load_ctr_model(folder)
        started = time.perf_counter()
        result = explain(loaded, parquet, ExplainConfig(torch_threads=threads))
        out[kind] = {"wall_s": time.perf_counter() - started, "timings": result["timings"],
                     "lime_samples": result["sample"].get("lime_samples"),
                     "significant": result["significant_features"][:10],
                     "top": [(f["feature"], round(f["importance"], 3), f"{f['pValue']:.1e}", f["direction"])
                             for f in result["features"][:6]]}
    return out


def compare_permutation_ways(folder: Path, parquet: Path, threads: int) -> dict:
    """The held-out permutation test of one LightGBM on the same 5,000 validation rows, side by side:
    every shuffle scored by LightGBM in full vs only the trees that read the shuffled feature re-walked."""
    import ctrops_explainer.heldout as heldout
    from ctrops_common.model_loading import load_ctr_model
    from ctrops_common.splits import validation_rows
    from ctrops_common.model_inputs import DataFile
    from ctrops_explainer.pipeline import stratified_sample
    from ctrops_explainer.scoring import Scorer
    from ctrops_explainer.shuffle import Shuffled, shuffled_scores

    loaded = load_ctr_model(folder)
    data = DataFile(parquet, loaded.preprocess)
    val = validation_rows(data.clicked, 0.2, 42)
    rows = data.rows(val[stratified_sample(data.clicked[val], 5000, 0.5, np.random.default_rng(0))])
    scorer = Scorer(loaded, 8192, threads)
    states = scorer.encode(rows.seq, rows.lengths)
    names = [*loaded.preprocess.feature_columns, "seq"]
    out, drops = {}, {}
    for way, factory in (("full", Shuffled), ("trees", shuffled_scores)):
        heldout.shuffled_scores = factory
        started = time.perf_counter()
        result = heldout.heldout_permutation(scorer, rows.x_tab, states, rows.clicked, names, 2, 500, 42)
        out[f"{way}_s"] = round(time.perf_counter() - started, 3)
        drops[way] = result.drop
    heldout.shuffled_scores = shuffled_scores
    out["max_drop_difference"] = float(np.abs(drops["full"] - drops["trees"]).max())
    out["trees"] = loaded.model.booster.num_trees()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--naive-rows", type=int, default=10)
    parser.add_argument("--data-rows", type=int, default=60_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the LIME comparison (1: fair to the row-by-row way)")
    parser.add_argument("--model", type=Path, help="a saved model folder (model.pt + preprocess.json)")
    parser.add_argument("--skip-end-to-end", action="store_true")
    parser.add_argument("--stages-only", action="store_true",
                        help="only the explanation's stages for a LightGBM and the LSTM (default settings)")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-explainer-"))
    try:
        print(f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, torch {torch.__version__}")
        started = time.perf_counter()
        truth = generate(root / "clicks.csv", args.data_rows, seed=42)
        to_training_layout(root / "clicks.csv", root / "data.parquet")
        print(f"data: {truth['rows']} rows, {truth['clicks']} clicks ({time.perf_counter() - started:.1f}s)")
        model_folder = args.model
        if model_folder is None:
            model_folder = root / "model"
            started = time.perf_counter()
            train_stand_in(root / "data.parquet", model_folder, args.epochs, args.threads)
            print(f"stand-in model trained ({args.epochs} epochs, down-sampled): {time.perf_counter() - started:.1f}s")
        model, preprocess = load_model(model_folder)
        if args.stages_only:
            print(f"machine load before: {os.getloadavg()}")
            stages = bench_stages(root / "data.parquet", model_folder, root, args.threads)
            print(f"permutation test of the LightGBM, 5,000 rows x 118 features x 2 shuffles: {stages.pop('permutation_ways')}")
            for kind, stage in stages.items():
                print(f"\n{kind}: explain {stage['wall_s']:.1f} s, stages {stage['timings']}")
                print(f"  LIME samples per row: {stage['lime_samples']}; significant: {stage['significant']}")
                print(f"  top: {stage['top']}")
            print(f"machine load after: {os.getloadavg()}")
            return 0

        lime = bench_lime(model, preprocess, root / "data.parquet", args.rows, args.samples, args.naive_rows,
                          args.threads)
        k = lime["naive_rows"]
        per_row = {name: lime[f"{name}_subset_s"] / k for name in ("batched", "naive", "full_batch")}
        print(f"\nLIME, {lime['samples']} samples per row, torch threads {args.threads}")
        print(f"  batched, all {lime['rows']} rows:        {lime['batched_all_s']:8.1f} s "
              f"({lime['batched_all_s'] / lime['rows']:.3f} s/row)")
        print(f"  batched, first {k} rows:            {lime['batched_subset_s']:8.1f} s ({per_row['batched']:.3f} s/row)")
        print(f"  naive (row by row), first {k} rows: {lime['naive_subset_s']:8.1f} s ({per_row['naive']:.3f} s/row)")
        print(f"  full batch (LSTM per sample), {k}:   {lime['full_batch_subset_s']:8.1f} s "
              f"({per_row['full_batch']:.3f} s/row)")
        print(f"  batched / naive on the same rows:  {lime['batched_subset_s'] / lime['naive_subset_s']:.2%}")
        print(f"  naive extrapolated to {lime['rows']} rows:   {per_row['naive'] * lime['rows']:8.1f} s -> "
              f"batched is {lime['batched_all_s'] / (per_row['naive'] * lime['rows']):.2%} of it")
        print(f"  largest weight difference batched vs naive: {lime['max_weight_difference']:.2e}")

        if not args.skip_end_to_end:
            e2e = asyncio.run(bench_end_to_end(root, root / "data.parquet", model_folder))
            print(f"\ntraining.done -> explanation.done, {args.data_rows} rows, default settings: "
                  f"{e2e['wall_s']:.1f} s (event timestamps: {e2e['event_time_s']:.1f} s)")
            print(f"  stages: {e2e['timings']}")
            print(f"  LIME top 10: {e2e['top']}")
            print(f"  permutation top 10: {e2e['permutation_top']} (overlap with LIME: {e2e['overlap']})")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
