"""The internal prediction API in-process (no broker): JSON rows scored exactly as offline, the
run references, and every refusal with its status and named problems."""

from __future__ import annotations

import csv
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import httpx
import numpy as np
import pytest
from prometheus_client import REGISTRY

from ctrops_common.db import make_engine
from ctrops_common.storage import FileStore
from ctrops_scorer.api import create_api
from ctrops_scorer.catalogue import RunCatalogue
from ctrops_scorer.metrics import ServingLatency
from ctrops_scorer.models import ModelCache, choose_model
from ctrops_scorer.online import OnlineScorer

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)


@pytest.fixture
def service(tmp_path):
    store = FileStore(tmp_path / "data")
    catalogue = RunCatalogue(make_engine(f"sqlite:///{tmp_path / 'scorer.sqlite3'}"))
    executor = ThreadPoolExecutor(2)

    def make(load_wait_s: float = 30.0, max_rows: int = 1000) -> tuple[OnlineScorer, httpx.AsyncClient]:
        scorer = OnlineScorer(catalogue, ModelCache(store), executor, ServingLatency(), max_rows=max_rows,
                              load_wait_s=load_wait_s)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_api(scorer)), base_url="http://scorer")
        return scorer, client

    yield store, catalogue, make
    executor.shutdown()


def csv_rows(path) -> list[dict[str, str | None]]:
    """The CSV's cells as strings, as a client would send them (an empty cell: null)."""
    with open(path, newline="") as fh:
        return [{k: (v if v != "" else None) for k, v in row.items()} for row in csv.DictReader(fh)]


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize("kind", ["lstm", "gbdt"])
async def test_json_rows_as_in_the_csv_score_exactly_as_offline(service, trained, place_run, kind):
    store, catalogue, make = service
    done = place_run(store, champion=kind)
    catalogue.record_done(done, T0)
    scorer, client = make(max_rows=1000)
    rows = csv_rows(trained.csv)
    latency_before = sample("ctrops_prediction_latency_seconds_count", {"model": kind})
    rows_before = sample("ctrops_prediction_rows_total", {"model": kind, "mode": "online"})
    got = []
    async with client:
        for start in range(0, len(rows), 1000):  # 3 requests of 1,000 rows, the clicked column included
            response = await client.post(f"/predict/{done.run_id}", json={"rows": rows[start:start + 1000]})
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["runId"] == done.run_id and body["model"] == kind and body["rows"] == 1000
            assert body["modelLabel"] == {"lstm": "LSTM+MLP", "gbdt": "LightGBM"}[kind]
            assert [p["row"] for p in body["predictions"]] == list(range(1000))
            assert body["seconds"] > 0
            got += [p["probability"] for p in body["predictions"]]
    np.testing.assert_allclose(got, trained.offline[kind], rtol=0, atol=1e-6)
    assert sample("ctrops_prediction_latency_seconds_count", {"model": kind}) == latency_before + 3
    assert sample("ctrops_prediction_rows_total", {"model": kind, "mode": "online"}) == rows_before + len(rows)
    assert scorer.latency.heartbeat_extras()["latency_p95_ms"] > 0


async def test_seq_as_a_list_and_numbers_as_numbers_score_the_same(service, trained, place_run):
    store, catalogue, make = service
    done = place_run(store, champion="lstm")
    catalogue.record_done(done, T0)
    rows = csv_rows(trained.csv)[:50]
    typed = [{k: (None if v is None else [int(t) for t in v.split(",")] if k == "seq" else float(v))
              for k, v in row.items() if v is not None} for row in rows]  # missing cells absent
    _, client = make()
    async with client:
        as_text = (await client.post(f"/predict/{done.run_id}?model=gbdt", json={"rows": rows})).json()
        as_numbers = (await client.post(f"/predict/{done.run_id}?model=gbdt", json={"rows": typed})).json()
    assert as_text["model"] == "gbdt"
    assert as_text["predictions"] == as_numbers["predictions"]
    np.testing.assert_allclose([p["probability"] for p in as_text["predictions"]], trained.offline["gbdt"][:50],
                               rtol=0, atol=1e-6)


