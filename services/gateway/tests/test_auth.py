"""Optional authentication: API keys and JWTs, viewer/operator roles, WebSockets, open paths.

The gateway runs in-process (TestClient) on the in-memory bus for the refusals and the answers
of the routes (``memory_auth_gateway``), in-process on the real broker where a real ingest process
judges uploads (``auth_client``), or as a real process (the WebSocket refusal as a browser sees it,
and the log that must not hold a secret).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from pathlib import Path

import jwt
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from starlette.websockets import WebSocketDisconnect

from ctrops_common.datagen import generate
from ctrops_common.settings import describe_error
from ctrops_gateway.auth import RedactTokens, needs_credentials, parse_api_keys
from ctrops_gateway.caller import Role
from ctrops_gateway.settings import GatewaySettings

VIEWER_KEY = "viewer-key-0123456789"
OPERATOR_KEY = "operator-key-0123456789"
HASHED_KEY = "carol-key-0123456789abcdef"
JWT_SECRET = "a-jwt-signing-secret-of-at-least-32-chars"
API_KEYS = (f"{VIEWER_KEY}:viewer:alice,{OPERATOR_KEY}:operator:bob,"
            f"sha256:{hashlib.sha256(HASHED_KEY.encode()).hexdigest()}:operator:carol")
AUTH_ENV = {"CTROPS_AUTH_ENABLED": "true", "CTROPS_AUTH_API_KEYS": API_KEYS, "CTROPS_AUTH_JWT_SECRET": JWT_SECRET}


def token(sub: str = "dana", role: str | None = "operator", expires_in: float = 300, secret: str = JWT_SECRET,
          **claims) -> str:
    payload = {"sub": sub, "exp": int(time.time() + expires_in), **claims}
    if role is not None:
        payload["role"] = role
    return jwt.encode(payload, secret, algorithm="HS256")


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def small_csv(tmp_path: Path, name: str = "ads.csv", rows: int = 300) -> bytes:
    path = tmp_path / name
    generate(path, rows, seed=3)
    return path.read_bytes()


@pytest.fixture
def memory_auth_gateway(memory_gateway_factory):
    """The gateway with authentication on, in-process on the in-memory bus (no broker to join)."""
    with memory_gateway_factory(auth_enabled=True, auth_api_keys=API_KEYS, auth_jwt_secret=JWT_SECRET) as gateway:
        yield gateway


@pytest.fixture
def auth_client(platform_env):
    """The same on the real broker, for the test whose uploads a real ingest process judges."""
    settings = GatewaySettings(
        consumer_group=f"gw-{platform_env['prefix']}", auth_enabled=True, auth_api_keys=API_KEYS,
        auth_jwt_secret=JWT_SECRET,
    )
    from ctrops_gateway.app import create_app

    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 30
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "gateway consumer did not join its group"
            time.sleep(0.1)
        yield client


# -- who must authenticate (middleware) and which role each route declares (security.py) ---------------


@pytest.fixture(scope="module")
def declared_roles() -> dict[tuple[str, str], Role]:
    """(method, route template) -> the highest role its dependencies require ("WS" for WebSockets)."""
    from fastapi.routing import APIWebSocketRoute

    from ctrops_gateway.app import create_app
    from ctrops_gateway.security import ROLE_OF

    def walk(routes) -> list:
        return [leaf for r in routes for leaf in (walk(r.original_router.routes)
                                                  if getattr(r, "original_router", None) else [r])]

    roles: dict[tuple[str, str], Role] = {}
    for route in walk(create_app(GatewaySettings()).routes):
        if not hasattr(route, "dependant"):
            continue
        found, stack = [], [route.dependant]
        while stack:
            dependant = stack.pop()
            found += [ROLE_OF[dependant.call]] if dependant.call in ROLE_OF else []
            stack.extend(dependant.dependencies)
        methods = ["WS"] if isinstance(route, APIWebSocketRoute) else route.methods
        for method in methods:
            if found:
                roles[(method, route.path)] = max(found)
    return roles


@pytest.mark.parametrize(
    ("method", "path", "template", "role"),
    [
        ("GET", "/api/health", "/api/health", None),
        ("GET", "/metrics", "/metrics", None),
        ("GET", "/openapi.json", "/openapi.json", None),
        ("GET", "/docs", "/docs", None),
        ("OPTIONS", "/api/upload", "/api/upload", None),
        ("GET", "/api/train/runs", "/api/train/runs", Role.VIEWER),
        ("GET", "/api/report/pdf/abc", "/api/report/pdf/{run_id}", Role.VIEWER),
        ("HEAD", "/api/dashboard/si", "/api/dashboard/si", Role.VIEWER),
        ("WS", "/ws/performance", "/ws/performance", Role.VIEWER),
        ("WS", "/ws/training/x", "/ws/training/{run_id}", Role.VIEWER),
        ("POST", "/api/upload", "/api/upload", Role.OPERATOR),
        ("POST", "/api/train", "/api/train", Role.OPERATOR),
        ("POST", "/api/report/generate-pdf/x", "/api/report/generate-pdf/{run_id}", Role.OPERATOR),
        ("GET", "/api/audit", "/api/audit", Role.OPERATOR),
        ("PUT", "/api/something-new", None, Role.OPERATOR),  # a new mutating route is never open
        ("GET", "/api/unknown", None, Role.VIEWER),
        ("GET", "/assets/app.js", "/{path:path}", None),  # the frontend's files
    ],
)
def test_role_table(method, path, template, role, declared_roles):
    assert needs_credentials(method, path) == (role is not None)  # the middleware: 401 without credentials
    lookup = ("GET" if method == "HEAD" else method, template)
    if role is not None and template is not None:  # the route: 403 below its declared role
        assert declared_roles[lookup] == role
    else:
        assert lookup not in declared_roles


def test_api_key_entries_are_checked_without_echoing_the_key():
    keys = parse_api_keys(API_KEYS)
    assert [(k.client_id, k.role) for k in keys] == [("alice", Role.VIEWER), ("bob", Role.OPERATOR),
                                                     ("carol", Role.OPERATOR)]
    assert all(len(k.digest) == 32 for k in keys)
    for bad, why in [("shortkey:viewer:x", "at least 16"), (f"{OPERATOR_KEY}:superuser:x", "unknown role"),
                     (f"{OPERATOR_KEY}:viewer", "expected key:role:client"), ("sha256:abc:viewer:x", "64 hex"),
                     (f"{OPERATOR_KEY}:viewer:a,{VIEWER_KEY}:viewer:a", "used twice")]:
        with pytest.raises(ValueError, match=why) as info:
            parse_api_keys(bad)
        assert OPERATOR_KEY not in str(info.value) and "shortkey" not in str(info.value)


def test_settings_fail_fast_and_never_print_a_secret():
    with pytest.raises(ValidationError) as info:
        GatewaySettings(auth_enabled=True, database_url="postgresql://u:hunter2@db/x")
    message = describe_error(GatewaySettings, info.value)
    assert "CTROPS_AUTH_API_KEYS" in message and "hunter2" not in message
    with pytest.raises(ValidationError) as info:
        GatewaySettings(auth_jwt_secret=12345678)
    assert "12345678" not in describe_error(GatewaySettings, info.value)
    from ctrops_gateway.app import create_app

    with pytest.raises(ValueError, match="at least 32") as info:
        create_app(GatewaySettings(auth_enabled=True, auth_jwt_secret="too-short-secret"))
    assert "too-short-secret" not in str(info.value)


def test_query_tokens_are_redacted_from_uvicorn_log_lines():
    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, '%s - "WebSocket %s" [accepted]',
                               ("127.0.0.1:5000", f"/ws/performance?token={OPERATOR_KEY}&x=1"), None)
    RedactTokens().filter(record)
    assert OPERATOR_KEY not in record.getMessage() and "token=***&x=1" in record.getMessage()


# -- HTTP --------------------------------------------------------------------------------------------


@pytest.mark.inmemory
def test_no_credentials_get_401_with_a_challenge_but_open_paths_answer(memory_auth_gateway):
    auth_client = memory_auth_gateway.client
    for method, path in [("GET", "/api/dashboard/si"), ("GET", "/api/report/pdf/latest"), ("POST", "/api/upload"),
                         ("POST", "/api/train"), ("GET", "/api/audit"), ("GET", "/api/nonexistent")]:
        response = auth_client.request(method, path)
        assert response.status_code == 401, (method, path, response.text)
        assert "X-API-Key" in response.json()["detail"]
        assert response.headers["www-authenticate"].startswith('Bearer realm="ctrops"')
    for path in ["/api/health", "/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"]:
        assert auth_client.get(path).status_code == 200, path


@pytest.mark.inmemory
def test_invalid_credentials_get_401_saying_why(memory_auth_gateway):
    auth_client = memory_auth_gateway.client
    cases = [
        (bearer("not-a-known-key-at-all"), "not recognised"),
        ({"X-API-Key": "not-a-known-key-at-all"}, "not recognised"),
        (bearer(token(expires_in=-120)), "expired"),
        (bearer(token(secret="another-secret-that-is-long-enough-to-sign")), "signature"),
        ({"Authorization": f"Basic {VIEWER_KEY}"}, "Unsupported Authorization"),
        (bearer(jwt.encode({"sub": "x", "role": "operator"}, JWT_SECRET, algorithm="HS256")), "'exp'"),
    ]
    for headers, why in cases:
        response = auth_client.get("/api/dashboard/si", headers=headers)
        assert response.status_code == 401, (headers, response.text)
        assert why in response.json()["detail"]
        assert 'error="invalid' in response.headers["www-authenticate"]


@pytest.mark.inmemory
def test_viewer_reads_but_gets_403_on_upload_train_pdf_generation_and_audit(memory_auth_gateway):
    auth_client = memory_auth_gateway.client
    for headers in ({"X-API-Key": VIEWER_KEY}, bearer(VIEWER_KEY), bearer(token("erin", role="viewer"))):
        assert auth_client.get("/api/dashboard/si", headers=headers).status_code == 200
        assert auth_client.get("/api/performance/no-such-run", headers=headers).status_code == 404  # reached the route
        for method, path in [("POST", "/api/upload"), ("POST", "/api/train"),
                             ("POST", "/api/report/generate-pdf/latest"), ("GET", "/api/audit")]:
            response = auth_client.request(method, path, headers=headers)
            assert response.status_code == 403, (method, path, response.text)
            assert "needs the 'operator' role" in response.json()["detail"]
            assert "has 'viewer'" in response.json()["detail"]


@pytest.mark.inmemory
def test_a_token_without_a_known_role_is_forbidden(memory_auth_gateway):
    auth_client = memory_auth_gateway.client
    response = auth_client.get("/api/dashboard/si", headers=bearer(token("frank", role="superuser")))
    assert response.status_code == 403 and "no known role" in response.json()["detail"]
    roles = bearer(token("gina", role=None, roles=["something", "operator"]))
    assert auth_client.get("/api/audit", headers=roles).status_code == 200


def test_operator_key_jwt_and_hashed_key_upload(start_service, auth_client, tmp_path):
    start_service("ingest")
    data = small_csv(tmp_path)
    for who, headers in [("bob", {"X-API-Key": OPERATOR_KEY}), ("dana", bearer(token("dana"))),
                         ("carol", bearer(HASHED_KEY))]:
        response = auth_client.post("/api/upload", files={"file": ("ads.csv", data, "text/csv")}, headers=headers)
        assert response.status_code == 200, (who, response.text)
        assert response.json()["rows"] == 300
        entries = auth_client.get("/api/audit", params={"action": "upload", "limit": 1},
                                  headers={"X-API-Key": OPERATOR_KEY}).json()["entries"]
        assert entries[0]["client_id"] == who and entries[0]["file_id"] == response.json()["file_id"]


@pytest.mark.inmemory
def test_cors_preflight_and_refusals_stay_readable_by_the_frontend(memory_auth_gateway):
    auth_client = memory_auth_gateway.client
    preflight = auth_client.options("/api/upload", headers={
        "Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-api-key"})
    assert preflight.status_code == 200
    refused = auth_client.post("/api/upload", headers={"Origin": "http://localhost:3000"})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert "www-authenticate" in refused.headers["access-control-expose-headers"].lower()


# -- WebSockets --------------------------------------------------------------------------------------


@pytest.mark.inmemory
def test_websocket_without_or_with_a_bad_token_is_closed_with_1008(memory_auth_gateway):
    auth_client = memory_auth_gateway.client
    for path in ["/ws/performance", "/ws/training/0123456789abcdef0123456789abcdef",
                 "/ws/performance?token=wrong-token-0123456789"]:
        with auth_client.websocket_connect(path) as ws:
            with pytest.raises(WebSocketDisconnect) as info:
                ws.receive_json()
        assert info.value.code == 1008, path
        assert info.value.reason, path


@pytest.mark.inmemory
def test_websocket_with_a_token_in_the_query_or_header_is_served(memory_auth_gateway):
    auth_client = memory_auth_gateway.client
    with auth_client.websocket_connect(f"/ws/performance?token={VIEWER_KEY}") as ws:
        assert ws.receive_json()["type"] in ("metrics_update", "system_health")
    with auth_client.websocket_connect("/ws/performance", headers=bearer(token("hana", role="viewer"))) as ws:
        assert ws.receive_json()["type"] in ("metrics_update", "system_health")


def test_real_gateway_closes_an_unauthenticated_websocket_with_1008_and_logs_no_secret(start_service):
    import websockets

    gateway = start_service("gateway", {**AUTH_ENV, "CTROPS_LOG_LEVEL": "DEBUG"})

    async def connect(query: str) -> tuple[int | None, str | None]:
        async with websockets.connect(f"ws://127.0.0.1:{gateway.port}/ws/performance{query}") as ws:
            try:
                message = await asyncio.wait_for(ws.recv(), 10)
                return None, message
            except websockets.ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd else None, closed.rcvd.reason if closed.rcvd else None

    code, reason = asyncio.run(connect(""))
    assert code == 1008 and "Authentication required" in reason
    code, message = asyncio.run(connect(f"?token={OPERATOR_KEY}"))
    assert code is None and '"type"' in message
    import urllib.request

    request = urllib.request.Request(f"http://127.0.0.1:{gateway.port}/api/dashboard/si",
                                     headers={"X-API-Key": OPERATOR_KEY})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    gateway.stop()
    log = gateway.log()
    assert "/ws/performance" in log  # the request lines are logged ...
    assert OPERATOR_KEY not in log and JWT_SECRET not in log  # ... without the secret


@pytest.mark.inmemory
def test_every_route_in_the_security_tables_exists_in_the_app(memory_env):
    """The tables are keyed on route templates: a renamed route must not silently drop out."""
    from ctrops_gateway.app import create_app
    from ctrops_gateway.caller import route_of
    from ctrops_gateway.limits import STREAMING_ROUTES

    app = create_app(GatewaySettings())
    for method, template in STREAMING_ROUTES:
        path = template.replace("{run_id}", "0123456789abcdef0123456789abcdef")
        scope = {"type": "websocket" if method == "WS" else "http", "method": method, "path": path,
                 "root_path": "", "headers": [], "query_string": b"", "app": app}
        assert route_of(scope)[0] == template, (method, template)


@pytest.mark.inmemory
def test_training_websocket_with_a_viewer_token_gets_the_unknown_run_message(memory_auth_gateway):
    auth_client = memory_auth_gateway.client
    with auth_client.websocket_connect(f"/ws/training/demo-run?token={VIEWER_KEY}") as ws:
        message = ws.receive_json()
    assert message["type"] == "log" and "demo-run" in message["message"]
