"""Inference through the gateway.

Online: POST /api/predict/{run_id} proxied to a fake scorer (a tiny local HTTP server that
answers like the scorer's internal API): 200/404/422/503 pass through with their bodies and
Retry-After, 503 when nothing listens; no broker needed, so on the in-memory bus (marker
inmemory). Batch: POST /api/predict/{run_id}/batch through a real ingest process (scoring
uploads) to a published scoring.requested, on the real broker; the job's routes from the
scorer's published scoring.* events, on the in-memory bus.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from ctrops_common.broker import free_port
from ctrops_common.datagen import generate
from ctrops_common.dataset import predictions_path
from ctrops_common.events import (
    ModelMetrics,
    ModelResult,
    ScoringDone,
    ScoringFailed,
    ScoringProgress,
    ScoringRequested,
    Topic,
    TrainingConfig,
    TrainingDone,
    TrainingRequested,
    new_id,
)
from ctrops_common.testing import publish_events as publish
from ctrops_common.testing import read_events, wait_for
from ctrops_gateway.routes.predict import period_bucket, scoring_options

LOADING_RUN = "f" * 32  # the fake scorer answers 503 + Retry-After for it (model still loading)
MISSING_RUN = "0" * 32  # ... and 404


class FakeScorer(BaseHTTPRequestHandler):
    """Answers POST /predict/{ref} as the scorer's internal API does, and records each request."""

    seen: list[dict] = []

    def log_message(self, *_args) -> None:  # quiet
        pass

    def _answer(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        url = urlsplit(self.path)
        raw = self.rfile.read(int(self.headers.get("content-length", "0")))
        ref = url.path.removeprefix("/predict/")
        FakeScorer.seen.append({"path": url.path, "query": parse_qs(url.query), "body": raw,
                                "content_type": self.headers.get("content-type")})
        if ref == LOADING_RUN:
            return self._answer(503, {"detail": "The model is still loading.", "problems": []}, {"Retry-After": "7"})
        if ref == MISSING_RUN:
            return self._answer(404, {"detail": f"unknown run {ref}", "problems": []})
        rows = json.loads(raw)["rows"]
        bad = [{"row": i, "column": c, "message": "unknown column"} for i, r in enumerate(rows) for c in r
               if c == "bogus"]
        if bad:
            return self._answer(422, {"detail": "1 row has a column the model does not know", "problems": bad})
        kind = parse_qs(url.query).get("model", ["gbdt"])[0]
        self._answer(200, {"runId": "a" * 32 if ref in ("latest", "champion") else ref,
                           "model": "lstm" if kind == "lstm" else "gbdt",
                           "modelLabel": "LSTM+MLP" if kind == "lstm" else "LightGBM", "rows": len(rows),
                           "predictions": [{"row": i, "probability": round(0.01 * (i + 1), 6)}
                                           for i in range(len(rows))], "seconds": 0.002})


@pytest.fixture
def fake_scorer(monkeypatch) -> Iterator[str]:
    """The fake scorer's URL as CTROPS_SCORER_URL: ask for it before the gateway (a real-broker test would
    have to ask for it after platform_env, which sets that variable too)."""
    FakeScorer.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeScorer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("CTROPS_SCORER_URL", url)
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def proxied(fake_scorer, memory_gateway):
    """The gateway pointed at the fake scorer (the scorer's URL is set before the app starts)."""
    return memory_gateway.client


ROWS = [{"hour": 14, "age_group": 5, "seq": "12,57,9", "l_feat_1": 0.3}, {"hour": 3, "seq": [4, 5], "gender": None}]


@pytest.mark.inmemory
def test_online_prediction_passes_the_scorers_answer_through(proxied):
    run_id = new_id()
    body = json.dumps({"rows": ROWS}).encode()
    response = proxied.post(f"/api/predict/{run_id}?model=lstm", content=body,
                            headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["runId"] == data["run_id"] == run_id  # the contract's spelling beside the scorer's
    assert (data["model"], data["modelLabel"], data["rows"]) == ("lstm", "LSTM+MLP", 2)
    assert data["predictions"] == [{"row": 0, "probability": 0.01}, {"row": 1, "probability": 0.02}]
    sent = FakeScorer.seen[-1]
    assert sent["path"] == f"/predict/{run_id}" and sent["query"] == {"model": ["lstm"]}
    assert sent["body"] == body and sent["content_type"] == "application/json"  # byte for byte

    champion = proxied.post("/api/predict/champion", json={"rows": ROWS[:1]})
    assert champion.status_code == 200 and champion.json()["model"] == "gbdt"
    assert FakeScorer.seen[-1]["query"] == {}  # no model asked: the scorer's default (the champion)


@pytest.mark.inmemory
def test_online_errors_pass_through_with_their_problems_and_retry_after(proxied):
    bad = proxied.post(f"/api/predict/{new_id()}", json={"rows": [{"hour": 1, "bogus": 2}]})
    assert bad.status_code == 422
    assert bad.json() == {"detail": "1 row has a column the model does not know",
                          "problems": [{"row": 0, "column": "bogus", "message": "unknown column"}]}
    missing = proxied.post(f"/api/predict/{MISSING_RUN}", json={"rows": ROWS})
    assert missing.status_code == 404 and missing.json()["detail"] == f"unknown run {MISSING_RUN}"
    loading = proxied.post(f"/api/predict/{LOADING_RUN}", json={"rows": ROWS})
    assert loading.status_code == 503 and loading.headers["retry-after"] == "7"
    assert loading.json()["detail"] == "The model is still loading."


@pytest.mark.inmemory
def test_online_requests_the_gateway_refuses_itself(proxied, monkeypatch):
    calls = len(FakeScorer.seen)
    for ref in ("demo-run", "mock-run-1712345678", "run-abc12345"):
        response = proxied.post(f"/api/predict/{ref}", json={"rows": ROWS})
        assert response.status_code == 404 and "32-hex run id" in response.json()["detail"], ref
    wrong_model = proxied.post("/api/predict/latest?model=xgboost", json={"rows": ROWS})
    assert wrong_model.status_code == 422 and "model" in wrong_model.json()["detail"]
    not_json = proxied.post("/api/predict/latest", content=b"hour,seq\n1,2\n", headers={"content-type": "text/csv"})
    assert not_json.status_code == 415 and "/batch" in not_json.json()["detail"]
    empty = proxied.post("/api/predict/latest", content=b"", headers={"content-type": "application/json"})
    assert empty.status_code == 422
    nan = proxied.post("/api/predict/latest", content=b'{"rows": [{"hour": NaN}]}',
                       headers={"content-type": "application/json"})
    assert nan.status_code == 422 and "rows.0.hour" in nan.json()["detail"]
    assert len(FakeScorer.seen) == calls  # none of these reached the scorer


@pytest.mark.inmemory
def test_online_body_limit_is_the_predict_limit_not_the_json_limit(fake_scorer, monkeypatch, memory_gateway_factory):
    """1,000 rows (~400 KB) pass although CTROPS_MAX_JSON_BODY_KB is 256; above CTROPS_MAX_PREDICT_BODY_MB: 413."""
    monkeypatch.setenv("CTROPS_MAX_PREDICT_BODY_MB", "1")
    rows = [{"hour": i % 24, "seq": ",".join(str(t) for t in range(40)), **{f"l_feat_{j}": 0.5 for j in range(1, 20)}}
            for i in range(1000)]
    body = json.dumps({"rows": rows}).encode()
    assert 256 * 1024 < len(body) < 1 << 20
    with memory_gateway_factory() as gateway:  # the settings read the environment set above
        client = gateway.client
        ok = client.post("/api/predict/latest", content=body, headers={"content-type": "application/json"})
        assert ok.status_code == 200, ok.text[:300]
        assert ok.json()["rows"] == 1000 and len(ok.json()["predictions"]) == 1000
        too_big = client.post("/api/predict/latest", content=body * 3, headers={"content-type": "application/json"})
        assert too_big.status_code == 413 and "CTROPS_MAX_PREDICT_BODY_MB" in too_big.json()["detail"]


@pytest.mark.inmemory
def test_scorer_down_is_503_with_retry_after(monkeypatch, memory_gateway_factory):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("CTROPS_SCORER_URL", dead)
    monkeypatch.setenv("CTROPS_SCORER_RETRY_AFTER_S", "9")
    with memory_gateway_factory() as gateway:
        client = gateway.client
        response = client.post("/api/predict/latest", json={"rows": ROWS})
        assert response.status_code == 503 and response.headers["retry-after"] == "9"
        body = response.json()
        assert body["unavailable"] == "scorer" and "unreachable" in body["detail"] and dead in body["detail"]


# -- batch scoring -----------------------------------------------------------------------------------------


def champion_run(run_id: str, *, models: tuple[str, ...] = ("lstm", "gbdt"), champion: str = "gbdt",
                 promoted: bool = True, replaces: str | None = None, accuracy: float = 0.93) -> TrainingDone:
    metrics = ModelMetrics(val_loss=0.09, val_accuracy=accuracy, auc=0.74, logloss=0.088, f1=0.2, threshold=0.05)
    results = [ModelResult(kind=k, label={"lstm": "LSTM+MLP", "gbdt": "LightGBM"}[k],
                           metrics=metrics.model_copy(update={"val_accuracy": accuracy - (0.01 if k != champion else 0)}),
                           model_location=f"runs/{run_id}/model/{k}", best_iteration=1, iterations_run=1,
                           duration_s=1.0) for k in models]
    return TrainingDone(run_id=run_id, file_id=new_id(), model_location=f"runs/{run_id}/model/{champion}",
                        metrics=metrics, best_epoch=1, epochs_run=1, duration_s=5.0, experiment_name="exp",
                        config=TrainingConfig(epochs=2, learning_rate=0.003), champion=champion, models=results,
                        promoted=promoted, replaces=replaces)


def without_clicked(source: Path) -> bytes:
    import pyarrow.csv as pacsv

    table = pacsv.read_csv(source, convert_options=pacsv.ConvertOptions(column_types={"seq": "string"}))
    out = source.with_suffix(".nolabel.csv")
    pacsv.write_csv(table.drop_columns(["clicked"]), out)
    return out.read_bytes()


def requested_events(job_id: str) -> list:
    return asyncio.run(read_events(Topic.SCORING_REQUESTED, 1, timeout_s=20,
                                   predicate=lambda e: e.payload.job_id == job_id))


def test_period_labels_and_options_are_checked():
    assert [period_bucket(p) for p in ("2026-03", "2026-W11", "2026-03-14")] == ["month", "week", "day"]
    for bad in ("2026-13", "2026-W54", "2026-02-30", "March", "2026/03", "2026-3"):
        with pytest.raises(ValueError):
            period_bucket(bad)
    assert scoring_options("2026-W11", None, None) == ("2026-W11", "week", "champion")
    assert scoring_options(None, None, "gbdt") == (None, "month", "gbdt")
    with pytest.raises(ValueError, match="is a month but bucket is 'day'"):
        scoring_options("2026-03", "day", None)


def test_a_csv_to_score_is_checked_by_ingest_and_becomes_a_scoring_job(start_service, gateway_client, data_dir,
                                                                       tmp_path):
    start_service("ingest")
    run_id = new_id()
    publish((Topic.TRAINING_DONE, champion_run(run_id), run_id))
    wait_for(lambda: gateway_client.get("/api/train/status/latest").status_code, lambda s: s == 200)
    source = tmp_path / "march.csv"
    generate(source, 300, seed=11)

    unlabelled = gateway_client.post("/api/predict/champion/batch?period=2026-03",
                                     files={"file": ("march.csv", without_clicked(source), "text/csv")})
    assert unlabelled.status_code == 202, unlabelled.text
    body = unlabelled.json()
    job_id = body["jobId"]
    assert body["job_id"] == job_id and body["status"] == "queued"
    assert (body["runId"], body["model"], body["rows"], body["labelled"]) == (run_id, "champion", 300, False)
    assert (body["period"], body["bucket"]) == ("2026-03", "month")
    assert body["statusUrl"] == f"/api/predict/jobs/{job_id}"
    assert body["downloadUrl"] == f"/api/predict/jobs/{job_id}/predictions.csv"
    [event] = requested_events(job_id)
    requested = event.payload
    assert isinstance(requested, ScoringRequested) and event.correlation_id == job_id
    assert (requested.run_id, requested.labelled, requested.rows, requested.period) == (run_id, False, 300, "2026-03")
    assert (data_dir / requested.parquet_location).is_file() and requested.file_id == body["fileId"]
    status = gateway_client.get(body["statusUrl"]).json()
    assert (status["status"], status["rowsDone"], status["rowsTotal"], status["runId"]) == ("queued", 0, 300, run_id)
    early = gateway_client.get(body["downloadUrl"])
    assert early.status_code == 409 and "still queued" in early.json()["detail"]

    # A labelled file, options as form fields, one model by kind.
    labelled = gateway_client.post(f"/api/predict/{run_id}/batch",
                                   files={"file": ("w11.csv", source.read_bytes(), "text/csv")},
                                   data={"period": "2026-W11", "model": "lstm"})
    assert labelled.status_code == 202, labelled.text
    accepted = labelled.json()
    assert (accepted["labelled"], accepted["period"], accepted["bucket"], accepted["model"]) == \
        (True, "2026-W11", "week", "lstm")
    [event] = requested_events(accepted["jobId"])
    assert (event.payload.labelled, event.payload.bucket, event.payload.model) == (True, "week", "lstm")

    # The contract's one route: a multipart file POSTed to /api/predict/{run_id} is the same batch job.
    contract = gateway_client.post(f"/api/predict/{run_id}?period=2026-04",
                                   files={"file": ("april.csv", source.read_bytes(), "text/csv")})
    assert contract.status_code == 202, contract.text
    same = contract.json()
    assert (same["runId"], same["labelled"], same["period"], same["rows"]) == (run_id, True, "2026-04", 300)
    [event] = requested_events(same["jobId"])
    assert isinstance(event.payload, ScoringRequested) and event.payload.period == "2026-04"


def test_bad_batches_are_refused_with_what_to_fix(start_service, gateway_client, tmp_path):
    start_service("ingest")
    run_id, lstm_only = new_id(), new_id()
    publish((Topic.TRAINING_DONE, champion_run(run_id), run_id),
            (Topic.TRAINING_DONE, champion_run(lstm_only, models=("lstm",), champion="lstm"), lstm_only))
    wait_for(lambda: gateway_client.get(f"/api/train/status/{lstm_only}").status_code, lambda s: s == 200)
    wait_for(lambda: gateway_client.get(f"/api/train/status/{run_id}").status_code, lambda s: s == 200)
    good = ("ok.csv", b"hour,seq\n1,\"1,2\"\n2,\"3\"\n", "text/csv")

    bad_label = gateway_client.post(f"/api/predict/{run_id}/batch",
                                    files={"file": ("bad.csv", b"hour,seq,clicked\n1,\"1,2\",7\n2,\"3\",0\n", "text/csv")})
    assert bad_label.status_code == 422, bad_label.text
    assert "cannot be scored" in bad_label.json()["detail"] and "not 0 or 1" in bad_label.json()["validation"]["errors"][0]
    no_seq = gateway_client.post(f"/api/predict/{run_id}/batch", files={"file": ("x.csv", b"hour,gender\n1,2\n", "text/csv")})
    assert no_seq.status_code == 400 and "missing: seq" in no_seq.json()["detail"]
    bad_period = gateway_client.post(f"/api/predict/{run_id}/batch?period=2026-13", files={"file": good})
    assert bad_period.status_code == 422 and "not a real month" in bad_period.json()["detail"]
    bad_form = gateway_client.post(f"/api/predict/{run_id}/batch", files={"file": good}, data={"bucket": "year"})
    assert bad_form.status_code == 422 and "bucket 'year'" in bad_form.json()["detail"]
    no_gbdt = gateway_client.post(f"/api/predict/{lstm_only}/batch?model=gbdt", files={"file": good})
    assert no_gbdt.status_code == 404 and "no gbdt model" in no_gbdt.json()["detail"]
    unknown = gateway_client.post(f"/api/predict/{new_id()}/batch", files={"file": good})
    assert unknown.status_code == 404 and "unknown run id" in unknown.json()["detail"]
    training = new_id()
    publish((Topic.TRAINING_REQUESTED, TrainingRequested(run_id=training, file_id=new_id(), parquet_location="x",
                                                         config=TrainingConfig()), training))
    wait_for(lambda: gateway_client.get(f"/api/train/status/{training}").status_code, lambda s: s == 200)
    running = gateway_client.post(f"/api/predict/{training}/batch", files={"file": good})
    assert running.status_code == 409 and "still training" in running.json()["detail"]


@pytest.mark.inmemory
def test_no_completed_run_is_404_for_both_aliases(memory_gateway):
    gateway_client = memory_gateway.client
    for ref in ("latest", "champion"):
        response = gateway_client.post(f"/api/predict/{ref}/batch", files={"file": ("a.csv", b"seq\n1\n", "text/csv")})
        assert response.status_code == 404 and "train a model first" in response.json()["detail"]


@pytest.mark.inmemory
def test_job_status_and_download_follow_the_scorers_events(memory_gateway, data_dir):
    gateway_client = memory_gateway.client
    job_id, failing, run_id = new_id(), new_id(), new_id()
    requested = ScoringRequested(job_id=job_id, run_id=run_id, model="champion", file_id=new_id(), filename="m.csv",
                                 parquet_location="files/x/data.parquet", rows=1000, labelled=True, period="2026-03")
    memory_gateway.publish(
        (Topic.SCORING_REQUESTED, requested, job_id),
        (Topic.SCORING_PROGRESS, ScoringProgress(job_id=job_id, rows_done=400, rows_total=1000), job_id))
    status = gateway_client.get(f"/api/predict/jobs/{job_id}").json()  # both handled: publish settles
    assert status.get("status") == "scoring" and status.get("runId") is not None
    assert (status["rowsDone"], status["rowsTotal"], status["progress"]) == (400, 1000, 0.4)
    assert (status["runId"], status["period"], status["labelled"]) == (run_id, "2026-03", True)
    assert gateway_client.get(f"/api/predict/jobs/{job_id}/predictions.csv").status_code == 409

    csv_path = data_dir / predictions_path(job_id)
    csv_path.parent.mkdir(parents=True)
    csv_path.write_text("row,probability\n0,0.013\n1,0.2\n")
    done = ScoringDone(job_id=job_id, run_id=run_id, model_kind="gbdt", rows=1000,
                       predictions_location=predictions_path(job_id), seconds=0.8,
                       period_id=f"{run_id}:gbdt:2026-03")
    # Out of order, as topics are consumed: a late progress must not undo the completion. The in-memory
    # bus keeps one global order, so the late progress is handled after the completion here, every time.
    memory_gateway.publish(
        (Topic.SCORING_DONE, done, job_id),
        (Topic.SCORING_PROGRESS, ScoringProgress(job_id=job_id, rows_done=700, rows_total=1000), job_id))
    assert len(memory_gateway.state.views.events(Topic.SCORING_PROGRESS, job_id)) == 2
    status = gateway_client.get(f"/api/predict/jobs/{job_id}").json()
    assert status["status"] == "completed" and status["rowsDone"] == status["rowsTotal"] == 1000
    assert (status["modelKind"], status["periodId"], status["progress"]) == ("gbdt", f"{run_id}:gbdt:2026-03", 1.0)
    assert status["periodIds"] == [f"{run_id}:gbdt:2026-03"]  # a ScoringDone from before period_ids
    assert status["downloadUrl"] == f"/api/predict/jobs/{job_id}/predictions.csv" and status["error"] is None
    download = gateway_client.get(status["downloadUrl"])
    assert download.status_code == 200 and download.headers["content-type"].startswith("text/csv")
    assert download.text == "row,probability\n0,0.013\n1,0.2\n"
    assert f"predictions_{job_id}.csv" in download.headers["content-disposition"]

    memory_gateway.publish((Topic.SCORING_FAILED, ScoringFailed(job_id=failing, reason="run has no gbdt model",
                                                                status_code=404), failing))
    failed = gateway_client.get(f"/api/predict/jobs/{failing}").json()
    assert failed.get("status") == "failed"
    assert failed["error"] == "run has no gbdt model" and failed["errorStatus"] == 404 and failed["downloadUrl"] is None
    refused = gateway_client.get(f"/api/predict/jobs/{failing}/predictions.csv")
    assert refused.status_code == 404 and "run has no gbdt model" in refused.json()["detail"]

    for unknown in (new_id(), "not-a-job"):
        assert gateway_client.get(f"/api/predict/jobs/{unknown}").status_code == 404
        assert gateway_client.get(f"/api/predict/jobs/{unknown}/predictions.csv").status_code == 404


def test_a_csv_with_a_date_column_is_a_job_whose_periods_come_from_its_dates(start_service, gateway_client):
    start_service("ingest")
    run_id = new_id()
    publish((Topic.TRAINING_DONE, champion_run(run_id), run_id))
    wait_for(lambda: gateway_client.get(f"/api/train/status/{run_id}").status_code, lambda s: s == 200)
    rows = "".join(f'{i % 24},"1,{i}",{i % 2},2026-0{2 + i % 4}-1{i % 9} 10:00\n' for i in range(40))
    dated = ("feb-may.csv", ("hour,seq,clicked,Event_Date\n" + rows).encode(), "text/csv")

    accepted = gateway_client.post(f"/api/predict/{run_id}/batch", files={"file": dated})
    assert accepted.status_code == 202, accepted.text
    body = accepted.json()
    assert (body["period"], body["bucket"], body["timeColumn"]) == (None, "month", "Event_Date")
    assert (body["firstDate"], body["lastDate"]) == ("2026-02-10", "2026-05-18")
    [event] = requested_events(body["jobId"])
    assert event.payload.period is None and event.payload.bucket == "month"

    # The scorer fed four months; the job lists them all, the first as periodId.
    job_id = body["jobId"]
    ids = [f"{run_id}:gbdt:2026-0{m}" for m in (2, 3, 4, 5)]
    publish((Topic.SCORING_DONE, ScoringDone(job_id=job_id, run_id=run_id, model_kind="gbdt", rows=40,
                                             predictions_location=predictions_path(job_id), seconds=0.1,
                                             period_id=ids[0], period_ids=ids), job_id))
    status = wait_for(lambda: gateway_client.get(f"/api/predict/jobs/{job_id}").json(),
                      lambda s: s.get("status") == "completed")
    assert status["periodIds"] == ids and status["periodId"] == ids[0] and status["period"] is None

    # Bad dates: refused with the rows named, nothing queued.
    bad = ("bad.csv", b'hour,seq,date\n1,"1",2026-03-01\n2,"2",01/03/2026\n', "text/csv")
    refused = gateway_client.post(f"/api/predict/{run_id}/batch", files={"file": bad})
    assert refused.status_code == 422, refused.text
    assert "date: 1 rows are empty or not dates (data row 2: '01/03/2026')" in refused.json()["validation"]["errors"][0]
