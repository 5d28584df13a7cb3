"""Who is calling what: the route template, the principal and the client key of a request.

The limits and audit middlewares run before FastAPI's router, so they
resolve the route template themselves (``/api/report/pdf/{run_id}``, not the raw path)
the same way Starlette's router does, once per request, cached in the ASGI scope.
The principal is set by the auth middleware (``anonymous`` operator when auth is off)
and read by the limits and audit middlewares, by the role dependencies (security.py) and by
routes (``request.state.principal``, or a ``Viewer`` / ``Operator`` parameter).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from starlette.routing import Match
from starlette.types import Scope

ROUTE_KEY = "ctrops.route"
PRINCIPAL_KEY = "principal"  # in scope["state"], so request.state.principal works in routes


class Role(IntEnum):
    """Ordered: a higher role can do everything a lower one can."""

    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3  # an operator who may also cancel other clients' runs

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: str) -> Role:
        try:
            return cls[value.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown role {value!r}; use one of: {', '.join(r.label for r in cls)}") from None


@dataclass(frozen=True)
class Principal:
    client_id: str  # "anonymous" when nobody authenticated
    role: Role
    method: str  # "api_key", "jwt" or "none" (auth off / not authenticated)

    @property
    def authenticated(self) -> bool:
        return self.method != "none"


ANONYMOUS_OPERATOR = Principal("anonymous", Role.OPERATOR, "none")  # auth off: the local frontend may do anything
ANONYMOUS = Principal("anonymous", Role.VIEWER, "none")  # auth on, no valid credentials (only open paths)


def route_of(scope: Scope) -> tuple[str | None, dict[str, Any]]:
    """(route template, path params) of the route the router will pick; (None, {}) if none."""
    route, params = _match(scope)
    return (getattr(route, "path", None) if route is not None else None), params


def matched_route(scope: Scope) -> Any:
    """The route object the router will pick (for a 405, the route of that path); None if none."""
    return _match(scope)[0]


def _match(scope: Scope) -> tuple[Any, dict[str, Any]]:
    cached = scope.get(ROUTE_KEY)
    if cached is not None:
        return cached
    found: tuple[Any, dict[str, Any]] = (None, {})
    partial: tuple[Any, dict[str, Any]] | None = None
    for route in _flat_routes(scope.get("app")):
        match, child = route.matches(scope)
        if match is Match.FULL:
            found = (route, child.get("path_params", {}))
            break
        if match is Match.PARTIAL and partial is None:  # right path, other method (405)
            partial = (route, child.get("path_params", {}))
    else:
        if partial is not None:
            found = partial
    scope[ROUTE_KEY] = found
    return found


def _flat_routes(app: Any) -> list[Any]:
    """The app's routes with included routers opened up (FastAPI nests them), in router order.

    Cached once the app serves (routes are all added by then). Routers are included without
    a path prefix in this app; a prefix would need adding here."""
    state = getattr(app, "state", None)
    cached = getattr(state, "ctrops_flat_routes", None) if state is not None else None
    if cached is not None:
        return cached

    def walk(routes: Any) -> list[Any]:
        flat: list[Any] = []
        for route in routes:
            nested = getattr(route, "original_router", None)  # FastAPI's included router
            flat.extend(walk(nested.routes) if nested is not None else [route])
        return flat

    flat = walk(getattr(getattr(app, "router", None), "routes", ()))
    if state is not None:
        state.ctrops_flat_routes = flat
    return flat


def method_of(scope: Scope) -> str:
    """HTTP method, or ``WS`` for a WebSocket handshake."""
    return "WS" if scope["type"] == "websocket" else scope.get("method", "GET").upper()


def remote_addr(scope: Scope) -> str:
    """The peer address, or the client a trusted proxy forwarded for (proxies.py, CTROPS_TRUSTED_PROXIES)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def set_principal(scope: Scope, principal: Principal) -> None:
    scope.setdefault("state", {})[PRINCIPAL_KEY] = principal


def principal_of(scope: Scope) -> Principal | None:
    state = scope.get("state") or {}
    return state.get(PRINCIPAL_KEY)


def client_key(scope: Scope) -> str:
    """Whom limits count against: the authenticated client id, else the remote address."""
    principal = principal_of(scope)
    if principal is not None and principal.authenticated:
        return f"client:{principal.client_id}"
    return f"addr:{remote_addr(scope)}"


def client_id_of(scope: Scope) -> str:
    """The client id recorded with an action (audit, training requests): the authenticated
    client id, else ``anonymous``."""
    principal = principal_of(scope)
    return principal.client_id if principal is not None else "anonymous"
