"""Per-minute rate limits per client, as FastAPI dependencies declared on the routes they guard.

    @router.post("/api/upload", dependencies=[UPLOAD_RATE])
    @router.post("/api/train", dependencies=[OPERATOR, TRAINING_RATE, ACTIVE_TRAININGS])

| dependency | routes | setting (default) |
|---|---|---|
| ``UPLOAD_RATE`` | POST /api/upload, POST /api/predict/{run_id}/batch (a file to score is an upload) | CTROPS_RATE_LIMIT_UPLOADS_PER_MIN (10) |
| ``TRAINING_RATE`` | POST /api/train, POST /api/train/{run_id}/retrain | CTROPS_RATE_LIMIT_TRAININGS_PER_MIN (6) |

A client is the authenticated client id, else the remote address (``caller.client_key``); 0
turns a limit off. The active-runs cap beside them is ``training_cap.py``.

**Semantics: a moving window** (the ``limits`` library's ``MovingWindowRateLimiter``). A client
gets at most N requests in any 60 seconds: all N at once if it likes, then nothing until the
oldest of them is a minute old. A refused request does not count. The refusal is 429 with
``Retry-After``: the whole seconds (at least 1) until the oldest request in the window leaves
it, so a client that waits that long is served. (Until issue 14 these were token buckets,
which also let a burst of N through but then gave one request back every 60/N seconds; a
moving window never lets more than N through in any minute, at the boundary of two minutes
included.)

**Where the counts live** (``CTROPS_RATE_LIMIT_STORAGE``):

- ``memory://`` (default): in this process. Each gateway replica limits on its own: with N
  replicas behind a balancer a client gets up to N times the rate.
- ``redis://host:port/db`` (``rediss://`` for TLS): one Redis shared by every replica, so the
  limit holds whichever replica a request reaches. Keys start with
  ``CTROPS_RATE_LIMIT_KEY_PREFIX``; they expire with their window.
- ``database://``: the gateway's own database (``CTROPS_DATABASE_URL``; table
  ``gateway_rate_limits``, ``rate_limit_store.py``). Shared by the replicas when that is
  PostgreSQL, as in Kubernetes; with the default SQLite file, by the processes on one host.

Each check is one atomic step in the store (a Lua script in Redis, a transaction on a locked
row in the database), awaited through the async API of ``limits`` (``limits.aio``; the database
calls in worker threads), so nothing blocks the event loop. When the store cannot be reached
the request is not served: 503 with ``Retry-After: 5`` naming CTROPS_RATE_LIMIT_STORAGE (a
limit that silently stopped counting would be no limit).

**Before the body**: FastAPI runs the dependencies before the handler, and the upload routes
read their bodies themselves, in the handler, so a refused upload is answered before a byte
of it is read and nothing of it reaches the store. (The train routes' small JSON bodies are
read by FastAPI first, already capped by the limits middleware.)

The OpenAPI schema documents 429 with ``Retry-After`` on every operation that declares one of
these dependencies (``hardening.document_security`` walks the routes for ``LIMIT_OF``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Depends, HTTPException, Request
from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from .caller import client_key

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from .settings import GatewaySettings

log = logging.getLogger(__name__)

STORE_TIMEOUT_S = 2.0  # connecting to Redis, and each command: a store that hangs answers 503 soon
STORE_DOWN_RETRY_AFTER_S = 5
STORAGE_HELP = ("use memory:// (this process), redis://host:port/db or rediss://host:port/db (Redis shared by "
                "the replicas) or database:// (the gateway database)")


@dataclass(frozen=True)
class Limit:
    name: str  # in the keys and the 429's sentence: "Too many uploads from this client"
    setting: str  # the GatewaySettings field
    env: str  # its variable
    what: str  # for the schema: what is counted

    def per_minute(self, settings: GatewaySettings) -> int:
        return getattr(settings, self.setting)


UPLOADS = Limit("uploads", "rate_limit_uploads_per_min", "CTROPS_RATE_LIMIT_UPLOADS_PER_MIN",
                "uploads (files to score included)")
TRAININGS = Limit("trainings", "rate_limit_trainings_per_min", "CTROPS_RATE_LIMIT_TRAININGS_PER_MIN",
                  "training requests (retrains included)")


def check_storage_url(url: str) -> str:
    """The kind of store (``memory``, ``redis``, ``database``) a CTROPS_RATE_LIMIT_STORAGE value names.

    ValueError says what is wrong without repeating the value: it may carry a Redis password."""
    try:
        parsed = urllib.parse.urlsplit(url)
        port = parsed.port
    except ValueError:
        raise ValueError(f"not a storage URL: {STORAGE_HELP}") from None
    scheme = parsed.scheme
    if scheme in ("memory", "database"):
        if url != f"{scheme}://":
            raise ValueError(f"{scheme}:// takes nothing after it")
        return scheme
    if scheme in ("redis", "rediss"):
        if not parsed.hostname or port is None:
            raise ValueError(f"a Redis URL names its host and port: {scheme}://host:6379/0")
        if parsed.path not in ("", "/") and not parsed.path[1:].isdigit():
            raise ValueError(f"the path of a Redis URL is the database number: {scheme}://host:6379/0")
        if parsed.fragment:
            raise ValueError("a Redis URL has no #fragment")
        return "redis"
    raise ValueError(f"unknown storage {scheme + '://' if scheme else 'URL'}: {STORAGE_HELP}")


def describe_storage(url: str) -> str:
    """The store for a log line: kind and address, never the password."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme in ("redis", "rediss"):
        return f"{parsed.scheme}://{parsed.hostname}:{parsed.port}{parsed.path or '/0'}"
    return url


