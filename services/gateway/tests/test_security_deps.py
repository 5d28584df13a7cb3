"""Roles are declared on the routes (security.py): every /api and /ws route but the open ones
carries Viewer or Operator, every mutating one Operator, and the dependencies answer as the
middleware did (403 with a challenge, 401 when nobody authenticated, WebSockets closed 1008).
So are the rate limits (rate_limits.py) and the active-runs cap (training_cap.py): every route
that starts an upload or a training run declares them, after its role.

No broker: the app is only built (its routes walked), or a small app stands in for it.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import APIRouter, FastAPI, WebSocket
from fastapi.routing import APIRoute, APIWebSocketRoute
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from ctrops_gateway.auth import OPEN_PATHS
from ctrops_gateway.caller import ANONYMOUS, ANONYMOUS_OPERATOR, Principal, Role, set_principal
from ctrops_gateway.rate_limits import LIMIT_OF, limit_trainings, limit_uploads
from ctrops_gateway.security import OPERATOR, ROLE_OF, VIEWER, Operator, Viewer
from ctrops_gateway.settings import GatewaySettings
from ctrops_gateway.training_cap import cap_active_trainings

READS = {"GET", "HEAD"}
LIMITS = {*LIMIT_OF, cap_active_trainings}


def declared_roles(route: Any) -> set[Role]:
    """The roles the route's dependencies (router-level, route-level and parameters) require."""
    found: set[Role] = set()
    stack = [route.dependant]
    while stack:
        dependant = stack.pop()
        if dependant.call in ROLE_OF:
            found.add(ROLE_OF[dependant.call])
        stack.extend(dependant.dependencies)
    return found


def all_routes() -> list[Any]:
    """The app's routes, included routers opened up (FastAPI keeps them nested)."""
    from ctrops_gateway.app import create_app

    def walk(routes: Any) -> list[Any]:
        flat: list[Any] = []
        for route in routes:
            nested = getattr(route, "original_router", None)
            flat.extend(walk(nested.routes) if nested is not None else [route])
        return flat

    return walk(create_app(GatewaySettings()).routes)


def api_routes() -> list[Any]:
    return [r for r in all_routes() if isinstance(r, (APIRoute, APIWebSocketRoute))
            and r.path.startswith(("/api", "/ws")) and r.path not in OPEN_PATHS]


def test_every_api_and_websocket_route_declares_a_role_and_every_mutating_one_operator():
    routes = api_routes()
    assert len(routes) >= 26
    seen = set()
    for route in routes:
        roles = declared_roles(route)
        if isinstance(route, APIWebSocketRoute):
            key = ("WS", route.path)
            assert Role.VIEWER in roles or Role.OPERATOR in roles, f"{key}: no Viewer/Operator dependency"
        else:
            for method in route.methods:
                key = (method, route.path)
                assert roles, f"{key}: no Viewer/Operator dependency: it would be open to any authenticated caller"
                if method not in READS:
                    assert Role.OPERATOR in roles, f"{key} changes things: it needs Operator"
        seen.add(key)
    # The contract's own split, spelled out (a renamed route must not drop out of this test).
    for key in [("POST", "/api/upload"), ("POST", "/api/train"), ("POST", "/api/train/{run_id}/cancel"),
                ("DELETE", "/api/train/{run_id}"), ("POST", "/api/train/{run_id}/retrain"),
                ("POST", "/api/predict/{run_id}"), ("POST", "/api/predict/{run_id}/batch"),
                ("POST", "/api/report/generate-pdf/{run_id}"), ("PUT", "/api/feature-mapping"),
                ("DELETE", "/api/feature-mapping"), ("GET", "/api/audit")]:
        assert key in seen, key
        route = next(r for r in routes if r.path == key[1] and key[0] in getattr(r, "methods", ()))
        assert Role.OPERATOR in declared_roles(route), key
    for key in [("GET", "/api/train/runs"), ("GET", "/api/report/pdf/{run_id}"), ("GET", "/api/dashboard/si"),
                ("GET", "/api/predict/jobs/{job_id}"), ("WS", "/ws/performance"), ("WS", "/ws/training/{run_id}")]:
        assert key in seen, key
        route = next(r for r in routes if r.path == key[1] and (key[0] == "WS" or key[0] in r.methods))
        assert declared_roles(route) == {Role.VIEWER}, key


def dependency_order(route: Any) -> list[Any]:
    """The route's dependency functions in the order FastAPI runs them (router's, route's, parameters')."""
    order: list[Any] = []

    def visit(dependant: Any) -> None:
        for sub in dependant.dependencies:
            visit(sub)
            order.append(sub.call)

    visit(route.dependant)
    return order


