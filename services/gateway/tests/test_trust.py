"""Trust boundaries (issue 17, item 6): forwarded-for headers only from configured proxies,
secrets never in the log at DEBUG, cancel only by the run's owner or an admin."""

from __future__ import annotations

import asyncio
import http.client
import json

import pytest

from ctrops_gateway.proxies import TrustedProxies, parse_networks

KEY = "debug-level-secret-key-0123456789"
TOKEN_LIKE = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXNlY3JldA"


def _headers(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode()) for k, v in pairs]


def test_forwarded_headers_count_only_from_configured_proxies():
    nobody = TrustedProxies("")
    assert not nobody.enabled
    assert nobody.resolve("127.0.0.1", _headers(("x-forwarded-for", "6.6.6.6"))) == ("127.0.0.1", None)
    proxies = TrustedProxies("10.0.0.0/8, 127.0.0.1, ::1")
    # a trusted peer: the rightmost address that is not a proxy is the client (left entries are the client's own)
    assert proxies.resolve("10.1.2.3", _headers(("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.0.0.5"))) == ("1.2.3.4",
                                                                                                      None)
    # RFC 7239 Forwarded, IPv6 with a port, and the scheme
    assert proxies.resolve("::1", _headers(("forwarded", 'for="[2001:db8::1]:4711";proto=https, for=10.0.0.9'))) \
        == ("2001:db8::1", "https")
    # an untrusted peer's headers are ignored
    assert proxies.resolve("192.0.2.7", _headers(("x-forwarded-for", "1.2.3.4"),
                                                 ("forwarded", "for=1.2.3.4"))) == ("192.0.2.7", None)
    with pytest.raises(ValueError, match="not-an-ip"):
        parse_networks("10.0.0.0/8, not-an-ip")