class RateLimits:
    """The per-minute limits in force and the store they count in; one per app, opened in its lifespan."""

    def __init__(self, storage: Storage, settings: GatewaySettings,
                 close: Callable[[], Awaitable[None]] | None = None) -> None:
        self.storage = storage
        self.limiter = MovingWindowRateLimiter(storage)
        self.items: dict[Limit, RateLimitItem] = {
            limit: RateLimitItemPerMinute(limit.per_minute(settings))
            for limit in (UPLOADS, TRAININGS) if limit.per_minute(settings) > 0
        }
        self._close = close

    async def hit(self, limit: Limit, who: str) -> int | None:
        """Count one request of ``who``: None when it is allowed, else the whole seconds (>= 1) until
        one would be. Raises ``limits.errors.StorageError`` when the store cannot be reached."""
        item = self.items.get(limit)
        if item is None:
            return None
        if await self.limiter.hit(item, limit.name, who):
            return None
        reset_at, _ = await self.limiter.get_window_stats(item, limit.name, who)
        return max(1, math.ceil(reset_at - time.time()))

    async def aclose(self) -> None:
        if self._close is not None:
            await self._close()


async def open_rate_limits(settings: GatewaySettings, engine: Engine) -> RateLimits:
    """The store CTROPS_RATE_LIMIT_STORAGE names, opened (``engine``: the gateway database, for database://)."""
    url = settings.rate_limit_storage.get_secret_value()
    kind = check_storage_url(url)
    prefix = settings.rate_limit_key_prefix
    close: Callable[[], Awaitable[None]] | None = None
    storage: Storage
    if kind == "redis":
        import redis.asyncio

        pool = redis.asyncio.ConnectionPool.from_url(url, socket_connect_timeout=STORE_TIMEOUT_S,
                                                     socket_timeout=STORE_TIMEOUT_S)
        storage = RedisStorage(f"async+{url}", wrap_exceptions=True, implementation="redispy", key_prefix=prefix,
                               connection_pool=pool)
        close = pool.aclose
    elif kind == "database":
        from .rate_limit_store import DatabaseStorage

        storage = await asyncio.to_thread(DatabaseStorage, engine, prefix)
    else:
        storage = MemoryStorage(wrap_exceptions=True)
    limits = RateLimits(storage, settings, close)
    where = describe_storage(url)
    if not await storage.check():
        log.warning("rate limits: the store %s cannot be reached now; uploads and trainings answer 503 until it "
                    "can (CTROPS_RATE_LIMIT_STORAGE)", where)
    else:
        log.info("rate limits: counted in %s (%s)", where,
                 ", ".join(f"{limit.name} {item.amount}/min" for limit, item in limits.items.items()) or "all off")
    return limits


# -- the dependencies ---------------------------------------------------------------------------------


async def _enforce(request: Request, limit: Limit) -> None:
    limits: RateLimits = request.app.state.rate_limits
    try:
        wait = await limits.hit(limit, client_key(request.scope))
    except StorageError as exc:
        log.warning("rate limits: the store cannot be reached (%s); %s %s refused with 503",
                    type(exc.storage_error).__name__, request.method, request.url.path)
        raise HTTPException(
            503, "The rate limit store cannot be reached (CTROPS_RATE_LIMIT_STORAGE), so the request was not "
                 f"served. Try again in {STORE_DOWN_RETRY_AFTER_S} s.",
            headers={"Retry-After": str(STORE_DOWN_RETRY_AFTER_S)},
        ) from None
    if wait is not None:
        raise HTTPException(
            429, f"Too many {limit.name} from this client: the limit is {limits.items[limit].amount} per minute. "
                 f"Try again in {wait} s.",
            headers={"Retry-After": str(wait)},
        )


async def limit_uploads(request: Request) -> None:
    """At most CTROPS_RATE_LIMIT_UPLOADS_PER_MIN uploads (files to score included) per client in any minute."""
    await _enforce(request, UPLOADS)


async def limit_trainings(request: Request) -> None:
    """At most CTROPS_RATE_LIMIT_TRAININGS_PER_MIN training requests (retrains included) per client in any minute."""
    await _enforce(request, TRAININGS)


UPLOAD_RATE = Depends(limit_uploads)
TRAINING_RATE = Depends(limit_trainings)
LIMIT_OF: dict[Callable[..., Awaitable[None]], Limit] = {limit_uploads: UPLOADS, limit_trainings: TRAININGS}