def test_every_route_that_starts_an_upload_or_a_run_declares_its_limits_after_its_role():
    expected = {
        ("POST", "/api/upload"): [limit_uploads],
        ("POST", "/api/predict/{run_id}/batch"): [limit_uploads],  # a file to score is an upload
        ("POST", "/api/train"): [limit_trainings, cap_active_trainings],
        ("POST", "/api/train/{run_id}/retrain"): [limit_trainings, cap_active_trainings],
    }
    found = {}
    for route in api_routes():
        if isinstance(route, APIWebSocketRoute):
            assert not LIMITS & set(dependency_order(route)), route.path
            continue
        order = dependency_order(route)
        limits = [call for call in order if call in LIMITS]
        if not limits:
            continue
        for method in route.methods:
            found[(method, route.path)] = limits
            assert method not in READS, f"{method} {route.path}: a read is not rate limited"
        # The role first: a caller refused for its role uses up nothing; the rate before the cap's count.
        role = next(i for i, call in enumerate(order) if call in ROLE_OF)
        assert role < order.index(limits[0]), f"{route.path}: the role is checked before the limits"
    assert found == expected


def test_open_paths_declare_no_role():
    open_routes = [r for r in all_routes() if getattr(r, "path", None) in OPEN_PATHS and hasattr(r, "dependant")]
    assert {r.path for r in open_routes} >= {"/api/health", "/healthz", "/readyz", "/metrics"}
    for route in open_routes:
        assert not declared_roles(route), route.path


def test_the_schema_lists_the_security_of_each_protected_operation():
    from ctrops_gateway.app import create_app

    schema = create_app(GatewaySettings()).openapi()
    assert set(schema["components"]["securitySchemes"]) == {"apiKey", "bearer"}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if path in OPEN_PATHS:
                assert "security" not in operation, (method, path)
                continue
            assert operation["security"] == [{"apiKey": []}, {"bearer": []}], (method, path)
            assert {"401", "403"} <= set(operation["responses"]), (method, path)


# -- the dependencies' answers, on a small app whose "middleware" sets the principal --------------


def small_app(principal: Principal | None) -> FastAPI:
    app = FastAPI()
    router = APIRouter(dependencies=[VIEWER])

    @router.get("/api/read")
    async def read(who: Viewer) -> dict[str, str]:
        return {"client": who.client_id}

    @router.post("/api/write", dependencies=[OPERATOR])
    async def write() -> dict[str, bool]:
        return {"ok": True}

    @app.websocket("/ws/admin")
    async def admin_socket(websocket: WebSocket, who: Operator) -> None:
        await websocket.accept()
        await websocket.send_json({"client": who.client_id})
        await websocket.close()

    app.include_router(router)

    @app.middleware("http")
    async def put_principal(request, call_next):  # what AuthMiddleware does for HTTP
        if principal is not None:
            set_principal(request.scope, principal)
        return await call_next(request)

    class WsPrincipal:  # and for WebSockets (the http middleware above does not see them)
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        async def __call__(self, scope, receive, send) -> None:
            if scope["type"] == "websocket" and principal is not None:
                set_principal(scope, principal)
            await self.inner(scope, receive, send)

    app.add_middleware(WsPrincipal)
    return app


def test_auth_off_lets_everything_through():
    with TestClient(small_app(ANONYMOUS_OPERATOR)) as client:
        assert client.get("/api/read").json() == {"client": "anonymous"}
        assert client.post("/api/write").json() == {"ok": True}
        with client.websocket_connect("/ws/admin") as ws:
            assert ws.receive_json() == {"client": "anonymous"}


def test_a_viewer_gets_403_with_the_same_detail_and_challenge_as_before():
    alice = Principal("alice", Role.VIEWER, "api_key")
    with TestClient(small_app(alice)) as client:
        assert client.get("/api/read").json() == {"client": "alice"}
        response = client.post("/api/write")
        assert response.status_code == 403
        assert response.json() == {"detail": "Forbidden: POST /api/write needs the 'operator' role; "
                                              "client 'alice' has 'viewer'."}
        assert response.headers["www-authenticate"].startswith('Bearer realm="ctrops", error="insufficient_scope"')
        with client.websocket_connect("/ws/admin") as ws:  # accepted, then closed with the reason
            with pytest.raises(WebSocketDisconnect) as info:
                ws.receive_json()
        assert info.value.code == 1008
        assert info.value.reason == ("Forbidden: WebSocket /ws/admin needs the 'operator' role; "
                                     "client 'alice' has 'viewer'.")


@pytest.mark.parametrize("principal", [ANONYMOUS, None])
def test_nobody_authenticated_gets_401_even_where_the_middleware_let_it_pass(principal):
    with TestClient(small_app(principal)) as client:
        response = client.get("/api/read")
        assert response.status_code == 401 and "X-API-Key" in response.json()["detail"]
        assert response.headers["www-authenticate"].startswith('Bearer realm="ctrops"')
        with client.websocket_connect("/ws/admin") as ws:
            with pytest.raises(WebSocketDisconnect) as info:
                ws.receive_json()
        assert info.value.code == 1008 and "Authentication required" in info.value.reason
