"""A real gateway and ingest on their own embedded broker, which is killed (-9) and started again
on the same port, empty: while it is down every route that needs it answers 503 with Retry-After
at once (never 500, never a hang) and /api/health names the broker; once it is back the
topics are re-created, the consumers re-join and an upload is checked again."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from ctrops_common.broker import EmbeddedBroker, free_port
from ctrops_common.datagen import generate
from ctrops_common.events import new_id
from ctrops_common.testing import wait_for


def _health(client: httpx.Client, predicate, timeout_s: float) -> dict:
    return wait_for(lambda: client.get("/api/health").json(), predicate, timeout_s)


def _assert_503(response: httpx.Response, took_s: float) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) > 0
    assert "broker" in response.json()["detail"]
    assert took_s < 5, f"answered after {took_s:.1f} s"


def test_routes_answer_503_while_the_broker_is_down_and_work_again_after(
    start_service, platform_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    port = free_port()
    monkeypatch.setenv("CTROPS_KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{port}")  # inherited by the services
    broker = EmbeddedBroker(port, log_file=tmp_path / "broker.log").start()
    csv = tmp_path / "ads.csv"
    generate(csv, 3000, seed=7)
    data = csv.read_bytes()
    try:
        start_service("ingest")
        gateway = start_service("gateway")
        with httpx.Client(base_url=f"http://127.0.0.1:{gateway.port}", timeout=60) as client:
            _health(client, lambda b: b["broker"]["consuming"], 30)
            uploaded = client.post("/api/upload", files={"file": ("ads.csv", data, "text/csv")})
            assert uploaded.status_code == 200, uploaded.text
            file_id = uploaded.json()["file_id"]
            run = client.post("/api/train", json={"file_id": file_id, "config": {"epochs": 1}})
            assert run.status_code == 200, run.text  # no trainer: it stays "training"
            run_id = run.json()["run_id"]

            broker.process.kill()
            broker.process.wait()
            body = _health(client, lambda b: "broker" in b["down"] and not b["broker"]["consuming"], 10)
            assert body["status"] == "degraded" and body["broker"]["reachable"] is False
            assert client.get("/readyz").status_code == 503

            for method, path, kwargs in [
                ("POST", "/api/train", {"json": {"file_id": file_id, "config": {"epochs": 1}}}),
                ("POST", "/api/upload", {"files": {"file": ("ads.csv", data, "text/csv")}}),
                ("POST", f"/api/train/{run_id}/cancel", {}),
            ]:
                started = time.monotonic()
                response = client.request(method, path, **kwargs)
                _assert_503(response, time.monotonic() - started)
            assert client.get(f"/api/train/status/{run_id}").status_code == 200  # reads need no broker
            assert client.post("/api/train", json={"file_id": new_id(), "config": {}}).status_code == 404

            broker = EmbeddedBroker(port, log_file=tmp_path / "broker.log").start()
            back = time.monotonic()
            _health(client, lambda b: b["broker"]["reachable"] and b["broker"]["consuming"], 30)
            while True:  # ingest re-joined its group on the re-created topics and checks files again
                again = client.post("/api/upload", files={"file": ("ads.csv", data, "text/csv")})
                if again.status_code == 200:
                    break
                assert again.status_code in (503, 504), again.text
                assert time.monotonic() - back < 60, again.text
                time.sleep(1)
            assert time.monotonic() - back < 60
            assert client.get("/api/health").json()["broker"]["restarts_seen"] >= 1
    finally:
        broker.stop()


def test_replay_requests_again_every_run_whose_chain_did_not_end():
    from ctrops_common.events import Topic
    from ctrops_gateway.replay import unfinished

    seen = {
        Topic.TRAINING_DONE: {"explained", "reported", "trained", "report_failed"},
        Topic.TRAINING_FAILED: {"failed"},
        Topic.EXPLANATION_DONE: {"explained", "reported", "report_failed"},
        Topic.EXPLANATION_FAILED: {"unexplainable"},
        Topic.REPORT_READY: {"reported"},
        Topic.REPORT_FAILED: {"report_failed"},
    }
    seen[Topic.TRAINING_DONE].add("unexplainable")
    runs = ["training", "failed", "trained", "explained", "reported", "unexplainable", "report_failed"]
    # still training; trained but never explained; explained but never reported
    assert unfinished(runs, seen) == ["training", "trained", "explained"]


def test_replay_requests_again_every_scoring_job_without_an_answer(tmp_path: Path):
    from datetime import datetime, timedelta, timezone
    from types import SimpleNamespace

    from ctrops_common.db import make_engine
    from ctrops_common.events import Event, ScoringDone, ScoringFailed, ScoringRequested, Topic
    from ctrops_gateway.replay import open_jobs
    from ctrops_gateway.views import ReadModel

    views = ReadModel(make_engine(f"sqlite:///{tmp_path / 'gateway.sqlite3'}"))
    run_id = new_id()

    def requested(job_id: str, **kwargs) -> Event:
        return Event(type=Topic.SCORING_REQUESTED, correlation_id=job_id, **kwargs, payload=ScoringRequested(
            job_id=job_id, run_id=run_id, file_id=new_id(), filename="m.csv", parquet_location="files/x/data.parquet",
            rows=10, labelled=True))

    queued, scored, failed, old, twice = (new_id() for _ in range(5))
    for job_id in (queued, scored, failed, twice):
        views.record(requested(job_id))
    views.record(requested(twice))  # requested again already (an earlier replay): one job, once
    views.record(requested(old, time=datetime.now(timezone.utc) - timedelta(days=2)))  # past the lookback
    views.record(Event(type=Topic.SCORING_DONE, correlation_id=scored, payload=ScoringDone(
        job_id=scored, run_id=run_id, model_kind="gbdt", rows=10, predictions_location="x", seconds=0.1)))
    views.record(Event(type=Topic.SCORING_FAILED, correlation_id=failed,
                       payload=ScoringFailed(job_id=failed, reason="no model", status_code=404)))

    jobs = open_jobs(SimpleNamespace(views=views))
    assert [j.job_id for j in jobs] == [queued, twice]
    assert all(isinstance(j, ScoringRequested) and j.run_id == run_id for j in jobs)


async def test_a_gateway_started_on_a_broker_that_lost_its_log_replays_what_it_recorded_as_open(
        start_service, platform_env, data_dir: Path):
    """The topics of this test's prefix are new, as on a memory-only broker started again: the runs and
    jobs the gateway's database holds as open are requested again once; a restart beside the same
    broker (its log kept) requests nothing again."""
    import asyncio

    from ctrops_common.db import make_engine
    from ctrops_common.events import Event, ScoringRequested, Topic, TrainingConfig, TrainingRequested
    from ctrops_common.testing import read_events
    from ctrops_gateway.views import ReadModel

    run_id, job_id, file_id = new_id(), new_id(), new_id()
    (data_dir / "db").mkdir(exist_ok=True)
    views = ReadModel(make_engine(f"sqlite:///{data_dir / 'db' / 'gateway.sqlite3'}"))
    views.record(Event(type=Topic.TRAINING_REQUESTED, correlation_id=run_id, payload=TrainingRequested(
        run_id=run_id, file_id=file_id, parquet_location=f"files/{file_id}/data.parquet", config=TrainingConfig())))
    views.record(Event(type=Topic.SCORING_REQUESTED, correlation_id=job_id, payload=ScoringRequested(
        job_id=job_id, run_id=run_id, file_id=file_id, filename="m.csv", parquet_location="files/x/data.parquet",
        rows=10, labelled=False)))
    views.engine.dispose()

    gateway = start_service("gateway")
    [run] = await read_events(Topic.TRAINING_REQUESTED, predicate=lambda e: e.correlation_id == run_id)
    [job] = await read_events(Topic.SCORING_REQUESTED, predicate=lambda e: e.correlation_id == job_id)
    assert run.payload.run_id == run_id and run.producer == "gateway" and job.payload.job_id == job_id
    assert "it lost its log; replaying" in gateway.log()

    gateway.stop()
    again = start_service("gateway")
    with httpx.Client(base_url=f"http://127.0.0.1:{again.port}", timeout=30) as client:
        _health(client, lambda b: b["broker"]["consuming"], 30)
    await asyncio.sleep(3)  # the start-up look happens before the consumer joins; give it time to act anyway
    with pytest.raises(TimeoutError):  # still the one replayed request, no second
        await read_events(Topic.TRAINING_REQUESTED, count=2, timeout_s=3, predicate=lambda e: e.correlation_id == run_id)
    assert "lost its log" not in again.log(), again.log()[-2000:]
