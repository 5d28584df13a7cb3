"""/api/health reflects the services' heartbeats and the broker; CORS and the SPA fallback work."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

WORKERS = ["ingest", "trainer", "explainer", "reporter", "monitor", "scorer"]


def _wait_for(client, predicate, timeout_s: float = 30):
    deadline = time.monotonic() + timeout_s
    while True:
        body = client.get("/api/health").json()
        if predicate(body):
            return body
        assert time.monotonic() < deadline, f"health never matched: {body}"
        time.sleep(0.3)


def test_health_lists_seven_services_and_turns_degraded_when_one_stops(start_service, gateway_client):
    workers = {name: start_service(name, wait=False) for name in WORKERS}
    for worker in workers.values():
        worker.wait_ready()
    body = _wait_for(gateway_client, lambda b: b["status"] == "healthy")
    assert set(body["services"]) == {*WORKERS, "gateway"}
    assert body["broker"]["reachable"] is True
    assert body["timestamp"]

    workers["reporter"].stop()
    # platform_env sets a 1 s heartbeat and a 5 s service timeout.
    body = _wait_for(gateway_client, lambda b: b["services"]["reporter"]["status"] == "down", timeout_s=40)
    assert body["status"] == "degraded"


def test_cors_preflight_allows_the_frontend_origin(gateway_client):
    response = gateway_client.options(
        "/api/train",
        headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "http://localhost:3000"


def test_unknown_origin_gets_no_cors_grant(gateway_client):
    response = gateway_client.get("/api/health", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in response.headers


def test_metrics_endpoint_is_prometheus_text(gateway_client):
    from prometheus_client.parser import text_string_to_metric_families

    gateway_client.get("/api/health")
    names = {f.name for f in text_string_to_metric_families(gateway_client.get("/metrics").text)}
    assert "ctrops_http_requests" in names
    assert "ctrops_http_request_seconds" in names


@pytest.fixture
def spa_client(platform_env, tmp_path: Path, monkeypatch):
    from fastapi.testclient import TestClient

    from ctrops_gateway.app import create_app
    from ctrops_gateway.settings import GatewaySettings

    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<html><body>frontend</body></html>")
    (dist / "assets" / "app.js").write_text("console.log('app')")
    monkeypatch.setenv("FRONTEND_DIST", str(dist))
    with TestClient(create_app(GatewaySettings(consumer_group=f"gw-{platform_env['prefix']}"))) as client:
        yield client


def test_spa_is_served_with_fallback_but_never_shadows_the_api(spa_client):
    assert "frontend" in spa_client.get("/").text
    assert spa_client.get("/assets/app.js").text == "console.log('app')"
    assert "frontend" in spa_client.get("/dashboard/client").text  # client-side route
    assert spa_client.get("/api/health").headers["content-type"].startswith("application/json")
    for path in ("/api/nope", "/ws/nope", "/metrics/x", "/docs/x"):
        response = spa_client.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"].startswith("application/json"), path
    assert spa_client.get("/openapi.json").json()["info"]["title"] == "CTR AIOps gateway"
    assert spa_client.get("/../../etc/passwd").status_code in (200, 404)  # normalised, never a file outside dist
    assert "root:" not in spa_client.get("/..%2f..%2fetc/passwd").text
