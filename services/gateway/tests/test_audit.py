"""The audit trail: every mutating call of a real end-to-end run is recorded (who, what, which
resource, when, from where, outcome), refusals too, queryable at GET /api/audit (operator only
with auth on), and it survives a gateway restart (it lives in the gateway database)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient

from ctrops_common.datagen import generate
from ctrops_gateway.audit import action_of, outcome_of
from ctrops_gateway.settings import GatewaySettings

VIEWER_KEY = "viewer-key-0123456789"
OPERATOR_KEY = "operator-key-0123456789"
API_KEYS = f"{VIEWER_KEY}:viewer:alice,{OPERATOR_KEY}:operator:bob"
EXPLAINER_ENV = {
    "CTROPS_EXPLAINER_SAMPLE_ROWS": "16",
    "CTROPS_EXPLAINER_LIME_SAMPLES": "300",
    "CTROPS_EXPLAINER_BACKGROUND_ROWS": "300",
    "CTROPS_EXPLAINER_SEQ_BANK_SIZE": "32",
    "CTROPS_EXPLAINER_BOOTSTRAP": "100",
    "CTROPS_EXPLAINER_PERMUTATION_REPEATS": "1",
    "CTROPS_EXPLAINER_EVAL_ROWS": "600",
    "CTROPS_EXPLAINER_TORCH_THREADS": "1",
}


def _ready(client: TestClient) -> TestClient:
    deadline = time.monotonic() + 30
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "gateway consumer did not join its group"
        time.sleep(0.1)
    return client


def _wait(fetch, done, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while True:
        value = fetch()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"{what} never happened: {value}"
        time.sleep(0.5)


# What each call is recorded as: the table in ctrops_gateway/audit.py's docstring, declared on the routes.
DOCUMENTED_ACTIONS = {
    ("POST", "/api/upload"): "upload",
    ("POST", "/api/train"): "train",
    ("POST", "/api/train/{run_id}/cancel"): "cancel",
    ("DELETE", "/api/train/{run_id}"): "cancel",
    ("POST", "/api/train/{run_id}/retrain"): "retrain",
    ("POST", "/api/predict/{run_id}"): "predict",
    ("POST", "/api/predict/{run_id}/batch"): "predict_batch",
    ("POST", "/api/report/generate-pdf/{run_id}"): "generate_pdf",
    ("GET", "/api/report/pdf/{run_id}"): "download_pdf",
    ("GET", "/api/audit"): "read_audit",
    ("PUT", "/api/feature-mapping"): "feature_mapping",
    ("DELETE", "/api/feature-mapping"): "feature_mapping",
}


def _app_routes():
    from fastapi.routing import APIRoute

    from ctrops_gateway.app import create_app
    from ctrops_gateway.caller import _flat_routes

    app = create_app(GatewaySettings())
    return app, [r for r in _flat_routes(app) if isinstance(r, APIRoute)]


def test_the_routes_declare_the_documented_actions_and_every_mutating_route_declares_one():
    """The declarations on the routes are the audit's table: the documented one, and no mutating /api
    route is left to the ``other`` catch-all."""
    from ctrops_gateway.audit import declared_action

    _, routes = _app_routes()
    declared = {(method, route.path): declared_action(route)
                for route in routes for method in route.methods if declared_action(route) is not None}
    assert declared == DOCUMENTED_ACTIONS
    undeclared = [(sorted(route.methods), route.path) for route in routes
                  if route.path.startswith("/api/") and set(route.methods) - {"GET", "HEAD", "OPTIONS"}
                  and declared_action(route) is None]
    assert undeclared == []
    from ctrops_gateway import audit

    documented = {}
    for line in (audit.__doc__ or "").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0].split(" ")[0] in ("GET", "POST", "PUT", "DELETE", "PATCH"):
            for call in cells[0].split(", "):
                method, template = call.split(" ")
                documented[(method, template)] = cells[1].split(" ")[0]
    assert documented == DOCUMENTED_ACTIONS  # the module's documented table is the routes' declarations


@pytest.mark.parametrize(("method", "path", "action"), [
    ("POST", "/api/upload", "upload"),
    ("POST", "/api/train", "train"),
    ("POST", "/api/train/0123456789abcdef0123456789abcdef/cancel", "cancel"),
    ("DELETE", "/api/train/0123456789abcdef0123456789abcdef", "cancel"),
    ("POST", "/api/report/generate-pdf/x", "generate_pdf"),
    ("GET", "/api/report/pdf/x", "download_pdf"),
    ("HEAD", "/api/report/pdf/x", None),  # a HEAD reads nothing of the file
    ("GET", "/api/audit", "read_audit"),
    ("GET", "/api/upload", None),  # 405: the path's route, not its action
    ("PATCH", "/api/feature-mapping", "other"),  # 405 on a mutating method: never missed
    ("GET", "/api/dashboard/si", None),
    ("POST", "/api/nope", None),  # no such route: nothing happened
])
def test_which_calls_are_audited(method, path, action):
    from ctrops_gateway.caller import matched_route

    app, _ = _app_routes()
    scope = {"type": "http", "method": method, "path": path, "root_path": "", "headers": [], "query_string": b"",
             "app": app}
    assert action_of(method, matched_route(scope), path) == action


def test_a_new_mutating_route_without_a_declaration_is_recorded_as_other():
    from fastapi import APIRouter
    from fastapi.routing import APIRoute

    router = APIRouter()

    @router.patch("/api/some/new/{thing}")
    async def new_route(thing: str) -> dict[str, str]:
        return {"thing": thing}

    route = next(r for r in router.routes if isinstance(r, APIRoute))
    assert action_of("PATCH", route, "/api/some/new/y") == "other"


def test_outcomes():
    assert [outcome_of(s) for s in (200, 202, 401, 403, 413, 429, 404, 409, 500, 504)] == [
        "ok", "ok", "denied", "denied", "limited", "limited", "rejected", "rejected", "failed", "failed"]


def test_every_mutating_call_of_an_end_to_end_run_is_audited(start_service, gateway_client, tmp_path):
    """Auth off (the frontend's way): upload -> train -> report -> PDF, all recorded as anonymous."""
    workers = [start_service(name, env, wait=False) for name, env in [
        ("ingest", None), ("trainer", {"CTROPS_TRAINER_MLFLOW_ENABLED": "false"}), ("explainer", EXPLAINER_ENV),
        ("reporter", None)]]
    for worker in workers:
        worker.wait_ready()
    csv = tmp_path / "ads.csv"
    generate(csv, 3000, seed=11)
    started = datetime.now(timezone.utc) - timedelta(seconds=1)
    calls: list[tuple[str, str, int]] = []  # (action, resource, status) of each mutating call made

    upload = gateway_client.post("/api/upload", files={"file": ("ads.csv", csv.read_bytes(), "text/csv")})
    assert upload.status_code == 200, upload.text
    file_id = upload.json()["file_id"]
    calls.append(("upload", file_id, 200))

    train = gateway_client.post("/api/train", json={"file_id": file_id, "config": {
        "epochs": 1, "batchSize": 512, "lstmHidden": 8, "mlpHidden": "16", "experimentName": "audit"}})
    assert train.status_code == 200, train.text
    run_id = train.json()["run_id"]
    calls.append(("train", run_id, 200))
    _wait(lambda: gateway_client.get(f"/api/train/status/{run_id}").json(),
          lambda s: s["status"] in ("completed", "failed"), 240, "training")
    _wait(lambda: gateway_client.get(f"/api/report/ai/{run_id}").status_code, lambda s: s == 200, 300, "the report")

    pdf = gateway_client.post(f"/api/report/generate-pdf/{run_id}", json={"includeCharts": False})
    assert pdf.status_code == 200, pdf.text
    calls.append(("generate_pdf", run_id, 200))
    download = gateway_client.get("/api/report/pdf/latest")
    assert download.status_code == 200 and download.content.startswith(b"%PDF")
    calls.append(("download_pdf", run_id, 200))
    cancel = gateway_client.post(f"/api/train/{run_id}/cancel")  # too late: the run is finished
    calls.append(("cancel", run_id, cancel.status_code))

    entries = gateway_client.get("/api/audit", params={"limit": 50}).json()["entries"]
    recorded = [(e["action"], e["resource"], e["status"]) for e in reversed(entries) if e["action"] != "read_audit"]
    assert recorded == calls
    for entry in entries:
        assert entry["client_id"] == "anonymous" and entry["auth_method"] == "none"
        assert entry["remote_addr"] == "testclient"  # the TestClient's peer address
        assert datetime.fromisoformat(entry["at"]) >= started
        assert entry["duration_ms"] >= 0
    train_entry = next(e for e in entries if e["action"] == "train")
    assert train_entry["file_id"] == file_id and train_entry["run_id"] == run_id  # the request's file, the new run
    by_run = gateway_client.get("/api/audit", params={"resource": run_id}).json()["entries"]
    assert {e["action"] for e in by_run} == {"train", "generate_pdf", "download_pdf", "cancel"}
    by_file = gateway_client.get("/api/audit", params={"resource": file_id}).json()["entries"]
    assert {e["action"] for e in by_file} == {"upload", "train"}


@pytest.fixture
def auth_client(platform_env):
    from ctrops_gateway.app import create_app

    settings = GatewaySettings(consumer_group=f"gw-{platform_env['prefix']}", auth_enabled=True,
                               auth_api_keys=API_KEYS)
    with TestClient(create_app(settings)) as client:
        yield _ready(client)


def test_refusals_are_audited_and_the_trail_is_for_operators_only(auth_client):
    operator = {"X-API-Key": OPERATOR_KEY}
    assert auth_client.post("/api/upload").status_code == 401
    assert auth_client.post("/api/upload", headers={"X-API-Key": VIEWER_KEY}).status_code == 403
    assert auth_client.post("/api/report/generate-pdf/latest", headers=operator).status_code == 404
    assert auth_client.get("/api/audit", headers={"X-API-Key": VIEWER_KEY}).status_code == 403
    assert auth_client.get("/api/audit").status_code == 401

    body = auth_client.get("/api/audit", headers=operator, params={"action": "upload"}).json()
    assert body["count"] == 2
    forbidden, unauthenticated = body["entries"]  # newest first
    assert (forbidden["client_id"], forbidden["role"], forbidden["status"], forbidden["outcome"]) == (
        "alice", "viewer", 403, "denied")
    assert "needs the 'operator' role" in forbidden["detail"]
    assert (unauthenticated["client_id"], unauthenticated["status"]) == ("anonymous", 401)
    pdf = auth_client.get("/api/audit", headers=operator, params={"action": "generate_pdf"}).json()["entries"]
    assert [(e["client_id"], e["auth_method"], e["status"], e["outcome"]) for e in pdf] == [
        ("bob", "api_key", 404, "rejected")]
    reads = auth_client.get("/api/audit", headers=operator, params={"action": "read_audit", "limit": 10}).json()
    assert [e["status"] for e in reads["entries"]][-2:] == [401, 403]  # newest first: who tried to read it
    assert auth_client.get("/api/audit", headers=operator, params={"client": "alice"}).json()["count"] == 2
    assert auth_client.get("/api/audit", headers=operator, params={"limit": 1}).json()["count"] == 1
    bad = auth_client.get("/api/audit", headers=operator, params={"limit": 0, "resource": "../x"})
    assert bad.status_code == 422


def test_the_trail_survives_a_gateway_restart(platform_env):
    from ctrops_gateway.app import create_app

    settings = GatewaySettings(consumer_group=f"gw-{platform_env['prefix']}")
    with TestClient(create_app(settings)) as client:
        _ready(client)
        assert client.post("/api/report/generate-pdf/0123456789abcdef0123456789abcdef").status_code == 404
    with TestClient(create_app(settings)) as client:  # a new process would read the same database
        _ready(client)
        entries = client.get("/api/audit", params={"action": "generate_pdf"}).json()["entries"]
    assert [(e["run_id"], e["status"]) for e in entries] == [("0123456789abcdef0123456789abcdef", 404)]
