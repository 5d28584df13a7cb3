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
    result = score_file(store, trained.parquet, job_id, model, accumulator=accumulator, chunk_rows=700, threads=2,
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


def _with_dates(trained, path, days: list) -> None:
    import pyarrow as pa

    table = pq.read_table(trained.parquet)
    pq.write_table(table.append_column("date", pa.array(days, type=pa.date32())), path)


def test_a_date_column_splits_the_batch_into_periods_by_bucket(tmp_path, trained, place_run):
    from datetime import date, timedelta

    from ctrops_scorer.batch import DateSplit, period_sample_rows, split_by_date

    # Rows in no order: 3000 rows over February to May 2026 (a day per row, cycling).
    days = [date(2026, 2, 1) + timedelta(days=(i * 37) % 120) for i in range(3000)]
    dated = tmp_path / "dated.parquet"
    _with_dates(trained, dated, days)
    months = [d.strftime("%Y-%m") for d in days]

    split = split_by_date(dated, "month")
    assert isinstance(split, DateSplit) and split.labels == ["2026-02", "2026-03", "2026-04", "2026-05"]
    assert split.rows == [months.count(m) for m in split.labels] and sum(split.rows) == 3000
    assert [split.labels[k] for k in split.row_period[:5]] == months[:5]
    weeks = split_by_date(dated, "week")
    assert weeks.labels[0] == "2026-W05" and len(weeks.labels) == len({d.isocalendar()[:2] for d in days})
    assert len(split_by_date(dated, "day").labels) == 120
    assert split_by_date(trained.parquet, "month") is None  # no date column: the request's period
    with pytest.raises(BatchInputError, match="span 120 days, more than the 100 periods") as many:
        split_by_date(dated, "day", max_periods=100)
    assert many.value.status_code == 422
    assert [period_sample_rows(4, 20_000), period_sample_rows(100, 20_000), period_sample_rows(400, 20_000)] == \
        [5000, 2000, 500]
    assert period_sample_rows(400, 1000) == 1000 and period_sample_rows(400, 7) == 7  # small periods keep all rows

    store = FileStore(tmp_path / "data")
    done = place_run(store, champion="gbdt")
    model = trained.loaded("gbdt")
    reference = model_reference(store, done, "gbdt", model, rows=1000, seed=3)
    accumulators = split.accumulators(reference)
    result = score_file(store, dated, new_id(), model, chunk_rows=700, periods=(split, accumulators))
    assert result.rows == 3000
    rows, p = read_predictions(store.path(result.location))
    np.testing.assert_allclose(p, trained.offline["gbdt"], rtol=0, atol=1e-6)  # the date is no feature
    clicked = np.asarray(pq.read_table(trained.parquet, columns=["clicked"]).column(0))
    for label, accumulator in zip(split.labels, accumulators):
        mine = np.array([m == label for m in months])
        period = accumulator.finish(run_id=done.run_id, model_kind="gbdt", period=label, bucket="month",
                                    job_ids=["j"], threshold=0.3, baseline_auc=0.7, baseline_auc_ci_low=0.68,
                                    importance_ranks=None)
        assert period.rows == int(mine.sum()) and period.period_id == f"{done.run_id}:gbdt:{label}"
        assert period.metrics.predicted_clicks == pytest.approx(float(trained.offline["gbdt"][mine].sum()), rel=1e-9)
        assert period.metrics.actual_clicks == int(clicked[mine].sum())
        assert period.metrics.auc is not None
        # The same period as a file of its own rows: the same period, however the chunks fell.
        own = tmp_path / f"{label}.parquet"
        pq.write_table(pq.read_table(trained.parquet).filter(mine), own)
        alone = PeriodAccumulator(reference, sample_rows=period_sample_rows(4, int(mine.sum())))
        score_file(store, own, new_id(), model, accumulator=alone, chunk_rows=50_000)
        assert alone.finish(run_id=done.run_id, model_kind="gbdt", period=label, bucket="month", job_ids=["j"],
                            threshold=0.3, baseline_auc=0.7, baseline_auc_ci_low=0.68,
                            importance_ranks=None) == period


def test_rows_without_a_date_are_refused(tmp_path, trained):
    from datetime import date

    from ctrops_scorer.batch import split_by_date

    holes = tmp_path / "holes.parquet"
    _with_dates(trained, holes, [date(2026, 3, 1) if i % 10 else None for i in range(3000)])
    with pytest.raises(BatchInputError, match="300 rows of the file have no date"):
        split_by_date(holes, "month")
