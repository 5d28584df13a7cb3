"""Reporter benchmark: time to build and render the standard PDF report.

A "standard report" is one run's full PDF (all sections): 12 ranked features with
confidence intervals, a 12x12 correlation heatmap, a 10-epoch training curve, three segment
tables (24 hours, 10 age x gender groups, 20 ad slots) and the deterministic narrative.
Run: ``.venv/bin/python bench/reporter.py [--repeats N]``. Prints one line per figure.
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import tempfile
import time
from pathlib import Path

from ctrops_common.dataset import explanation_path, profile_path
from ctrops_common.documents import Explanation, read_document, write_document
from ctrops_common.events import ExplanationDone, TrainingDone, new_id
from ctrops_common.sample_documents import explanation_document, profile_document
from ctrops_common.storage import FileStore


def standard_inputs(root: Path):
    from ctrops_reporter.facts import gather
    from ctrops_reporter.settings import ReporterSettings

    rng = random.Random(42)
    store = FileStore(root)
    run_id, file_id = new_id(), new_id()
    names = ["history_a_1", "hour", "l_feat_14", "age_group", "feat_a_3", "seq_length", "inventory_id",
             "gender", "day_of_week", "history_b_2", "feat_e_1", "l_feat_2"]
    features = []
    for rank, name in enumerate(names):
        importance = round(1.0 / (1 + 0.4 * rank), 4)
        features.append({"feature": name, "importance": importance, "p_value": round(0.001 * (1 + rank) ** 2, 4),
                         "ci": [round(importance * 0.8, 4), round(min(1.0, importance * 1.15), 4)],
                         "description": name})
    matrix = [[1.0 if i == j else round(rng.uniform(-0.4, 0.4), 3) for j in range(12)] for i in range(12)]
    for i in range(12):
        for j in range(i):
            matrix[i][j] = matrix[j][i]
    write_document(store, explanation_path(run_id), explanation_document(run_id, file_id, features, matrix=matrix))

    def table(values, key="value"):
        out = []
        for v in values:
            rows = rng.randint(1500, 4000)
            clicks = sum(rng.random() < rng.uniform(0.012, 0.03) for _ in range(rows))
            out.append({**({key: v} if key else v), "rows": rows, "clicks": clicks})
        return out

    write_document(store, profile_path(file_id), profile_document(
        hour=table(range(24)),
        day_of_week=table(range(1, 8)),
        inventory_id=table(rng.sample(range(1, 100), 20)),
        age_group_gender=table([{"age_group": a, "gender": g} for a in (4, 5, 6, 7, 8) for g in (1, 2)], key=None),
    ))
    metrics = {"train_loss": 0.52, "val_loss": 0.092, "train_accuracy": 0.74, "val_accuracy": 0.979, "auc": 0.739,
               "ap": 0.087, "logloss": 0.092, "calibration": 1.07, "score": 0.481, "precision": 0.081,
               "recall": 0.348, "f1": 0.132, "threshold": 0.061}
    curve = [{"epoch": e, **{k: v * (1 + 0.02 * (10 - e)) for k, v in metrics.items()}} for e in range(1, 11)]
    training = TrainingDone.model_validate({
        "run_id": run_id, "file_id": file_id, "model_location": f"runs/{run_id}/model", "metrics": metrics,
        "best_epoch": 10, "epochs_run": 10, "duration_s": 300.0, "experiment_name": "bench", "config": {}})
    explained = ExplanationDone(run_id=run_id, location=explanation_path(run_id), top_features=features)
    settings = ReporterSettings(openai_api_key=None)
    return store, gather(store, training, explained, curve, settings), settings, curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    started = time.perf_counter()
    from ctrops_reporter import charts, pdf  # noqa: F401 - import cost is part of a cold start
    from ctrops_reporter.facts import correlation_from
    from ctrops_reporter.narrative import write_narrative
    from ctrops_reporter.pdf import PdfInputs, PdfOptions, render_pdf
    from ctrops_reporter.report import build_report
    import_s = time.perf_counter() - started

    with tempfile.TemporaryDirectory() as tmp:
        store, facts, settings, curve = standard_inputs(Path(tmp))
        t = time.perf_counter()
        report = build_report(facts, write_narrative(facts, settings))
        narrative_s = time.perf_counter() - t
        correlation = correlation_from(read_document(store, explanation_path(facts.run_id), Explanation))
        inputs = PdfInputs(report, curve, correlation)

        t = time.perf_counter()
        first = render_pdf(inputs)
        cold_s = time.perf_counter() - t
        warm = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            data = render_pdf(inputs)
            warm.append(time.perf_counter() - t)
        t = time.perf_counter()
        render_pdf(inputs, PdfOptions(include_charts=False))
        no_charts_s = time.perf_counter() - t

        from pypdf import PdfReader

        pages = len(PdfReader(io.BytesIO(data)).pages)
    print(f"import reporter modules (reportlab, matplotlib): {import_s:.2f} s")
    print(f"facts -> report JSON (deterministic narrative): {1000 * narrative_s:.1f} ms")
    print(f"standard PDF, first in process (font registration, matplotlib set-up): {cold_s:.2f} s")
    print(f"standard PDF, warm, {args.repeats} runs: median {statistics.median(warm):.2f} s, "
          f"max {max(warm):.2f} s ({pages} pages, {len(first) / 1024:.0f} KiB)")
    print(f"PDF without charts: {no_charts_s:.2f} s")
    print(f"target < 5 s: {'met' if max(cold_s, *warm) < 5 else 'MISSED'} (worst {max(cold_s, *warm):.2f} s)")


if __name__ == "__main__":
    main()
