"""The scorer as a real process on the real broker: runs recorded from training.done, the champion
served over its internal API, a batch job scored, announced, monitored and not scored twice."""

from __future__ import annotations

import asyncio
import csv
import urllib.request

import httpx
import numpy as np

from ctrops_common.broker import free_port
from ctrops_common.bus import Bus
from ctrops_common.db import make_engine
from ctrops_common.dataset import parquet_path, period_path, predictions_path
from ctrops_common.events import (
    ExplanationDone,
    FeatureImportance,
    MonitoringPeriod,
    ScoringRequested,
    Topic,
    new_id,
)
from ctrops_common.settings import CommonSettings
from ctrops_common.storage import FileStore
from ctrops_common.testing import read_events, wait_for
from ctrops_scorer.catalogue import RunCatalogue


def predictions(path) -> np.ndarray:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))[1:]
    assert [int(r[0]) for r in rows] == list(range(len(rows)))
    return np.array([float(r[1]) for r in rows])


def scoring_request(done, job_id: str) -> ScoringRequested:
    return ScoringRequested(job_id=job_id, run_id=done.run_id, file_id=done.file_id, filename="march.csv",
                            parquet_location=parquet_path(done.file_id), rows=3000, labelled=True, period="2026-03")


async def test_batch_job_and_online_requests_on_the_real_broker(start_service, data_dir, trained, place_run):
    store = FileStore(data_dir)
    done = place_run(store, champion="lstm")
    api_port = free_port()
    scorer = start_service("scorer", {"CTROPS_SCORER_API_PORT": str(api_port), "CTROPS_SCORER_CHUNK_ROWS": "1000",
                                      "CTROPS_SCORER_REFERENCE_ROWS": "1000", "CTROPS_SCORER_PARK_TIMEOUT_S": "3",
                                      "CTROPS_SCORER_PARK_POLL_S": "0.5"})
    bus = Bus(CommonSettings(), "test")
    await bus.start()
    try:
        await bus.publish(Topic.TRAINING_DONE, done, correlation_id=done.run_id)
        await bus.publish(Topic.EXPLANATION_DONE, ExplanationDone(
            run_id=done.run_id, location="x", top_features=[
                FeatureImportance(feature=f, importance=0.1, p_value=0.01, ci=(0.0, 0.2), description=f)
                for f in ("hour", "age_group")]), correlation_id=done.run_id)
        # Topics are read independently: the ranks are in the scorer's catalogue before the job is sent.
        catalogue = RunCatalogue(make_engine(f"sqlite:///{data_dir / 'db' / 'scorer.sqlite3'}"))
        await asyncio.to_thread(wait_for, lambda: catalogue.resolve(done.run_id),
                                lambda entry: entry is not None and entry.importance == ["hour", "age_group"])
        job_id = new_id()
        await bus.publish(Topic.SCORING_REQUESTED, scoring_request(done, job_id), correlation_id=job_id)
        [announced] = await read_events(Topic.SCORING_DONE, predicate=lambda e: e.payload.job_id == job_id,
                                        timeout_s=90)
        progress = await read_events(Topic.SCORING_PROGRESS, count=3, predicate=lambda e: e.payload.job_id == job_id)
        [monitored] = await read_events(Topic.MONITORING_PERIOD, predicate=lambda e: e.payload.run_id == done.run_id)

        # The same job again (a redelivery after a crash before the commit): announced, not scored again.
        csv_path = data_dir / predictions_path(job_id)
        mtime = csv_path.stat().st_mtime_ns
        await bus.publish(Topic.SCORING_REQUESTED, scoring_request(done, job_id), correlation_id=job_id)
        twice = await read_events(Topic.SCORING_DONE, count=2, predicate=lambda e: e.payload.job_id == job_id,
                                  timeout_s=60)

        # A run the scorer never heard of: parked, then failed when the wait is over.
        unknown = scoring_request(done, new_id()).model_copy(update={"run_id": new_id()})
        await bus.publish(Topic.SCORING_REQUESTED, unknown, correlation_id=unknown.job_id)
        [failed] = await read_events(Topic.SCORING_FAILED, predicate=lambda e: e.payload.job_id == unknown.job_id,
                                     timeout_s=60)
    finally:
        await bus.stop()

    result = announced.payload
    assert announced.producer == "scorer" and announced.correlation_id == job_id, scorer.log()[-3000:]
    assert (result.run_id, result.model_kind, result.rows) == (done.run_id, "lstm", 3000)
    assert result.predictions_location == predictions_path(job_id)
    np.testing.assert_allclose(predictions(csv_path), trained.offline["lstm"], rtol=0, atol=1e-6)
    assert [e.payload.rows_done for e in progress] == [1000, 2000, 3000]
    assert {e.payload.rows_total for e in progress} == {3000}

    period = monitored.payload
    assert result.period_id == period.period_id == f"{done.run_id}:lstm:2026-03"
    assert period.location == period_path(done.run_id, "lstm", "2026-03") and period.job_ids == [job_id]
    stored = MonitoringPeriod.model_validate(store.read_json(period.location))
    assert stored == period and period.rows == 3000 and period.labelled and period.reference_rows == 1000
    assert period.baseline_auc == 0.7 and period.baseline_auc_ci_low == 0.68
    ranks = {d.feature: d.importance_rank for d in period.drift}
    assert ranks["hour"] == 1 and ranks["age_group"] == 2 and ranks["l_feat_1"] is None
    assert store.exists(f"monitoring/reference/{done.run_id}/lstm.npz")

    assert twice[1].payload == result and csv_path.stat().st_mtime_ns == mtime
    assert failed.payload.status_code == 404 and "is not a completed training run" in failed.payload.reason
    assert "waited" in failed.payload.reason and f"job {unknown.job_id} waits for run" in scorer.log()

    # Online: the champion (pre-loaded) over the internal API, equal to the batch and offline numbers.
    with open(trained.csv, newline="") as fh:
        rows = [{k: v or None for k, v in row.items()} for _, row in zip(range(200), csv.DictReader(fh))]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}") as client:
        assert (await client.get("/healthz")).status_code == 200
        response = await client.post("/predict/champion", json={"rows": rows})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["runId"], body["model"], body["rows"]) == (done.run_id, "lstm", 200)
    np.testing.assert_allclose([p["probability"] for p in body["predictions"]], trained.offline["lstm"][:200],
                               rtol=0, atol=1e-6)

    # The serving p95 reaches the heartbeat, and the series reach /metrics.
    beats = await read_events(Topic.SERVICE_HEARTBEAT, timeout_s=30, predicate=lambda e: e.payload.service ==
                              "scorer" and e.payload.latency_p95_ms is not None)
    assert beats[0].payload.latency_p95_ms > 0
    metrics = wait_for(lambda: urllib.request.urlopen(f"http://127.0.0.1:{scorer.port}/metrics").read().decode(),
                       lambda text: 'ctrops_prediction_rows_total{mode="batch",model="lstm"} 3000.0' in text)
    assert 'ctrops_prediction_latency_seconds_count{model="lstm"} 1.0' in metrics
    assert 'ctrops_prediction_rows_total{mode="online",model="lstm"} 200.0' in metrics
    assert "champion: the lstm model of run " + done.run_id + " is loaded" in scorer.log()