async def test_latest_and_champion_follow_completion_time_and_promotion(service, trained, place_run):
    store, catalogue, make = service
    scorer, client = make()
    async with client:
        for ref, what in (("latest", "no training run has completed yet"),
                          ("champion", "no completed training run has been promoted")):
            response = await client.post(f"/predict/{ref}", json={"rows": [{"seq": "1"}]})
            assert response.status_code == 404 and response.json()["detail"].startswith(what)

        old = place_run(store, champion="lstm")
        catalogue.record_done(old, T0)
        retrain = place_run(store, champion="gbdt", promoted=False)  # a retrain that was not better
        catalogue.record_done(retrain, T0 + timedelta(days=1))
        scorer.forget_runs()
        row = {"rows": [{"seq": "1,2"}]}
        latest = (await client.post("/predict/latest", json=row)).json()
        champion = (await client.post("/predict/champion", json=row)).json()
        assert (latest["runId"], latest["model"]) == (retrain.run_id, "gbdt")
        assert (champion["runId"], champion["model"]) == (old.run_id, "lstm")

        catalogue.record_done(retrain.model_copy(update={"promoted": True}), T0 + timedelta(days=2))  # re-report
        scorer.forget_runs()
        champion = (await client.post("/predict/champion", json=row)).json()
        assert champion["runId"] == retrain.run_id
        assert catalogue.resolve(retrain.run_id).finished_at == T0 + timedelta(days=1)  # the first time stands


async def test_refusals_name_what_to_fix(service, trained, place_run):
    store, catalogue, make = service
    done = place_run(store, champion="lstm", kinds=("lstm",))
    catalogue.record_done(done, T0)
    _, client = make(max_rows=1000)
    good = {"seq": "1,2"}
    async with client:
        cases = [
            (f"/predict/{'0' * 32}", {"rows": [good]}, 404, "run 00000000000000000000000000000000 is not"),
            ("/predict/nonsense", {"rows": [good]}, 404, "'nonsense' is not a run"),
            (f"/predict/{done.run_id}?model=gbdt", {"rows": [good]}, 404, f"run {done.run_id} has no LightGBM"),
            (f"/predict/{done.run_id}?model=xgb", {"rows": [good]}, 422, "model='xgb' is not a model choice"),
            (f"/predict/{done.run_id}", {"rows": [good] * 1001}, 413, "1001 rows in one request; at most 1000"),
            (f"/predict/{done.run_id}", {"row": [good]}, 422, "the body must be a JSON object with 'rows'"),
            (f"/predict/{done.run_id}", {"rows": [{"seq": "1", "hour": "noon"}]}, 422,
             "1 problem(s) in the request's values; the first: row 0, column 'hour': 'noon' is not a number"),
            (f"/predict/{done.run_id}", {"rows": [good, {"seq": "1", "colour": 1}]}, 422,
             "1 column(s) the model does not know: 'colour'"),
        ]
        for url, body, status, detail in cases:
            response = await client.post(url, json=body)
            assert response.status_code == status, (url, response.text)
            assert response.json()["detail"].startswith(detail), response.json()
            assert isinstance(response.json()["problems"], list)
        invalid = await client.post(f"/predict/{done.run_id}", content=b"{rows: [", headers={
            "content-type": "application/json"})
        assert invalid.status_code == 422 and invalid.json()["detail"].startswith("the body is not valid JSON")
        problems = (await client.post(f"/predict/{done.run_id}", json={"rows": [{"seq": "1", "colour": 1}]})
                    ).json()["problems"]
        assert problems == [{"row": 0, "column": "colour", "message": "the model does not know the column 'colour'"}]
        assert (await client.get("/healthz")).status_code == 200


async def test_a_model_still_loading_answers_503_with_retry_after(service, trained, place_run):
    store, catalogue, make = service
    done = place_run(store, champion="lstm")
    catalogue.record_done(done, T0)
    scorer, client = make(load_wait_s=0)
    async with client:
        first = await client.post(f"/predict/{done.run_id}", json={"rows": [{"seq": "3"}]})
        assert first.status_code == 503, first.text
        assert first.headers["retry-after"] == "5" and "still loading" in first.json()["detail"]
        await scorer.cache.load(choose_model(done))  # the load the first request started, finished
        second = await client.post(f"/predict/{done.run_id}", json={"rows": [{"seq": "3"}]})
    assert second.status_code == 200
    assert json.loads(second.content)["predictions"][0]["row"] == 0
