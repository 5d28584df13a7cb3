"""Per-minute rate limits as route dependencies (rate_limits.py), counted in memory, in Redis or in
the gateway database (rate_limit_store.py).

- the moving window on every store: N hits in the window, the next refused (and not counted), the
  window's reset, then N again once it has moved on; N allowed exactly when two "replicas" (two
  store clients) hit one key at once;
- two gateway apps (replicas) sharing Redis, a SQLite file or PostgreSQL hold one limit between
  them: N requests allowed in all, the next refused with 429 + Retry-After on whichever replica
  it reaches; with memory:// each replica limits alone;
- a refused upload (or file to score) is answered before a byte of its body is read, and nothing
  of it reaches the store or the broker;
- a store that cannot be reached answers 503 + Retry-After; the setting is checked at start-up
  and its errors never echo it (a Redis URL may carry a password).

Redis is the local server (the root conftest's ``redis_url``), PostgreSQL the local one
(``postgres_url``); where either is missing these tests fail, they never skip. Each test uses its
own key prefix and removes its keys.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from limits import RateLimitItemPerSecond
from pydantic import ValidationError
from sqlalchemy import select

from ctrops_common.broker import free_port
from ctrops_common.db import make_engine
from ctrops_common.events import Topic
from ctrops_common.settings import describe_error
from ctrops_gateway.rate_limit_store import rate_limits_table
from ctrops_gateway.rate_limits import open_rate_limits
from ctrops_gateway.settings import GatewaySettings

pytestmark = pytest.mark.inmemory

UNKNOWN_FILE = "0" * 32
TRAIN = {"file_id": UNKNOWN_FILE, "config": {"epochs": 1}}  # allowed: 404 from the route (no such upload)


@pytest.fixture
def prefix() -> str:
    """This test's key prefix."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def redis_keys(redis_url: str, prefix: str) -> Iterator[str]:
    """The Redis URL; the keys of this test's prefix are removed after it."""
    yield redis_url
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(params=["memory", "redis", "sqlite", "postgres"])
def store(request, tmp_path: Path) -> dict[str, Any]:
    """Settings of one store, and the database URL its gateway uses."""
    kind = request.param
    database = f"sqlite:///{tmp_path / 'gateway.sqlite3'}"
    if kind == "memory":
        return {"kind": kind, "storage": "memory://", "database": database}
    if kind == "redis":
        return {"kind": kind, "storage": request.getfixturevalue("redis_keys"), "database": database}
    if kind == "postgres":
        database = request.getfixturevalue("postgres_url")  # a fresh database, dropped after the test
    return {"kind": kind, "storage": "database://", "database": database}


# -- the moving window on every store -----------------------------------------------------------------


async def open_store(store: dict[str, Any], prefix: str):
    settings = GatewaySettings(rate_limit_storage=store["storage"], rate_limit_key_prefix=prefix)
    return await open_rate_limits(settings, make_engine(store["database"]))


async def close(limits) -> None:
    await limits.aclose()
    engine = getattr(limits.storage, "engine", None)
    if engine is not None:
        engine.dispose()


async def test_the_moving_window_on_every_store(store, prefix):
    limits = await open_store(store, prefix)
    window = RateLimitItemPerSecond(3, 2)  # 3 in any 2 s
    limiter = limits.limiter
    try:
        started = time.time()
        assert [await limiter.hit(window, "uploads", "client:a") for _ in range(3)] == [True, True, True]
        last = time.time()
        assert not await limiter.hit(window, "uploads", "client:a")
        assert await limiter.hit(window, "uploads", "client:b")  # another client counts alone
        reset_at, remaining = await limiter.get_window_stats(window, "uploads", "client:a")
        assert remaining == 0
        assert started + 2 <= reset_at + 0.01 and reset_at <= last + 2.01  # the oldest hit, plus the window
        assert not await limiter.hit(window, "uploads", "client:a")  # refused hits are not counted ...
        await asyncio.sleep(last + 2.05 - time.time())
        # ... so once the first three are 2 s old, three more are allowed, and no more.
        assert [await limiter.hit(window, "uploads", "client:a") for _ in range(4)] == [True, True, True, False]
    finally:
        await close(limits)