async def test_promotion_reloads_the_champion_and_a_restart_on_an_empty_broker_remembers_it(
        start_service, platform_env, data_dir, place_run, monkeypatch):
    store = FileStore(data_dir)
    first, second = place_run(store, champion="lstm"), place_run(store, champion="gbdt")
    not_promoted = place_run(store, champion="lstm", promoted=False)
    api_port = free_port()
    env = {"CTROPS_SCORER_API_PORT": str(api_port)}
    scorer = start_service("scorer", env)
    bus = Bus(CommonSettings(), "test")
    await bus.start()
    try:
        for done in (first, second, not_promoted):
            await bus.publish(Topic.TRAINING_DONE, done, correlation_id=done.run_id)
            loaded = f"champion: the {done.champion} model of run {done.run_id} is loaded"
            if done.promoted:
                wait_for(scorer.log, lambda log, loaded=loaded: loaded in log)
    finally:
        await bus.stop()
    row = {"rows": [{"seq": "4,5"}]}
    # The run that was not promoted leaves no line in the log to wait for: its event is handled once
    # "latest" serves it.
    latest = wait_for(lambda: httpx.post(f"http://127.0.0.1:{api_port}/predict/latest", json=row).json(),
                      lambda body: body.get("runId") == not_promoted.run_id)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}") as client:
        champion = (await client.post("/predict/champion", json=row)).json()
    assert (champion["runId"], champion["model"]) == (second.run_id, "gbdt")
    assert latest["model"] == "lstm"
    assert f"champion: the lstm model of run {not_promoted.run_id}" not in scorer.log()  # loaded on demand only

    # Restarted: the training.done events are committed, nothing is read again; the catalogue remembers,
    # and the champion is loaded and served before the consumer has even joined its group.
    scorer.stop()
    restarted = start_service("scorer", env, wait=False)
    wait_for(restarted.log, lambda log: f"champion: the gbdt model of run {second.run_id} is loaded" in log)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}") as client:
        again = (await client.post("/predict/champion", json=row)).json()
    # The same answer; the probability to 1e-12, not bit for bit: either process may have answered on LightGBM's
    # predictor or on the compiled forest (checked equal to 1e-9 in log-odds) by then.
    assert {**again, "seconds": 0, "predictions": None} == {**champion, "seconds": 0, "predictions": None}
    assert [p["row"] for p in again["predictions"]] == [p["row"] for p in champion["predictions"]]
    np.testing.assert_allclose([p["probability"] for p in again["predictions"]],
                               [p["probability"] for p in champion["predictions"]], rtol=0, atol=1e-12)
    restarted.kill9()  # still joining its group (the old member's session must lapse first): no orderly stop


