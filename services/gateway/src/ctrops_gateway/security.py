"""Who may call what: the role each route needs, declared on the route as a FastAPI dependency.

``AuthMiddleware`` (auth.py) authenticates: it turns the credentials into a ``Principal`` in
the request scope (``anonymous`` operator when auth is off) and answers 401 itself when the
API is called without valid credentials. The routes authorize, here:

    router = APIRouter(dependencies=[VIEWER])                  # every route of the router
    @router.post("/api/train", dependencies=[OPERATOR])        # one route
    async def cancel(principal: Operator) -> ...               # and the principal, typed

``Viewer`` / ``Operator`` (and ``VIEWER`` / ``OPERATOR`` for ``dependencies=[...]``) refuse
with 403 ``{"detail": "Forbidden: POST /api/upload needs the 'operator' role; client 'alice'
has 'viewer'."}`` and a ``WWW-Authenticate`` challenge, or 401 when nobody authenticated (the
middleware answers that first under /api and /ws; the dependency is the second line for any
route declared elsewhere). On a WebSocket they accept and close at once with 1008 and the
reason, as the middleware does, so a browser sees why. With auth off every request carries
the anonymous operator, which passes both.

The security schemes they declare (``X-API-Key`` header, HTTP bearer) give each protected
operation its ``security`` requirement in the OpenAPI schema; ``AUTH_RESPONSES`` documents the
401/403 answers. ``test_security_deps.py`` walks the app's routes so a new route under /api or
/ws without a declared role fails the build.
"""

from __future__ import annotations

from typing import Annotated, Any, NoReturn

from fastapi import Depends, HTTPException, Security, WebSocket, WebSocketException
from fastapi.security import APIKeyHeader, HTTPBearer
from starlette.requests import HTTPConnection

from .auth import AUTHENTICATION_REQUIRED, WS_POLICY_VIOLATION, AuthError
from .caller import ANONYMOUS_OPERATOR, Principal, Role, principal_of

# Declared for the schema (and Swagger UI's Authorize dialog); the middleware has already
# checked whatever credentials came, so they answer nothing themselves (auto_error=False).
api_key_scheme = APIKeyHeader(name="X-API-Key", scheme_name="apiKey", auto_error=False,
                              description="An API key (CTROPS_AUTH_API_KEYS). WebSockets: ?token=<key>.")
bearer_scheme = HTTPBearer(scheme_name="bearer", bearerFormat="JWT or API key", auto_error=False,
                           description="A JWT (CTROPS_AUTH_JWT_SECRET / _PUBLIC_KEY) or an API key. "
                                       "WebSockets: ?token=<token>.")

_ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "No or invalid credentials (see WWW-Authenticate); only when CTROPS_AUTH_ENABLED",
          "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}}, "content": _ERROR_CONTENT},
    403: {"description": "The credentials' role may not do this; only when CTROPS_AUTH_ENABLED",
          "content": _ERROR_CONTENT},
}


async def _refuse(conn: HTTPConnection, error: AuthError) -> NoReturn:
    if isinstance(conn, WebSocket):
        # Accept first: a close before accept reaches the browser as a bare HTTP 403 (1006), hiding why.
        await conn.accept()
        reason = error.detail.encode()[:123].decode("utf-8", "ignore")  # a close reason is at most 123 bytes
        raise WebSocketException(code=WS_POLICY_VIOLATION, reason=reason)
    raise HTTPException(error.status, error.detail, headers={"WWW-Authenticate": error.challenge()})


async def _require(conn: HTTPConnection, needed: Role) -> Principal:
    principal = principal_of(conn.scope)
    if principal is None or (not principal.authenticated and principal != ANONYMOUS_OPERATOR):
        await _refuse(conn, AuthError(401, AUTHENTICATION_REQUIRED))
    if principal.role < needed:
        route = conn.scope.get("route")
        template = getattr(route, "path", None) or conn.url.path
        method = "WebSocket" if isinstance(conn, WebSocket) else conn.scope.get("method", "GET")
        await _refuse(conn, AuthError(403, f"Forbidden: {method} {template} needs the '{needed.label}' role; client "
                                           f"'{principal.client_id}' has '{principal.role.label}'.",
                                      "insufficient_scope"))
    return principal


async def require_viewer(conn: HTTPConnection, _key: Annotated[str | None, Security(api_key_scheme)] = None,
                         _bearer: Annotated[Any, Security(bearer_scheme)] = None) -> Principal:
    """The caller, who may read (viewer or higher)."""
    return await _require(conn, Role.VIEWER)


async def require_operator(conn: HTTPConnection, _key: Annotated[str | None, Security(api_key_scheme)] = None,
                           _bearer: Annotated[Any, Security(bearer_scheme)] = None) -> Principal:
    """The caller, who may change things (operator or higher)."""
    return await _require(conn, Role.OPERATOR)


Viewer = Annotated[Principal, Depends(require_viewer)]
Operator = Annotated[Principal, Depends(require_operator)]
VIEWER = Depends(require_viewer)
OPERATOR = Depends(require_operator)
ROLE_OF = {require_viewer: Role.VIEWER, require_operator: Role.OPERATOR}
