"""Request limits, per client, applied in one middleware before any route runs.

A client is the authenticated client id, else the remote address (``caller.client_key``).

| limit | setting | answer |
|---|---|---|
| request body of every route but the uploads (JSON) | CTROPS_MAX_JSON_BODY_KB | 413 |
| JSON body of POST /api/predict/{run_id} (rows to score) | CTROPS_MAX_PREDICT_BODY_MB | 413 |
| a request body that stalls (upload: checked by the upload route) | CTROPS_REQUEST_BODY_TIMEOUT_S | 408 |
| a request body that trickles: its deadline is the stall timeout plus 1 s per CTROPS_REQUEST_BODY_MIN_RATE_BPS bytes received (Apache mod_reqtimeout's rule) | CTROPS_REQUEST_BODY_MIN_RATE_BPS | 408 |
| uploads received at once (checked by the upload route) | CTROPS_MAX_CONCURRENT_UPLOADS | 503 + Retry-After |
| upload size (checked by the upload route while streaming) | CTROPS_MAX_UPLOAD_MB | 413 |
| open WebSockets | CTROPS_WS_MAX_CONNECTIONS_PER_CLIENT | close 1008 |
| size of a message a WebSocket client sends | CTROPS_WS_MAX_MESSAGE_BYTES | close 1009 |
| messages per minute a WebSocket client sends | CTROPS_WS_MAX_MESSAGES_PER_MIN | close 1008 |

These wrap the request's ``receive`` (bodies) or the socket, so they live here. The limits the
routes declare as dependencies are elsewhere: uploads and training requests per minute
(``rate_limits.py``: 429 + Retry-After, counted in memory, Redis or the database) and training
runs queued or running at once (``training_cap.py``: 429 + Retry-After). The WebSocket counters
live in this process (each gateway replica counts its own sockets).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import defaultdict, deque
from typing import TYPE_CHECKING, Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .auth import refuse_websocket, send_json_error


class BodyClock:
    """When a request body must have arrived: ``stall_s`` after the last data (a stall), and at the
    latest ``stall_s`` plus one second per ``min_rate`` bytes received after its start, so a body
    dripped a few bytes at a time (slowloris) cannot hold a connection and an upload slot for hours
    by never quite stalling. A 500 MB upload at 1 MB/s is far inside it."""

    def __init__(self, stall_s: float, min_rate: float) -> None:
        self.stall_s = stall_s
        self.min_rate = min_rate
        self.started = time.monotonic()
        self.received = 0
        self._stall_binds = True

    def add(self, size: int) -> None:
        self.received += size

    def _deadline(self) -> float:
        return self.started + self.stall_s + (self.received / self.min_rate if self.min_rate > 0 else math.inf)

    def wait_s(self) -> float:
        """How long the next piece of the body may take (remembers which limit that is)."""
        remaining = self._deadline() - time.monotonic()
        self._stall_binds = self.stall_s <= remaining
        return max(0.0, min(self.stall_s, remaining))

    def too_slow(self) -> bool:
        return time.monotonic() >= self._deadline()

    def explain(self, timed_out: bool = False) -> str:
        """Why the body was cut: a stall (``timed_out`` waiting with the stall limit binding), or too slow
        an average."""
        if not (timed_out and self._stall_binds):
            elapsed = time.monotonic() - self.started
            return (f"The request body arrived too slowly: {self.received:,} bytes in {elapsed:.0f} s, less than "
                    f"{self.min_rate:g} bytes per second after the first {self.stall_s:g} s "
                    "(CTROPS_REQUEST_BODY_MIN_RATE_BPS)")
        return f"The request body stalled: nothing arrived for {self.stall_s:g} s (CTROPS_REQUEST_BODY_TIMEOUT_S)"
from .caller import client_key, method_of, route_of

if TYPE_CHECKING:
    from .settings import GatewaySettings

BATCH_SCORING_ROUTE = ("POST", "/api/predict/{run_id}/batch")
PREDICT_ROUTE = ("POST", "/api/predict/{run_id}")
# Bodies checked by the route itself, as they stream (the upload path, upload.receive_and_judge).
STREAMING_ROUTES = frozenset({("POST", "/api/upload"), BATCH_SCORING_ROUTE})
WS_MESSAGE_TOO_BIG = 1009
WS_POLICY_VIOLATION = 1008


class LimitsMiddleware:
    def __init__(self, app: ASGIApp, settings: GatewaySettings) -> None:
        self.app = app
        self.settings = settings
        self.max_body = settings.max_json_body_kb * 1024
        # Routes whose JSON bodies may be larger: (bytes, the sentence of the 413).
        self.body_limits = {
            PREDICT_ROUTE: (int(settings.max_predict_body_mb * (1 << 20)),
                            f"The request body is larger than {settings.max_predict_body_mb:g} MB "
                            "(CTROPS_MAX_PREDICT_BODY_MB). Send fewer rows per request, or score a CSV with "
                            "POST /api/predict/{run_id}/batch."),
        }
        self.sockets: dict[str, int] = defaultdict(int)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    # -- HTTP -----------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = method_of(scope)
        template, _ = route_of(scope)
        route = (method, template or "")
        if route not in STREAMING_ROUTES and _announces_body(scope):
            buffered = await self._read_capped_body(scope, receive, send, route)
            if buffered is None:
                return  # answered 413, or the client left
            receive = _replay(buffered, receive)
        await self.app(scope, receive, send)

    async def _read_capped_body(self, scope: Scope, receive: Receive, send: Send,
                                route: tuple[str, str] = ("", "")) -> bytes | None:
        headers = Headers(scope=scope)
        declared = headers.get("content-length", "")
        limit_kb = self.settings.max_json_body_kb
        too_big = (f"The request body is larger than {limit_kb} KB (CTROPS_MAX_JSON_BODY_KB). "
                   "Send a smaller JSON document.")
        max_body = self.max_body
        if route in self.body_limits:
            max_body, too_big = self.body_limits[route]
        if declared.isdigit() and int(declared) > max_body:
            await send_json_error(send, 413, too_big)
            return None
        chunks: list[bytes] = []
        size = 0
        clock = BodyClock(self.settings.request_body_timeout_s, self.settings.request_body_min_rate_bps)
        while True:
            try:
                message = await asyncio.wait_for(receive(), clock.wait_s())
            except asyncio.TimeoutError:
                await send_json_error(send, 408, f"{clock.explain(timed_out=True)}. Send the whole body at once.",
                                      {"connection": "close"})
                return None
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            clock.add(len(chunk))
            if size > max_body:
                await send_json_error(send, 413, too_big)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    # -- WebSockets ---------------------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        who = client_key(scope)
        cap = self.settings.ws_max_connections_per_client
        if self.sockets[who] >= cap:
            await refuse_websocket(receive, send, f"Too many WebSockets open from this client (limit {cap}).")
            return
        self.sockets[who] += 1
        guard = _SocketGuard(self.settings, receive, send)
        try:
            await self.app(scope, guard.receive, guard.send)
        finally:
            self.sockets[who] -= 1
            if self.sockets[who] <= 0:
                del self.sockets[who]


def _announces_body(scope: Scope) -> bool:
    headers = Headers(scope=scope)
    declared = headers.get("content-length", "")
    return (declared not in ("", "0")) or "chunked" in headers.get("transfer-encoding", "").lower()


def _replay(body: bytes, receive: Receive) -> Receive:
    """Give the app the body already read, then the real channel (disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class _SocketGuard:
    """Caps what a WebSocket client sends; closes the socket (1009 / 1008) when it goes over."""

    def __init__(self, settings: GatewaySettings, receive: Receive, send: Send) -> None:
        self.max_bytes = settings.ws_max_message_bytes
        self.per_minute = settings.ws_max_messages_per_min
        self._receive = receive
        self._send = send
        self.recent: deque[float] = deque()
        self.closed = False

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] != "websocket.receive" or self.closed:
            return message
        size = len(message.get("bytes") or b"") + len((message.get("text") or "").encode())
        if size > self.max_bytes:
            return await self._close(WS_MESSAGE_TOO_BIG, f"Message too big: at most {self.max_bytes} bytes.")
        now = time.monotonic()
        self.recent.append(now)
        while self.recent and now - self.recent[0] > 60:
            self.recent.popleft()
        if len(self.recent) > self.per_minute:
            return await self._close(WS_POLICY_VIOLATION, f"Too many messages: at most {self.per_minute} a minute.")
        return message

    async def _close(self, code: int, reason: str) -> Message:
        self.closed = True
        await self._send({"type": "websocket.close", "code": code, "reason": reason[:120]})
        return {"type": "websocket.disconnect", "code": code}  # the route sees the client leave

    async def send(self, message: Message) -> None:
        if self.closed:
            raise OSError("the WebSocket was closed by the message limits")  # Starlette: WebSocketDisconnect
        await self._send(message)


def describe(settings: GatewaySettings) -> dict[str, Any]:
    """The limits in force, for docs and the OpenAPI description."""
    return {
        "max_json_body_kb": settings.max_json_body_kb,
        "max_upload_mb": settings.max_upload_mb,
        "uploads_per_min": settings.rate_limit_uploads_per_min,
        "trainings_per_min": settings.rate_limit_trainings_per_min,
        "max_active_trainings_per_client": settings.max_active_trainings_per_client,
        "ws_max_connections_per_client": settings.ws_max_connections_per_client,
    }
