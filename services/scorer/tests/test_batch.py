"""Batch scoring of a Parquet file in chunks: the same numbers as offline whatever the chunk size,
progress after each chunk, a period fed with every row; and the drift reference's sample."""

from __future__ import annotations

import csv

import numpy as np
import pyarrow.parquet as pq
import pytest

from ctrops_common.dataset import predictions_path
from ctrops_common.events import new_id
from ctrops_common.storage import FileStore
from ctrops_scorer.batch import BatchInputError, score_file
from ctrops_scorer.drift import Reference
from ctrops_scorer.period import PeriodAccumulator
from ctrops_scorer.reference import model_reference, reference_path, sample_rows


def read_predictions(path) -> tuple[list[int], np.ndarray]:
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        assert next(reader) == ["row", "probability"]
        rows = list(reader)
    return [int(r[0]) for r in rows], np.array([float(r[1]) for r in rows])


@pytest.mark.parametrize("kind", ["lstm", "gbdt"])
def test_chunked_scoring_equals_offline_and_feeds_the_period(tmp_path, trained, place_run, kind):
    store = FileStore(tmp_path / "data")
    done = place_run(store, champion=kind)
    model = trained.loaded(kind)
    reference = model_reference(store, done, kind, model, rows=1000, seed=3)
    accumulator = PeriodAccumulator(reference)
    seen = []
    job_id = new_id()
    result = score_file(store, trained.parquet, job_id, model, accumulator=accumulator, chunk_rows=700,
                        progress=lambda done_rows, total: seen.append((done_rows, total)))
    assert result.rows == 3000 and result.labelled and result.location == predictions_path(job_id)
    assert seen == [(700, 3000), (1400, 3000), (2100, 3000), (2800, 3000), (3000, 3000)]
    rows, p = read_predictions(store.path(result.location))
    assert rows == list(range(3000))
    np.testing.assert_allclose(p, trained.offline[kind], rtol=0, atol=1e-6)
    assert not list(store.path(result.location).parent.glob("*.part"))  # the temp file became the result

    period = accumulator.finish(run_id=done.run_id, model_kind=kind, period="2026-03", bucket="month",
                                job_ids=[job_id], threshold=0.3, baseline_auc=0.7, baseline_auc_ci_low=0.68,
                                importance_ranks={"hour": 1})
    assert period.rows == 3000 and period.labelled and period.reference_rows == 1000
    assert period.metrics.predicted_clicks == pytest.approx(float(trained.offline[kind].sum()), rel=1e-9)
    assert period.metrics.actual_clicks == int(np.asarray(pq.read_table(trained.parquet, columns=["clicked"])
                                                          .column(0)).sum())
    assert period.metrics.auc is not None
    assert {d.feature for d in period.drift} == set(trained.features)


def test_an_unlabelled_file_scores_the_same_and_its_period_has_no_label_metrics(tmp_path, trained, place_run):
    store = FileStore(tmp_path / "data")
    done = place_run(store, champion="gbdt")
    unlabelled = tmp_path / "unlabelled.parquet"
    pq.write_table(pq.read_table(trained.parquet).drop_columns(["clicked"]), unlabelled)
    model = trained.loaded("gbdt")
    accumulator = PeriodAccumulator(model_reference(store, done, "gbdt", model, rows=500, seed=3))
    result = score_file(store, unlabelled, new_id(), model, accumulator=accumulator, chunk_rows=50_000)
    assert result.rows == 3000 and not result.labelled
    np.testing.assert_allclose(read_predictions(store.path(result.location))[1], trained.offline["gbdt"],
                               rtol=0, atol=1e-6)
    period = accumulator.finish(run_id=done.run_id, model_kind="gbdt", period="2026-W11", bucket="week",
                                job_ids=["j"], threshold=0.3, baseline_auc=None, baseline_auc_ci_low=None,
                                importance_ranks=None)
    assert not period.labelled and period.metrics.auc is None and period.metrics.actual_clicks is None


def test_a_missing_or_unusable_file_is_refused(tmp_path, trained):
    store = FileStore(tmp_path / "data")
    model = trained.loaded("gbdt")
    with pytest.raises(BatchInputError, match="missing") as missing:
        score_file(store, tmp_path / "nope.parquet", new_id(), model)
    assert missing.value.status_code == 404
    no_seq = tmp_path / "no_seq.parquet"
    pq.write_table(pq.read_table(trained.parquet).drop_columns(["seq"]), no_seq)
    with pytest.raises(BatchInputError, match="no 'seq' column"):
        score_file(store, no_seq, new_id(), model)


def test_the_reference_sample_is_seeded_in_file_order_and_cached(tmp_path, trained, place_run):
    columns = ["hour", "seq", "clicked"]
    a = sample_rows(trained.parquet, 400, seed=5, columns=columns, chunk_rows=333)
    b = sample_rows(trained.parquet, 400, seed=5, columns=columns, chunk_rows=3000)
    assert a.num_rows == 400 and a.equals(b)  # the chunk size does not change the sample
    full = pq.read_table(trained.parquet, columns=columns)
    index = np.sort(np.random.default_rng(5).choice(3000, 400, replace=False))
    assert a.equals(full.take(index))
    assert sample_rows(trained.parquet, 10_000, seed=5, columns=columns).num_rows == 3000  # a small file: all

    store = FileStore(tmp_path / "data")
    done = place_run(store)
    model = trained.loaded("lstm")
    built = model_reference(store, done, "lstm", model, rows=800, seed=1)
    cached = store.path(reference_path(done.run_id, "lstm"))
    assert cached.exists() and built.rows == 800
    mtime = cached.stat().st_mtime_ns
    again = model_reference(store, done, "lstm", model, rows=800, seed=1)
    assert cached.stat().st_mtime_ns == mtime  # read back, not rebuilt
    assert again.feature_columns == built.feature_columns == trained.features
    np.testing.assert_array_equal(Reference.load(cached).score_counts, built.score_counts)