@pytest.mark.parametrize("store", ["redis", "sqlite", "postgres"], indirect=True)
async def test_two_replicas_hitting_one_key_at_once_get_exactly_the_limit(store, prefix):
    replicas = [await open_store(store, prefix), await open_store(store, prefix)]  # two clients, two connections
    window = RateLimitItemPerSecond(7, 60)
    try:
        results = await asyncio.gather(*(replicas[i % 2].limiter.hit(window, "trainings", "client:burst")
                                          for i in range(20)))
        assert sum(results) == 7, results
        for replica in replicas:
            assert (await replica.limiter.get_window_stats(window, "trainings", "client:burst")).remaining == 0
    finally:
        for replica in replicas:
            await close(replica)


@pytest.mark.parametrize("store", ["sqlite", "postgres"], indirect=True)
async def test_the_database_store_forgets_windows_that_have_passed(store, prefix):
    limits = await open_store(store, prefix)
    engine = limits.storage.engine
    again = None
    try:
        assert await limits.limiter.hit(RateLimitItemPerSecond(1, 1), "uploads", "client:gone")
        await asyncio.sleep(1.1)
        again = await open_store(store, prefix)  # a new process prunes at its first hit
        assert await again.limiter.hit(RateLimitItemPerSecond(5, 60), "uploads", "client:here")
        with engine.connect() as conn:
            keys = conn.execute(select(rate_limits_table.c.key)).scalars().all()
        assert [k.split("/")[2] for k in keys] == ["client:here"], keys
        assert all(k.startswith(f"{prefix}:") for k in keys)
    finally:
        await close(limits)
        if again is not None:
            await close(again)


# -- two gateway replicas ---------------------------------------------------------------------------------


def replica_settings(store: dict[str, Any], prefix: str, monkeypatch: pytest.MonkeyPatch, **more: Any) -> dict:
    monkeypatch.setenv("CTROPS_DATABASE_URL", store["database"])  # both replicas: one database
    return {"rate_limit_storage": store["storage"], "rate_limit_key_prefix": prefix, **more}


def refused(response, limit: int) -> int:
    assert response.status_code == 429, response.text
    wait = int(response.headers["retry-after"])
    assert 1 <= wait <= 60
    assert response.json() == {"detail": f"Too many trainings from this client: the limit is {limit} per minute. "
                                         f"Try again in {wait} s."}
    return wait


@pytest.mark.parametrize("store", ["redis", "sqlite", "postgres"], indirect=True)
def test_two_replicas_sharing_the_store_hold_one_limit(store, prefix, memory_gateway_factory, monkeypatch):
    settings = replica_settings(store, prefix, monkeypatch, rate_limit_trainings_per_min=3)
    with memory_gateway_factory(**settings) as a, memory_gateway_factory(**settings) as b:
        first, second = a.client, b.client
        allowed = [first.post("/api/train", json=TRAIN), second.post("/api/train", json=TRAIN),
                   first.post("/api/train", json=TRAIN)]
        assert [r.status_code for r in allowed] == [404, 404, 404], [r.text for r in allowed]  # reached the route
        refused(second.post("/api/train", json=TRAIN), 3)  # the 4th, on the replica that served only one
        refused(first.post("/api/train", json=TRAIN), 3)
        # The refusal passes through each replica's audit middleware like any other.
        statuses = [e["status"] for e in second.get("/api/audit", params={"action": "train"}).json()["entries"]]
        assert statuses == [429, 429, 404, 404, 404]  # newest first; one database: both replicas' entries
        assert first.get("/api/train/runs").status_code == 200  # routes without the limit are not held up


