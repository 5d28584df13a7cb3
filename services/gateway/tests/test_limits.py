"""Limits per client: upload/train rate (429 + Retry-After), JSON body size (413), active
training runs, WebSocket connections and messages; a refused upload leaves nothing behind.

The burst test runs the gateway and ingest as real processes and sends from two real
source addresses (127.0.0.1 and 127.0.0.2), so "client" means what it means in production.
The rate limits' stores and replicas: test_rate_limits.py.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from ctrops_common.datagen import generate
from ctrops_gateway.settings import GatewaySettings


@pytest.fixture
def make_client(platform_env):
    """A gateway in-process with some settings changed, on the real broker."""
    from ctrops_gateway.app import create_app

    clients: list[TestClient] = []

    def make(**overrides) -> TestClient:
        settings = GatewaySettings(consumer_group=f"gw-{platform_env['prefix']}-{len(clients)}", **overrides)
        client = TestClient(create_app(settings))
        client.__enter__()
        clients.append(client)
        deadline = time.monotonic() + 30
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "gateway consumer did not join its group"
            time.sleep(0.1)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.mark.inmemory
def test_a_moving_window_allows_the_burst_then_waits_for_its_oldest_request(memory_gateway_factory):
    """6 a minute: 6 at once, then nothing until the first is a minute old (Retry-After about 60 s;
    the token bucket this replaced gave one back every 10 s)."""
    request = {"file_id": "0" * 32, "config": {"epochs": 1}}
    with memory_gateway_factory(rate_limit_trainings_per_min=6) as gateway:
        started = time.monotonic()
        answers = [gateway.client.post("/api/train", json=request) for _ in range(7)]
        elapsed = time.monotonic() - started
        assert [r.status_code for r in answers] == [404] * 6 + [429]  # the six reached the route
        wait = int(answers[-1].headers["retry-after"])
        assert 60 - elapsed - 1 <= wait <= 60
        assert answers[-1].json()["detail"] == (f"Too many trainings from this client: the limit is 6 per minute. "
                                                f"Try again in {wait} s.")
        again = gateway.client.post("/api/train", json=request)
        assert again.status_code == 429  # a refused request does not count, nor does it free one
        assert int(again.headers["retry-after"]) <= wait


# -- a burst of uploads, real processes --------------------------------------------------------------


def test_burst_of_50_uploads_gets_429s_after_the_limit_while_another_client_is_served(
    start_service, data_dir, tmp_path
):
    limit = 5
    start_service("ingest")
    gateway = start_service("gateway", {"CTROPS_RATE_LIMIT_UPLOADS_PER_MIN": str(limit)})
    csv = tmp_path / "ads.csv"
    generate(csv, 200, seed=5)
    data = csv.read_bytes()
    url = f"http://127.0.0.1:{gateway.port}/api/upload"

    async def burst() -> tuple[list[httpx.Response], httpx.Response, httpx.Response]:
        async def post(client: httpx.AsyncClient) -> httpx.Response:
            return await client.post(url, files={"file": ("ads.csv", data, "text/csv")})

        one = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address="127.0.0.1"), timeout=120)
        other = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address="127.0.0.2"), timeout=120)
        async with one, other:
            responses = await asyncio.gather(*(post(one) for _ in range(50)))
            served = await post(other)
            still_limited = await post(one)
        return list(responses), served, still_limited

    responses, served, still_limited = asyncio.run(burst())
    statuses = [r.status_code for r in responses]
    accepted = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert len(accepted) + len(refused) == 50, statuses
    # A moving window of 5 a minute: the burst gets exactly 5 (the token bucket before it could
    # give a sixth when the burst took more than 12 s).
    assert len(accepted) == limit, statuses
    for response in refused:
        assert int(response.headers["retry-after"]) >= 1
        assert f"the limit is {limit} per minute" in response.json()["detail"]
    assert served.status_code == 200, served.text  # another client is not held up by the first
    assert still_limited.status_code == 429

    # Nothing half-written: exactly the accepted uploads exist, complete, and no temp files.
    accepted_ids = {r.json()["file_id"] for r in accepted} | {served.json()["file_id"]}
    uploads = data_dir / "uploads"
    assert {p.name for p in uploads.iterdir()} == accepted_ids
    for file_id in accepted_ids:
        assert [p.name for p in (uploads / file_id).iterdir()] == ["original.csv"]
        assert (uploads / file_id / "original.csv").read_bytes() == data
    leftovers = [p for p in data_dir.rglob("*") if p.name.endswith(".part")]
    assert not leftovers, leftovers
    assert "Traceback" not in gateway.log()


# -- request bodies --------------------------------------------------------------------------------------


def test_json_bodies_over_the_cap_get_413_before_any_route_runs(make_client):
    client = make_client(max_json_body_kb=8)
    big = {"includeCharts": True, "padding": "x" * 20_000}
    response = client.post("/api/report/generate-pdf/latest", json=big)
    assert response.status_code == 413
    assert "8 KB (CTROPS_MAX_JSON_BODY_KB)" in response.json()["detail"]

    def chunked():  # no Content-Length: counted while it arrives
        for _ in range(20):
            yield b"x" * 1024

    response = client.post("/api/report/generate-pdf/latest", content=chunked(),
                           headers={"content-type": "application/json"})
    assert response.status_code == 413
    # Under the cap the body reaches the route intact (no completed run yet: 404 from the route).
    response = client.post("/api/report/generate-pdf/latest", json={"includeCharts": False})
    assert response.status_code == 404 and "no completed training run" in response.json()["detail"]
    entries = client.get("/api/audit", params={"action": "generate_pdf"}).json()["entries"]
    assert [e["status"] for e in entries] == [404, 413, 413]
    assert [e["outcome"] for e in entries] == ["rejected", "limited", "limited"]


def test_upload_over_the_size_limit_gets_413_and_leaves_nothing(make_client, data_dir):
    client = make_client(max_upload_mb=0.01)  # about 10 KB
    response = client.post("/api/upload", files={"file": ("big.csv", b"clicked,a\n" + b"0,1\n" * 10_000, "text/csv")})
    assert response.status_code == 413 and "CTROPS_MAX_UPLOAD_MB" in response.json()["detail"]
    assert not [p for p in (data_dir / "uploads").rglob("*") if p.is_file()] if (data_dir / "uploads").exists() else True


# -- WebSockets -----------------------------------------------------------------------------------------------


def test_websocket_connections_per_client_are_capped(make_client):
    client = make_client(ws_max_connections_per_client=2)
    with client.websocket_connect("/ws/performance") as first, client.websocket_connect("/ws/performance") as second:
        first.receive_json()
        second.receive_json()
        with client.websocket_connect("/ws/performance") as third:
            with pytest.raises(WebSocketDisconnect) as info:
                third.receive_json()
        assert info.value.code == 1008 and "Too many WebSockets" in info.value.reason
    with client.websocket_connect("/ws/performance") as again:  # the count went down when they closed
        assert again.receive_json()["type"] in ("metrics_update", "system_health")


def test_websocket_messages_are_capped_in_size_and_rate(make_client):
    client = make_client(ws_max_message_bytes=64, ws_max_messages_per_min=3)
    with client.websocket_connect("/ws/performance") as ws:
        ws.receive_json()
        ws.send_text("x" * 65)
        with pytest.raises(WebSocketDisconnect) as info:
            while True:
                ws.receive_json()
    assert info.value.code == 1009
    with client.websocket_connect("/ws/performance") as ws:
        ws.receive_json()
        for _ in range(4):
            ws.send_text("ping")
        with pytest.raises(WebSocketDisconnect) as info:
            while True:
                ws.receive_json()
    assert info.value.code == 1008 and "Too many messages" in info.value.reason


# -- training runs queued or running at once ---------------------------------------------------------------


def test_active_training_runs_per_client_are_capped_until_one_finishes(start_service, make_client, tmp_path):
    """No trainer runs, so accepted runs stay queued; the trainer's training.failed (a cancel) frees a slot."""
    from ctrops_common.bus import Bus
    from ctrops_common.events import Topic, TrainingFailed
    from ctrops_common.settings import CommonSettings

    start_service("ingest")
    bob, carol = {"X-API-Key": "operator-key-0123456789"}, {"X-API-Key": "another-operator-key-0123"}
    client = make_client(auth_enabled=True, max_active_trainings_per_client=2,
                         auth_api_keys=f"{bob['X-API-Key']}:operator:bob,{carol['X-API-Key']}:operator:carol")
    csv = tmp_path / "ads.csv"
    generate(csv, 300, seed=8)
    upload = client.post("/api/upload", files={"file": ("ads.csv", csv.read_bytes(), "text/csv")}, headers=bob)
    assert upload.status_code == 200, upload.text
    request = {"file_id": upload.json()["file_id"], "config": {"epochs": 1}}

    runs = [client.post("/api/train", json=request, headers=bob) for _ in range(2)]
    assert [r.status_code for r in runs] == [200, 200], [r.text for r in runs]
    refused = client.post("/api/train", json=request, headers=bob)
    assert refused.status_code == 429
    assert "already has 2 training run(s) queued or running; the limit is 2" in refused.json()["detail"]
    assert int(refused.headers["retry-after"]) > 0
    assert client.post("/api/train", json=request, headers=carol).status_code == 200  # per client

    async def trainer_reports_cancelled(run_id: str) -> None:
        bus = Bus(CommonSettings(), "test-trainer")
        await bus.start()
        try:
            await bus.publish(Topic.TRAINING_FAILED, TrainingFailed(run_id=run_id, reason="cancelled", cancelled=True),
                              correlation_id=run_id)
        finally:
            await bus.stop()

    first = runs[0].json()["run_id"]
    asyncio.run(trainer_reports_cancelled(first))
    deadline = time.monotonic() + 30
    while client.get(f"/api/train/status/{first}", headers=bob).json()["status"] != "failed":
        assert time.monotonic() < deadline, "the gateway never saw training.failed"
        time.sleep(0.2)
    assert client.post("/api/train", json=request, headers=bob).status_code == 200
