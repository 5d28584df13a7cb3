"""Test-session fixtures shared by every package: one real embedded broker per session."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

# Before any ctrops_common.events import: our payloads refuse undeclared fields in tests (events.Payload).
# Services the tests start as processes inherit it.
os.environ.setdefault("CTROPS_STRICT_PAYLOADS", "1")
# `make test` runs five test processes on two cores, each starting service processes: a second torch
# or OpenMP thread per process only contends for a core (measured on one quality test: 45 s of CPU and
# 72 s of wall time with the default threads, 37 s and 42 s with one). So one thread each, idle OpenMP
# threads sleep instead of spinning, and the trainers and explainers the tests start train and score on
# one thread. Before torch is imported anywhere in this process; services inherit the variables.
for _name, _value in (("OMP_NUM_THREADS", "1"), ("MKL_NUM_THREADS", "1"), ("OMP_WAIT_POLICY", "PASSIVE"),
                      ("CTROPS_TRAINER_THREADS", "1"), ("CTROPS_EXPLAINER_TORCH_THREADS", "1")):
    os.environ.setdefault(_name, _value)

from ctrops_common.broker import EmbeddedBroker, free_port  # noqa: E402

# Every idle consumer asks the embedded broker for data once per fetch max wait (tansu answers a parked
# fetch only when the wait ends). At the default 100 ms an idle seven-service stack costs the broker and
# the services a quarter of a core; at 250 ms about half that, for about 75 ms more per hop (broker round
# trip p50 129 ms against 53 ms, bench/backbone.py). `make test` is bound by CPU, not by hops. Measured
# again on 2026-12-06, an idle stack for 60 s (the gateway and the monitor handle every heartbeat): 15.2
# CPU-s at 250 ms and a 1 s heartbeat, 10.5 at 500 ms and 2 s (the broker 6.8 -> 4.4, the gateway 2.7 ->
# 1.8, the monitor 2.6 -> 1.6). The services' timeouts (5 s) still span two heartbeats and more.
TEST_FETCH_MAX_WAIT_MS = "500"
TEST_HEARTBEAT_INTERVAL_S = "2"


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real tansu broker for the whole session (or CTROPS_TEST_KAFKA if set)."""
    external = os.environ.get("CTROPS_TEST_KAFKA")
    if external:
        os.environ["CTROPS_KAFKA_BOOTSTRAP_SERVERS"] = external
        yield external
        return
    log = tmp_path_factory.mktemp("broker") / "broker.log"
    broker = EmbeddedBroker(free_port(), log_file=log).start()
    os.environ["CTROPS_KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap_servers
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


@pytest.fixture(autouse=True)
def mlflow_uris_stay_in_their_test():
    """``mlflow.set_tracking_uri`` / ``set_registry_uri`` (the trainer's tracking and the explainer's
    model loading call them) also export MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI, which every
    service process a later test starts would inherit: its MLflow would write to this test's store."""
    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    saved = {name: os.environ.get(name) for name in names}
    yield
    import sys

    if "mlflow" in sys.modules:
        from mlflow.tracking._model_registry import utils as registry_utils
        from mlflow.tracking._tracking_service import utils as tracking_utils

        tracking_utils._tracking_uri = None  # the process-wide URIs MLflow keeps beside the variables
        registry_utils._registry_uri = None
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh file store root, exported so settings and child processes use it."""
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("CTROPS_DATA_DIR", str(root))
    return root


@pytest.fixture
def platform_env(kafka_bootstrap: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch, request) -> dict[str, str]:
    """Isolate one test: its own topics (a unique prefix) and its own file store and databases."""
    import uuid

    prefix = f"t{uuid.uuid4().hex[:10]}."
    monkeypatch.setenv("CTROPS_TOPIC_PREFIX", prefix)
    monkeypatch.setenv("CTROPS_HEARTBEAT_INTERVAL_S", TEST_HEARTBEAT_INTERVAL_S)
    monkeypatch.setenv("CTROPS_SERVICE_TIMEOUT_S", "5")
    # The embedded broker holds a new group's first join for half the session timeout (measured: 5 s at
    # the default 10 s, 3 s at 6 s); every service and in-process gateway a test starts joins a group.
    # 6 s as in the end-to-end stack (tests/e2e/conftest.py); a killed consumer's partitions move sooner.
    monkeypatch.setenv("CTROPS_CONSUMER_SESSION_TIMEOUT_S", "6")
    monkeypatch.setenv("CTROPS_CONSUMER_FETCH_MAX_WAIT_MS", TEST_FETCH_MAX_WAIT_MS)
    monkeypatch.setenv("CTROPS_LOG_JSON", "false")
    from ctrops_common.broker import free_port

    scorer_api = free_port()  # a scorer this test starts serves its prediction API here, the gateway calls it here
    monkeypatch.setenv("CTROPS_SCORER_API_PORT", str(scorer_api))
    monkeypatch.setenv("CTROPS_SCORER_URL", f"http://127.0.0.1:{scorer_api}")
    return {"prefix": prefix, "data_dir": str(data_dir), "bootstrap": kafka_bootstrap}


@pytest.fixture
def start_service(platform_env: dict[str, str], tmp_path: Path):
    """Factory: start a service as a real process in this test's environment; stopped after the test."""
    from ctrops_common.testing import ServiceProcess, start_service as _start, stop_all

    started: list[ServiceProcess] = []

    def start(name: str, extra_env: dict[str, str] | None = None, wait: bool = True, **kwargs) -> ServiceProcess:
        service = _start(name, tmp_path / "logs", extra_env, wait=False, **kwargs)
        started.append(service)  # before waiting: one that never gets ready is stopped too, not left running
        return service.wait_ready() if wait else service

    yield start
    stop_all(started)  # their orderly stops overlap


@pytest.fixture
def gateway_client(platform_env: dict[str, str]):
    """The gateway app in-process (FastAPI TestClient: lifespan, HTTP and WebSockets), on the real broker."""
    from fastapi.testclient import TestClient

    from ctrops_gateway.app import create_app
    from ctrops_gateway.settings import GatewaySettings

    app = create_app(GatewaySettings(consumer_group=f"gateway-{platform_env['prefix']}"))
    with TestClient(app) as client:
        deadline = time.monotonic() + 30
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "gateway consumer did not join its group"
            time.sleep(0.1)
        yield client


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database on the local server (CTROPS_TEST_POSTGRES to point elsewhere)."""
    import uuid

    from sqlalchemy import create_engine, text

    server = os.environ.get("CTROPS_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    name = f"ctrops_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def redis_url() -> str:
    """The local Redis server (CTROPS_TEST_REDIS to point elsewhere). A test that needs it fails where
    it cannot be reached, never skips: CI's machine runs one (.ci/run starts it if it stopped)."""
    import redis

    url = os.environ.get("CTROPS_TEST_REDIS", "redis://127.0.0.1:6379/0")
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {url} cannot be reached ({exc}): start it (redis-server --daemonize yes --port 6379 "
                    "--save '' --appendonly no) or set CTROPS_TEST_REDIS")
    finally:
        client.close()
    return url


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest test files first. ``make test`` hands whole files to its test processes in this order
    (pytest-xdist ``--dist loadfile --no-loadscope-reorder``), so a long file never starts last while
    the other processes sit idle. The seconds come from tests/durations.json (scripts/test_durations.py
    writes it from a run). Only the order changes: every collected test still runs."""
    import json

    from ctrops_common.testing import longest_files_first

    durations = Path(__file__).parent / "tests" / "durations.json"
    if durations.exists():
        items[:] = longest_files_first(items, json.loads(durations.read_text()))
