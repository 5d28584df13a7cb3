"""The gateway in-process on the in-memory bus: the fast tier's read-model and WebSocket tests.

``memory_gateway`` is ``gateway_client`` (the root conftest: the app under FastAPI's TestClient,
lifespan, HTTP and WebSockets) with ``create_app(bus_factory=broker.bus_factory)``: no broker to
start, no group to join, and ``publish`` returns once the gateway's consumer has handled what was
published (``InMemoryBroker.settle`` on the app's event loop), so a test asserts at once instead of
polling. The bootstrap servers point at a closed port: nothing in this tier can reach for Kafka.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from ctrops_common.events import Event, Topic
from ctrops_common.memory_bus import InMemoryBroker, InMemoryBus
from ctrops_common.testing import root_logging_kept


class MemoryGateway:
    def __init__(self, client: Any, broker: InMemoryBroker) -> None:
        self.client = client
        self.broker = broker
        self._producer: InMemoryBus | None = None

    @property
    def state(self) -> Any:
        return self.client.app.state.gateway

    def publish(self, *items: tuple) -> list[Event[Any]]:
        """Publish ``(topic, payload)`` or ``(topic, payload, correlation_id)`` items as the services would
        (``ctrops_common.testing.publish_events``' convention), then wait until the gateway handled them."""
        return self.client.portal.call(self._publish, items)

    async def _publish(self, items: tuple[tuple, ...]) -> list[Event[Any]]:
        if self._producer is None:
            self._producer = InMemoryBus(self.state.settings, "test-producer", broker=self.broker)
            await self._producer.start()
        sent = []
        for topic, payload, *rest in items:
            correlation_id = rest[0] if rest else getattr(payload, "run_id", None) or getattr(payload, "file_id", None)
            sent.append(await self._producer.publish(topic, payload, correlation_id=correlation_id))
        await self.broker.settle()
        return sent

    def settle(self) -> None:
        self.client.portal.call(self.broker.settle)

    def events(self, topic: Topic) -> list[Event[Any]]:
        """What went out on ``topic`` (the gateway's own publications included), settled first."""
        self.settle()
        return self.broker.events(topic)


@pytest.fixture
def memory_env(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's own data dir and topic prefix; the bootstrap servers on a port where no broker is."""
    monkeypatch.setenv("CTROPS_TOPIC_PREFIX", f"m{uuid.uuid4().hex[:10]}.")
    monkeypatch.setenv("CTROPS_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")  # discard port: never a broker
    monkeypatch.setenv("CTROPS_HEARTBEAT_INTERVAL_S", "1")
    monkeypatch.setenv("CTROPS_SERVICE_TIMEOUT_S", "5")
    monkeypatch.setenv("CTROPS_LOG_JSON", "false")
    return data_dir


@pytest.fixture
def memory_gateway_factory(memory_env: Path) -> Callable[..., AbstractContextManager[MemoryGateway]]:
    """``with memory_gateway_factory(broker) as gw:`` one life of the gateway on ``broker`` (a new
    in-memory broker when none is given); several lives in one test share its database. Keyword
    arguments are settings of that life (``rate_limit_storage="redis://..."``); two lives at once
    are two gateway replicas."""
    from fastapi.testclient import TestClient

    from ctrops_gateway.app import create_app
    from ctrops_gateway.settings import GatewaySettings

    @contextmanager
    def run(broker: InMemoryBroker | None = None, **settings: Any) -> Iterator[MemoryGateway]:
        broker = broker if broker is not None else InMemoryBroker()
        app = create_app(GatewaySettings(consumer_group="gateway-memory", **settings), bus_factory=broker.bus_factory)
        with root_logging_kept(), TestClient(app) as client:  # the app's runtime sets up the process's logging
            deadline = time.monotonic() + 10
            while client.get("/readyz").status_code != 200:
                assert time.monotonic() < deadline, "the gateway's in-memory consumer did not start"
                time.sleep(0.01)
            yield MemoryGateway(client, broker)

    return run


@pytest.fixture
def memory_gateway(memory_gateway_factory) -> Iterator[MemoryGateway]:
    with memory_gateway_factory() as gateway:
        yield gateway


@pytest.fixture
def unlimited_uploads(monkeypatch: pytest.MonkeyPatch) -> None:
    """For a test that sends more uploads than the per-client rate limit allows (limits are tested apart).
    Ask for it before ``gateway_client``: the gateway reads its settings when the fixture builds it."""
    monkeypatch.setenv("CTROPS_RATE_LIMIT_UPLOADS_PER_MIN", "0")
