"""The gateway database as the store of the per-minute rate limits (``CTROPS_RATE_LIMIT_STORAGE=database://``).

A storage for the ``limits`` library's moving window, the one strategy ``rate_limits.py`` uses,
on the table ``gateway_rate_limits`` (ctrops_gateway/migrations, revision 0002) of the gateway's
own database (``CTROPS_DATABASE_URL``): one row per limit key, holding the times of the hits
still inside the window, newest first. With PostgreSQL every gateway replica counts in the same
rows, so a client's limit holds whichever replica it reaches, with no other service to run.

A hit is one short transaction that starts with an upsert of its key's row (``INSERT ... ON
CONFLICT DO UPDATE ... RETURNING``, PostgreSQL and SQLite 3.35+): on PostgreSQL that locks the
row until the commit, on SQLite it takes the database's write lock, so a hit on the same key from
another replica waits for it and then sees it. The check and the claim are one step: a burst
spread over replicas cannot slip past the limit. Hit times are this replica's clock (as with
Redis, where ``limits`` sends them too): keep the replicas' clocks in sync (NTP).

Rows whose hits have all left the window are deleted, at most once a minute per process. The
database calls run in worker threads (``asyncio.to_thread``): the event loop never waits on them.
"""

from __future__ import annotations

import asyncio
import hashlib
import time

from limits.aio.storage import MovingWindowSupport, Storage
from sqlalchemy import Column, Engine, Float, Index, MetaData, String, Table, Text, delete, select, update
from sqlalchemy.exc import SQLAlchemyError

from ctrops_common.migrate import Schema, upgrade

PRUNE_EVERY_S = 60.0
KEY_CHARS = 512  # a longer key (a very long client id) is stored as its SHA-256

# The table as the queries see it; ctrops_gateway/migrations makes it (tests/test_migrations.py compares the two).
metadata = MetaData()

rate_limits_table = Table(
    "gateway_rate_limits",
    metadata,
    Column("key", String(KEY_CHARS), primary_key=True),
    Column("hits", Text, nullable=False),  # unix times of the hits in the window, newest first, space-separated
    Column("expires_at", Float, nullable=False),  # the newest hit plus the window: the row is empty after it
    Index("ix_gateway_rate_limits_expires_at", "expires_at"),
)


def _decode(hits: str) -> list[float]:
    return [float(t) for t in hits.split()]


def _encode(hits: list[float]) -> str:
    return " ".join(repr(t) for t in hits)


class DatabaseStorage(Storage, MovingWindowSupport):
    """``limits`` storage for the moving window on the gateway database (SQLite or PostgreSQL).

    Only the moving window is implemented: the fixed-window calls (``incr``, ``get``,
    ``get_expiry``) raise ``NotImplementedError``, since nothing here uses that strategy."""

    STORAGE_SCHEME = None  # built by rate_limits.open_storage with the app's engine, not from a URI

    def __init__(self, engine: Engine, key_prefix: str, wrap_exceptions: bool = True) -> None:
        if engine.dialect.name not in ("sqlite", "postgresql"):
            raise ValueError(f"CTROPS_RATE_LIMIT_STORAGE=database:// needs SQLite or PostgreSQL, not "
                             f"{engine.dialect.name}")
        super().__init__(None, wrap_exceptions=wrap_exceptions)
        self.engine = engine
        self.key_prefix = key_prefix
        self._pruned_at = 0.0
        upgrade(engine, Schema.of_service("gateway"))  # ctrops_gateway/migrations (done already by the read model)
        if engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        self._insert = insert

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return SQLAlchemyError

    def _key(self, key: str) -> str:
        full = f"{self.key_prefix}:{key}"
        if len(full) <= KEY_CHARS:
            return full
        return f"{self.key_prefix}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"

    # -- the moving window ---------------------------------------------------------------------

    async def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        if amount > limit:
            return False
        allowed = await asyncio.to_thread(self._acquire, self._key(key), limit, expiry, amount)
        if time.time() - self._pruned_at >= PRUNE_EVERY_S:
            await asyncio.to_thread(self._prune)
        return allowed

    async def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        """(time of the oldest hit in the window, hits in the window); (now, 0) when empty."""
        return await asyncio.to_thread(self._window, self._key(key), expiry)

    def _acquire(self, key: str, limit: int, expiry: int, amount: int) -> bool:
        table = rate_limits_table
        with self.engine.begin() as conn:
            now = time.time()
            # First statement of the transaction: locks the row (PostgreSQL) / the database (SQLite).
            upsert = self._insert(table).values(key=key, hits="", expires_at=now)
            upsert = upsert.on_conflict_do_update(index_elements=[table.c.key],
                                                  set_={"expires_at": table.c.expires_at})
            stored = conn.execute(upsert.returning(table.c.hits)).scalar_one()
            now = time.time()  # the lock may have been waited for
            live = sorted((t for t in _decode(stored) if t >= now - expiry), reverse=True)
            allowed = len(live) + amount <= limit
            if allowed:
                live = [now] * amount + live
            live = live[:limit]
            conn.execute(update(table).where(table.c.key == key).values(
                hits=_encode(live), expires_at=(live[0] if live else now) + expiry))
        return allowed

    def _window(self, key: str, expiry: int) -> tuple[float, int]:
        with self.engine.connect() as conn:
            stored = conn.execute(select(rate_limits_table.c.hits).where(rate_limits_table.c.key == key)).scalar()
        now = time.time()
        live = [t for t in _decode(stored or "") if t >= now - expiry]
        return (min(live), len(live)) if live else (now, 0)

    def _prune(self) -> int:
        self._pruned_at = time.time()
        with self.engine.begin() as conn:
            return conn.execute(delete(rate_limits_table).where(rate_limits_table.c.expires_at < self._pruned_at)).rowcount

    # -- the rest of the storage interface -------------------------------------------------------

    async def clear(self, key: str) -> None:
        def run() -> None:
            with self.engine.begin() as conn:
                conn.execute(delete(rate_limits_table).where(rate_limits_table.c.key == self._key(key)))

        await asyncio.to_thread(run)

    async def reset(self) -> int | None:
        """Forget every key of this prefix."""
        def run() -> int:
            with self.engine.begin() as conn:
                return conn.execute(delete(rate_limits_table).where(
                    rate_limits_table.c.key.startswith(f"{self.key_prefix}:", autoescape=True))).rowcount

        return await asyncio.to_thread(run)

    async def check(self) -> bool:
        def run() -> bool:
            with self.engine.connect() as conn:
                conn.execute(select(1))
            return True

        try:
            return await asyncio.to_thread(run)
        except SQLAlchemyError:
            return False

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        raise NotImplementedError("the database rate limit store keeps moving windows only")

    async def get(self, key: str) -> int:
        raise NotImplementedError("the database rate limit store keeps moving windows only")

    async def get_expiry(self, key: str) -> float:
        raise NotImplementedError("the database rate limit store keeps moving windows only")