async def test_a_file_with_a_date_column_feeds_one_period_per_month(start_service, data_dir, trained, place_run):
    from datetime import date, timedelta

    import pyarrow as pa
    import pyarrow.parquet as pq

    store = FileStore(data_dir)
    done = place_run(store, champion="gbdt")
    days = [date(2026, 2, 1) + timedelta(days=(i * 37) % 120) for i in range(3000)]  # February to May, mixed
    file_id = new_id()
    dated = store.path(parquet_path(file_id))
    dated.parent.mkdir(parents=True)
    pq.write_table(pq.read_table(trained.parquet).append_column("date", pa.array(days, type=pa.date32())), dated)
    months = ["2026-02", "2026-03", "2026-04", "2026-05"]
    scorer = start_service("scorer", {"CTROPS_SCORER_API_PORT": str(free_port()), "CTROPS_SCORER_CHUNK_ROWS": "1000",
                                      "CTROPS_SCORER_REFERENCE_ROWS": "1000", "CTROPS_SCORER_MAX_PERIODS": "100"})

    def request(period: str | None = None, bucket: str = "month") -> ScoringRequested:
        return ScoringRequested(job_id=new_id(), run_id=done.run_id, file_id=file_id, filename="feb-may.csv",
                                parquet_location=parquet_path(file_id), rows=3000, labelled=True, period=period,
                                bucket=bucket)

    by_date, explicit, daily = request(), request(period="2026-07"), request(bucket="day")
    bus = Bus(CommonSettings(), "test")
    await bus.start()
    try:
        # The jobs reach the scorer before the run's training.done (topics are read in no global order, and
        # the gateway accepts a job as soon as it has read the run): parked, then scored once it is recorded.
        for job in (by_date, explicit, daily):
            await bus.publish(Topic.SCORING_REQUESTED, job, correlation_id=job.job_id)
        await asyncio.to_thread(wait_for, scorer.log, lambda log: all(
            f"job {job.job_id} waits for run {done.run_id}" in log for job in (by_date, explicit, daily)))
        await bus.publish(Topic.TRAINING_DONE, done, correlation_id=done.run_id)
        try:
            [split] = await read_events(Topic.SCORING_DONE, predicate=lambda e: e.payload.job_id == by_date.job_id,
                                        timeout_s=90)
        except TimeoutError:
            raise AssertionError(scorer.log()[-4000:]) from None
        [one] = await read_events(Topic.SCORING_DONE, predicate=lambda e: e.payload.job_id == explicit.job_id,
                                  timeout_s=60)
        [refused] = await read_events(Topic.SCORING_FAILED, predicate=lambda e: e.payload.job_id == daily.job_id,
                                      timeout_s=60)
        periods = await read_events(Topic.MONITORING_PERIOD, count=5, timeout_s=30,
                                    predicate=lambda e: e.payload.run_id == done.run_id)
    finally:
        await bus.stop()

    ids = [f"{done.run_id}:gbdt:{m}" for m in months]
    assert split.payload.period_ids == ids and split.payload.period_id == ids[0] and split.payload.rows == 3000
    month_of = [d.strftime("%Y-%m") for d in days]
    fed = {p.payload.period: p.payload for p in periods if by_date.job_id in p.payload.job_ids}
    assert sorted(fed) == months
    for month in months:
        period = fed[month]
        assert period.rows == month_of.count(month) and period.bucket == "month" and period.labelled
        assert MonitoringPeriod.model_validate(store.read_json(period_path(done.run_id, "gbdt", month))) == period
    # An explicit period wins over the dates: the whole file is one period.
    assert one.payload.period_ids == [f"{done.run_id}:gbdt:2026-07"] and one.payload.period_id.endswith("2026-07")
    [july] = [p.payload for p in periods if p.payload.period == "2026-07"]
    assert july.rows == 3000 and july.job_ids == [explicit.job_id]
    # By day the dates span 120 periods: more than allowed, refused before scoring.
    assert refused.payload.status_code == 422 and "span 120 days" in refused.payload.reason
    assert not store.exists(predictions_path(daily.job_id))