def _audit_addresses(port: int) -> list[str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", "/api/audit?limit=50")
    entries = json.loads(connection.getresponse().read())["entries"]
    connection.close()
    return [e["remote_addr"] for e in entries]


def _post(port: int, headers: dict[str, str]) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("POST", "/api/train", body='{"file_id": "0000000000000000000000000000dead"}',
                       headers={"content-type": "application/json", **headers})
    status = connection.getresponse().status
    connection.close()
    return status


def test_x_forwarded_for_from_an_unlisted_peer_neither_dodges_rate_limits_nor_forges_the_audit_address(
        start_service):
    gateway = start_service("gateway", {"CTROPS_RATE_LIMIT_TRAININGS_PER_MIN": "2"})
    statuses = [_post(gateway.port, {"X-Forwarded-For": f"203.0.113.{i}", "Forwarded": f"for=198.51.100.{i}"})
                for i in range(4)]
    assert statuses[:2] == [404, 404] and statuses[2:] == [429, 429], statuses  # one client: 127.0.0.1
    assert set(_audit_addresses(gateway.port)) == {"127.0.0.1"}


def test_a_configured_proxy_names_the_client(start_service):
    gateway = start_service("gateway", {"CTROPS_RATE_LIMIT_TRAININGS_PER_MIN": "1",
                                        "CTROPS_TRUSTED_PROXIES": "127.0.0.0/8"})
    assert _post(gateway.port, {"X-Forwarded-For": "203.0.113.1"}) == 404
    assert _post(gateway.port, {"X-Forwarded-For": "203.0.113.2"}) == 404  # another client: its own window
    assert _post(gateway.port, {"X-Forwarded-For": "203.0.113.2"}) == 429
    assert _post(gateway.port, {"Forwarded": "for=198.51.100.9"}) == 404
    assert set(_audit_addresses(gateway.port)) == {"203.0.113.1", "203.0.113.2", "198.51.100.9"}


def test_at_debug_level_keys_and_tokens_sent_to_websockets_and_http_are_never_logged(start_service):
    import websockets

    gateway = start_service("gateway", {"CTROPS_LOG_LEVEL": "DEBUG", "CTROPS_AUTH_ENABLED": "true",
                                        "CTROPS_AUTH_API_KEYS": f"{KEY}:viewer:alice"})
    base = f"ws://127.0.0.1:{gateway.port}/ws/performance"

    async def connect(url: str, headers: dict[str, str] | None = None) -> None:
        async with websockets.connect(url, additional_headers=headers or {}) as ws:
            try:
                await asyncio.wait_for(ws.recv(), 2)
            except (asyncio.TimeoutError, websockets.ConnectionClosed):
                pass

    async def everything() -> None:
        await connect(f"{base}?token={KEY}")
        await connect(f"{base}?access_token={TOKEN_LIKE}&x=1")
        await connect(f"{base}?api_key={KEY}")
        await connect(base, {"X-API-Key": KEY})
        await connect(base, {"Authorization": f"Bearer {KEY}"})
        await connect(base, {"Authorization": f"Bearer {TOKEN_LIKE}", "Cookie": f"session={KEY}"})

    asyncio.run(everything())
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    connection.request("GET", f"/api/train/runs?token={KEY}", headers={"X-API-Key": KEY})
    connection.getresponse().read()
    connection.close()
    gateway.stop()
    log = gateway.log_path.read_text(errors="replace")
    assert "/ws/performance" in log  # DEBUG did log the handshakes
    assert KEY not in log and TOKEN_LIKE not in log and "c2lnbmF0dXJlLXNlY3JldA" not in log


# -- cancel: the run's owner or an admin ---------------------------------------------------------------------------

BOB, CAROL, DANA, VIEWER = ("bob-operator-key-0123456789", "carol-operator-key-0123456789",
                            "dana-admin-key-0123456789", "vic-viewer-key-0123456789")


@pytest.fixture
def owners_client(platform_env):
    from fastapi.testclient import TestClient

    from ctrops_common.testing import wait_for

    from ctrops_gateway.app import create_app
    from ctrops_gateway.settings import GatewaySettings

    settings = GatewaySettings(consumer_group=f"gw-{platform_env['prefix']}", auth_enabled=True,
                               auth_api_keys=f"{BOB}:operator:bob,{CAROL}:operator:carol,{DANA}:admin:dana,"
                                             f"{VIEWER}:viewer:vic")
    with TestClient(create_app(settings)) as client:
        wait_for(lambda: client.get("/readyz"), lambda r: r.status_code == 200)  # the consumer joined its group
        yield client


def _running(client, owner: str | None) -> str:
    from ctrops_common.events import Topic, TrainingConfig, TrainingRequested, new_id
    from ctrops_common.testing import publish_events, wait_for

    run_id = new_id()
    publish_events((Topic.TRAINING_REQUESTED, TrainingRequested(
        run_id=run_id, file_id=new_id(), parquet_location="files/x/data.parquet", config=TrainingConfig(),
        client_id=owner)))
    wait_for(lambda: client.get(f"/api/train/status/{run_id}", headers={"X-API-Key": VIEWER}).status_code,
             lambda status: status == 200)
    return run_id


def test_only_the_runs_owner_or_an_admin_may_cancel_it(owners_client):
    client = owners_client
    bobs, bobs_too, legacy = _running(client, "bob"), _running(client, "bob"), _running(client, None)
    for key, run_id in ((CAROL, bobs), (CAROL, legacy), (BOB, legacy)):
        for method, path in (("POST", f"/api/train/{run_id}/cancel"), ("DELETE", f"/api/train/{run_id}")):
            response = client.request(method, path, headers={"X-API-Key": key})
            assert response.status_code == 403, (key, run_id, response.text)
            assert "only the client that started it or an 'admin'" in response.json()["detail"]
    assert client.post(f"/api/train/{bobs}/cancel", headers={"X-API-Key": VIEWER}).status_code == 403
    assert client.post(f"/api/train/{bobs}/cancel", headers={"X-API-Key": BOB}).json()["status"] == "cancelling"
    assert client.delete(f"/api/train/{bobs_too}", headers={"X-API-Key": DANA}).status_code == 202  # admin: any run
    assert client.post(f"/api/train/{legacy}/cancel", headers={"Authorization": f"Bearer {DANA}"}).status_code == 202
    # an admin may do everything an operator may
    assert client.get("/api/audit", headers={"X-API-Key": DANA}).status_code == 200