def test_with_memory_each_replica_limits_alone(memory_gateway_factory, monkeypatch, tmp_path, prefix):
    store = {"kind": "memory", "storage": "memory://", "database": f"sqlite:///{tmp_path / 'gateway.sqlite3'}"}
    settings = replica_settings(store, prefix, monkeypatch, rate_limit_trainings_per_min=3)
    with memory_gateway_factory(**settings) as a, memory_gateway_factory(**settings) as b:
        for gateway in (a, b):
            answers = [gateway.client.post("/api/train", json=TRAIN).status_code for _ in range(3)]
            assert answers == [404, 404, 404]
            refused(gateway.client.post("/api/train", json=TRAIN), 3)


# -- before the body ----------------------------------------------------------------------------------------


def test_a_refused_upload_is_answered_before_its_body_is_read(memory_gateway_factory, memory_env):
    boundary = "limitsboundary"

    def multipart(name: str) -> bytes:
        return (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
                f"Content-Type: text/csv\r\n\r\nclicked,a\r\n1,2\r\n--{boundary}--\r\n").encode()

    pulled: list[str] = []

    def body(label: str, data: bytes) -> Iterator[bytes]:
        pulled.append(label)  # runs when the app first asks for the body (receive)
        yield data

    headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
    with memory_gateway_factory(rate_limit_uploads_per_min=1) as gateway:
        client = gateway.client
        # The one upload allowed this minute is read, and refused by the route for its file name.
        first = client.post("/api/upload", content=body("first", multipart("../ads.csv")), headers=headers)
        assert first.status_code == 400 and "plain name" in first.json()["detail"]
        assert pulled == ["first"]
        # The next is refused by its dependency before the handler asks for a byte of it.
        second = client.post("/api/upload", content=body("second", multipart("ads.csv")), headers=headers)
        assert second.status_code == 429, second.text
        assert second.json()["detail"].startswith("Too many uploads from this client: the limit is 1 per minute.")
        assert int(second.headers["retry-after"]) >= 1
        # A file to score is an upload: the same limit, the same refusal before the body.
        batch = client.post(f"/api/predict/{UNKNOWN_FILE}/batch", content=body("batch", multipart("ads.csv")),
                            headers=headers)
        assert batch.status_code == 429, batch.text
        assert pulled == ["first"]
        assert gateway.events(Topic.UPLOAD_RECEIVED) == []  # nothing went to ingest ...
    uploads = memory_env / "uploads"
    assert not uploads.exists() or not any(uploads.rglob("*"))  # ... and nothing reached the store


# -- the store down, the setting ----------------------------------------------------------------------------


def test_a_store_that_cannot_be_reached_answers_503(memory_gateway_factory, capsys):
    closed = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with memory_gateway_factory(rate_limit_storage=closed) as gateway:
        response = gateway.client.post("/api/train", json=TRAIN)
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "5"
        assert "rate limit store cannot be reached (CTROPS_RATE_LIMIT_STORAGE)" in response.json()["detail"]
        assert gateway.client.get("/api/train/runs").status_code == 200
    logged = capsys.readouterr().out  # the service's log lines (its runtime logs to stdout)
    assert "cannot be reached now; uploads and trainings answer 503" in logged  # said at start-up too
    assert "refused with 503" in logged


@pytest.mark.parametrize("value", ["redis://:s3cret-pw@cache", "redis://:s3cret-pw@cache:6379/zero",
                                   "memcached://:s3cret-pw@cache:11211", "memory://:s3cret-pw@x", "database://x",
                                   "s3cret-pw", ""])
def test_a_bad_storage_setting_stops_the_start_without_echoing_it(value):
    with pytest.raises(ValidationError) as info:
        GatewaySettings(rate_limit_storage=value)
    message = describe_error(GatewaySettings, info.value)
    assert "CTROPS_RATE_LIMIT_STORAGE='***'" in message
    assert "s3cret" not in message and ("memory://" in message or "Redis URL" in message or "takes nothing" in message)


@pytest.mark.parametrize("value", ["memory://", "database://", "redis://127.0.0.1:6379/0", "redis://cache:6379",
                                   "rediss://:pw@cache.example:6380/2"])
def test_good_storage_settings_pass(value):
    assert GatewaySettings(rate_limit_storage=value).rate_limit_storage.get_secret_value() == value
