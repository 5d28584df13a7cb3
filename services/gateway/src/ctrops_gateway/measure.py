"""Request metrics as a plain ASGI step: count and time every HTTP request by method, route template
and status, and feed the gateway's own traffic view.

Plain ASGI, not ``@app.middleware("http")`` (Starlette's BaseHTTPMiddleware): that one runs the
rest of the app in a task of its own and re-streams every response body through a queue, on every
request. Here the request goes straight through; the status is read off ``http.response.start`` as
it passes. A request whose app raised before it answered is counted as 500, and the error goes on
to Starlette's error handler as before.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HTTP_REQUESTS = Counter("ctrops_http_requests_total", "HTTP requests", ["method", "route", "status"])
HTTP_SECONDS = Histogram(
    "ctrops_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

UNTRACKED = frozenset(("/metrics", "/healthz", "/readyz"))  # probes: not the API's traffic


def route_label(scope: Scope) -> str:
    """The route template (``/api/train/status/{run_id}``), never the raw path: bounded labels."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if path else "unmatched"


class Measure:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless the app answers

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            elapsed = time.perf_counter() - started
            route = route_label(scope)
            HTTP_REQUESTS.labels(scope["method"], route, str(status)).inc()
            HTTP_SECONDS.labels(scope["method"], route).observe(elapsed)
            gateway: Any = getattr(getattr(scope.get("app"), "state", None), "gateway", None)
            if gateway is not None and route not in UNTRACKED:
                gateway.traffic.observe(route, elapsed, failed=status >= 500)
