"""Wiring of the hardening layers (docs/security.md) and their place in the OpenAPI schema.

Middleware order, outermost first (Starlette runs the last added first):
  measure (app.py) -> security headers -> CORS -> proxy headers -> audit -> auth -> limits -> strict JSON
  -> routes
CORS wraps the guards so refusals (401/403/413/429) carry CORS headers a browser can read;
the audit sits outside auth and limits so it records their refusals, and inside it the
principal set by auth is known. The answers these layers give are documented here, in
one place, on every operation they apply to, so the schema stays true to the wire. The auth
middleware only authenticates; the role each route needs, and its place in the schema, are
declared on the routes (security.py). So are the per-minute rate limits (rate_limits.py) and
the active-runs cap (training_cap.py): their 429 is documented here on every operation that
declares one of them, read from the routes' dependencies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from .audit import AuditMiddleware
from .auth import AuthMiddleware, check_auth_settings, install_log_redaction
from .headers import SecurityHeadersMiddleware
from .limits import PREDICT_ROUTE, STREAMING_ROUTES, LimitsMiddleware
from .proxies import ProxyHeadersMiddleware
from .rate_limits import LIMIT_OF
from .settings import GatewaySettings
from .strict_json import StrictJsonMiddleware
from .training_cap import cap_active_trainings

ERROR_SCHEMA = {
    "title": "Error",
    "type": "object",
    "properties": {"detail": {"type": "string", "description": "What went wrong and what to do"}},
    "required": ["detail"],
}
VALIDATION_ERROR_SCHEMA = {
    "title": "ValidationProblem",
    "type": "object",
    "properties": {
        "detail": {"type": "string", "description": "Every problem, '; '-separated, naming the field"},
        "errors": {"type": "array", "items": {"type": "object"}, "description": "The structured problems"},
    },
    "required": ["detail"],
}
_ERROR_REF = {"$ref": "#/components/schemas/Error"}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again", "schema": {"type": "integer"}}}
# What each limit dependency refuses, for the 429 of the operations that declare it.
REFUSALS: dict[Callable[..., Any], str] = {
    **{call: f"more {limit.what} in a minute than {limit.env} allows" for call, limit in LIMIT_OF.items()},
    cap_active_trainings: "CTROPS_MAX_ACTIVE_TRAININGS_PER_CLIENT training runs already queued or running",
}


def add_guards(app: FastAPI, settings: GatewaySettings) -> None:
    """Audit, auth and limits; call before adding CORS so CORS wraps them."""
    check_auth_settings(settings)  # now, at start-up: middlewares are only built on the first request
    install_log_redaction()
    app.add_middleware(StrictJsonMiddleware, skip=STREAMING_ROUTES)  # inside limits: bodies already capped
    app.add_middleware(LimitsMiddleware, settings=settings)
    app.add_middleware(AuthMiddleware, settings=settings)
    app.add_middleware(AuditMiddleware)
    # Outside audit and limits: both see the client address of a trusted proxy's forwarded headers only.
    app.add_middleware(ProxyHeadersMiddleware, trusted=settings.trusted_proxies)


def add_security_headers(app: FastAPI, settings: GatewaySettings) -> None:
    """Call after adding CORS: the headers go on every answer, CORS preflights included."""
    app.add_middleware(SecurityHeadersMiddleware, settings=settings)


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": _ERROR_REF}}}
    if headers:
        response["headers"] = headers
    return response


def document_security(app: FastAPI, settings: GatewaySettings) -> None:
    """Add to the OpenAPI schema what the middlewares answer: 413, 429, 400, the real 422.

    Security is not added here: each route's role dependency (security.py) declares its scheme,
    so FastAPI writes ``securitySchemes`` and each operation's ``security``, and the routers
    document 401/403 (``security.AUTH_RESPONSES``)."""

    build = app.openapi  # FastAPI's own generator (caches in app.openapi_schema)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        limited = declared_limits(app)
        components = schema.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        schemas["Error"] = ERROR_SCHEMA
        schemas["ValidationProblem"] = VALIDATION_ERROR_SCHEMA
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                if not isinstance(operation, dict) or "responses" not in operation:
                    continue
                _document_operation(path, method.upper(), operation, settings,
                                    limited.get((method.upper(), path), []))
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def declared_limits(app: FastAPI) -> dict[tuple[str, str], list[Callable[..., Any]]]:
    """(method, path) -> the limit dependencies (``REFUSALS``) declared on that route, router or parameters."""

    def walk(routes: Any) -> list[Any]:  # included routers opened up, as FastAPI keeps them nested
        flat: list[Any] = []
        for route in routes:
            nested = getattr(route, "original_router", None)
            flat.extend(walk(nested.routes) if nested is not None else [route])
        return flat

    found: dict[tuple[str, str], list[Callable[..., Any]]] = {}
    for route in walk(app.routes):
        if not isinstance(route, APIRoute):
            continue
        calls: list[Callable[..., Any]] = []
        stack = [route.dependant]
        while stack:
            dependant = stack.pop(0)
            if dependant.call in REFUSALS and dependant.call not in calls:
                calls.append(dependant.call)
            stack.extend(dependant.dependencies)
        if calls:
            for method in route.methods:
                found[(method, route.path)] = calls
    return found


def _document_operation(path: str, method: str, operation: dict[str, Any], settings: GatewaySettings,
                        limits: list[Callable[..., Any]]) -> None:
    responses = operation["responses"]
    if "422" in responses:
        responses["422"] = {
            "description": "The request does not match the schema (the detail names each field)",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ValidationProblem"}}},
        }
    route = (method, path)
    if "requestBody" in operation:
        # FastAPI answers 400 itself when a body cannot even be decoded (bytes that are not UTF-8 JSON).
        responses.setdefault("400", _error("The body could not be parsed (send UTF-8 JSON)"))
        what = ("Larger than CTROPS_MAX_UPLOAD_MB" if route in STREAMING_ROUTES
                else f"Body larger than CTROPS_MAX_PREDICT_BODY_MB ({settings.max_predict_body_mb:g} MB)"
                if route == PREDICT_ROUTE
                else f"Body larger than CTROPS_MAX_JSON_BODY_KB ({settings.max_json_body_kb} KB)")
        responses.setdefault("413", _error(what))
        responses["413"].setdefault("content", {"application/json": {"schema": _ERROR_REF}})
    if limits:
        refused = "; or ".join(REFUSALS[call] for call in limits)
        responses.setdefault("429", _error(f"Too many requests from this client: {refused} "
                                           "(Retry-After says when to try again)", _RETRY_AFTER))
    if any(call in LIMIT_OF for call in limits):
        store_down = "the rate limit store (CTROPS_RATE_LIMIT_STORAGE) cannot be reached (Retry-After)"
        if "503" in responses:
            responses["503"]["description"] = f"{responses['503']['description']}; or {store_down}"
        else:
            responses["503"] = _error(store_down[0].upper() + store_down[1:], _RETRY_AFTER)
    for status, response in responses.items():
        # Every error is JSON {"detail": ...} (the contract): say so wherever a route only gave a description.
        if status[:1] in ("4", "5") and "content" not in response:
            response["content"] = {"application/json": {"schema": _ERROR_REF}}
