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
| uploads per minute, files to score included (token bucket, burst = the same number) | CTROPS_RATE_LIMIT_UPLOADS_PER_MIN | 429 + Retry-After |
| training requests per minute, retrains included (token bucket) | CTROPS_RATE_LIMIT_TRAININGS_PER_MIN | 429 + Retry-After |
| training runs queued or running at once (retrains included) | CTROPS_MAX_ACTIVE_TRAININGS_PER_CLIENT | 429 + Retry-After |
| open WebSockets | CTROPS_WS_MAX_CONNECTIONS_PER_CLIENT | close 1008 |
| size of a message a WebSocket client sends | CTROPS_WS_MAX_MESSAGE_BYTES | close 1009 |
| messages per minute a WebSocket client sends | CTROPS_WS_MAX_MESSAGES_PER_MIN | close 1008 |

A refused upload is refused before its body is read, so nothing of it reaches the store.
Counters live in this process (each gateway replica limits on its own; with N replicas
behind a balancer a client gets up to N times the rate). Active training runs are counted
from durable state instead: the runs the audit trail says this client started, plus
``training.requested`` events carrying its client id, minus those with a
``training.done`` / ``training.failed`` event in the read model.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
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
from .caller import client_key, method_of, principal_of, remote_addr, route_of

if TYPE_CHECKING:
    from .settings import GatewaySettings

BATCH_SCORING_ROUTE = ("POST", "/api/predict/{run_id}/batch")
PREDICT_ROUTE = ("POST", "/api/predict/{run_id}")
RETRAIN_ROUTE = ("POST", "/api/train/{run_id}/retrain")
# Bodies checked by the route itself, as they stream (the upload path, upload.receive_and_judge).
STREAMING_ROUTES = frozenset({("POST", "/api/upload"), BATCH_SCORING_ROUTE})
RATE_LIMITED = {("POST", "/api/upload"): "uploads", BATCH_SCORING_ROUTE: "uploads",
                ("POST", "/api/train"): "trainings", RETRAIN_ROUTE: "trainings"}
TRAIN_ROUTE = ("POST", "/api/train")
TRAIN_ROUTES = frozenset({TRAIN_ROUTE, RETRAIN_ROUTE})  # each starts a run: the active-run cap applies
ACTIVE_RETRY_AFTER_S = 30
WS_MESSAGE_TOO_BIG = 1009
WS_POLICY_VIOLATION = 1008
MAX_TRACKED_CLIENTS = 10_000


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets: ``per_minute`` requests a minute, bursts up to ``per_minute``."""

    def __init__(self, per_minute: float, clock=time.monotonic) -> None:
        self.capacity = max(1.0, per_minute)
        self.refill_per_s = per_minute / 60.0
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str) -> float:
        """Take one token; 0 when allowed, else the seconds until one is available."""
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_TRACKED_CLIENTS:
                self._prune(now)
            bucket = self._buckets[key] = _Bucket(self.capacity, now)
        bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.updated) * self.refill_per_s)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.refill_per_s

    def _prune(self, now: float) -> None:
        """Forget clients whose bucket has refilled: they are indistinguishable from new ones."""
        full_after = self.capacity / self.refill_per_s
        for key in [k for k, b in self._buckets.items() if now - b.updated >= full_after]:
            del self._buckets[key]


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
        self.rates = {
            "uploads": RateLimiter(settings.rate_limit_uploads_per_min) if settings.rate_limit_uploads_per_min else None,
            "trainings": (RateLimiter(settings.rate_limit_trainings_per_min)
                          if settings.rate_limit_trainings_per_min else None),
        }
        self.training_check = asyncio.Lock()
        self.training_in_flight: dict[str, int] = defaultdict(int)
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
        who = client_key(scope)

        bucket = RATE_LIMITED.get(route)
        limiter = self.rates.get(bucket) if bucket else None
        if limiter is not None:
            wait = limiter.take(who)
            if wait > 0:
                per_min = limiter.capacity
                retry = max(1, math.ceil(wait))
                await send_json_error(
                    send, 429,
                    f"Too many {bucket} from this client: the limit is {per_min:g} per minute. "
                    f"Try again in {retry} s.",
                    {"retry-after": str(retry)},
                )
                return

        if route not in STREAMING_ROUTES and _announces_body(scope):
            buffered = await self._read_capped_body(scope, receive, send, route)
            if buffered is None:
                return  # answered 413, or the client left
            receive = _replay(buffered, receive)

        if route in TRAIN_ROUTES and self.settings.max_active_trainings_per_client > 0:
            await self._train_with_cap(scope, receive, send, who)
            return
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

    async def _train_with_cap(self, scope: Scope, receive: Receive, send: Send, who: str) -> None:
        cap = self.settings.max_active_trainings_per_client
        async with self.training_check:  # check and claim together, so a burst cannot slip past the cap
            active = await asyncio.to_thread(active_trainings, scope, self.settings)
            in_flight = self.training_in_flight[who]
            if active + in_flight >= cap:
                await send_json_error(
                    send, 429,
                    f"This client already has {active + in_flight} training run(s) queued or running; the limit is "
                    f"{cap} at once (CTROPS_MAX_ACTIVE_TRAININGS_PER_CLIENT). Wait for one to finish or cancel it.",
                    {"retry-after": str(ACTIVE_RETRY_AFTER_S)},
                )
                return
            self.training_in_flight[who] += 1
        try:
            # The audit middleware (outside this one) records the new run before the response
            # leaves, so once this returns the run is counted from the audit trail.
            await self.app(scope, receive, send)
        finally:
            self.training_in_flight[who] -= 1
            if self.training_in_flight[who] <= 0:
                del self.training_in_flight[who]

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


# -- counting active training runs -------------------------------------------------------------


def active_trainings(scope: Scope, settings: GatewaySettings) -> int:
    """Runs this client started (audit trail, ``training.requested``) with no done/failed event yet."""
    app = scope.get("app")
    gateway = getattr(getattr(app, "state", None), "gateway", None)
    audit = getattr(getattr(app, "state", None), "audit", None)
    if gateway is None:
        return 0
    since = datetime.now(timezone.utc) - timedelta(hours=settings.training_active_max_age_h)
    principal = principal_of(scope)
    authenticated = principal is not None and principal.authenticated
    client_id = principal.client_id if authenticated else "anonymous"
    runs: set[str] = set()
    if audit is not None:
        runs |= audit.started_runs(client_id, None if authenticated else remote_addr(scope), since)
    if authenticated:
        runs |= gateway.views.requested_runs(client_id, since)
    if not runs:
        return 0
    return len(runs - gateway.views.finished_runs(runs))


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
