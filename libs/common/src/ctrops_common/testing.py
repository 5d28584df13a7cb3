"""Helpers for tests that run services as real processes against the real broker."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TypeVar

from .broker import free_port
from .stack import is_ready

T = TypeVar("T")


@dataclass
class ServiceProcess:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    env: dict[str, str]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def ready(self) -> bool:
        return is_ready(self.port)

    def wait_ready(self, timeout_s: float = 90) -> ServiceProcess:
        deadline = time.monotonic() + timeout_s
        while not self.ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.process.returncode}):\n{self.log()[-4000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready in {timeout_s}s:\n{self.log()[-4000:]}")
            time.sleep(0.2)
        return self

    def kill9(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def terminate(self) -> None:
        """Ask for an orderly stop (SIGTERM) without waiting for it."""
        if self.process.poll() is None:
            self.process.terminate()

    def wait_stopped(self, timeout_s: float = 20) -> int:
        """Wait for the process to end; SIGKILL after ``timeout_s``."""
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return self.process.returncode

    def stop(self, timeout_s: float = 20) -> int:
        self.terminate()
        return self.wait_stopped(timeout_s)


def stop_all(services: list[ServiceProcess], timeout_s: float = 20) -> None:
    """Stop several services at once: every one is asked first, then each is waited for, so the
    orderly stops (leaving the consumer group, closing the bus) overlap instead of adding up."""
    for service in services:
        service.terminate()
    for service in services:
        service.wait_stopped(timeout_s)


def start_service(name: str, log_dir: Path, extra_env: dict[str, str] | None = None,
                  module: str | None = None, wait: bool = True) -> ServiceProcess:
    """Start ``python -m ctrops_<name>`` with the current environment (broker, data dir, prefix)."""
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "CTROPS_LOG_JSON": "false", "OMP_WAIT_POLICY": "PASSIVE",
           **(extra_env or {})}
    env["CTROPS_GATEWAY_PORT" if name == "gateway" else "CTROPS_HTTP_PORT"] = str(port)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}-{port}.log"
    with open(log_path, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", module or f"ctrops_{name}"], stdout=out,
                                   stderr=subprocess.STDOUT, env=env)
    service = ServiceProcess(name, process, port, log_path, env)
    return service.wait_ready() if wait else service


def load_script(path: Path) -> ModuleType:
    """A repository script (``scripts/*.py``, not part of a package) loaded as a module, for its tests."""
    spec = importlib.util.spec_from_file_location(f"ctrops_script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def longest_files_first(items: Sequence[T], seconds: Mapping[str, float]) -> list[T]:
    """Test items (anything with a pytest ``nodeid``) with the files that take longest first.

    ``seconds`` is each file's measured time (tests/durations.json). Files it does not list come after
    those it does, in the order collected; a file's tests stay together and keep their order.
    """
    first_seen: dict[str, int] = {}
    for index, item in enumerate(items):
        first_seen.setdefault(item.nodeid.split("::")[0], index)

    def cost(item: T) -> tuple[float, int]:
        name = item.nodeid.split("::")[0]
        return -seconds.get(name, 0.0), first_seen[name]

    return sorted(items, key=cost)  # stable


async def read_events(topic, count: int = 1, timeout_s: float = 30, predicate=None) -> list:
    """Read events of ``topic`` from the beginning (no group) until ``count`` match."""
    import asyncio

    from aiokafka import AIOKafkaConsumer, TopicPartition

    from .events import decode_event
    from .settings import CommonSettings

    settings = CommonSettings()
    name = settings.topic_prefix + topic.value
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    found = []
    try:
        partitions = consumer.partitions_for_topic(name)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while partitions is None:
            await consumer._client.force_metadata_update()  # topic may be created a moment later
            partitions = consumer.partitions_for_topic(name)
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"topic {name} does not exist")
            await asyncio.sleep(0.2)
        tps = [TopicPartition(name, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while len(found) < count:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(f"saw {len(found)} of {count} events on {name}", found)
            batch = await consumer.getmany(timeout_ms=int(min(remaining, 1) * 1000))
            for records in batch.values():
                for record in records:
                    event = decode_event(topic.value, record.value)
                    if predicate is None or predicate(event):
                        found.append(event)
    finally:
        await consumer.stop()
    return found


def publish_events(*items: tuple) -> list:
    """Publish ``(topic, payload)`` or ``(topic, payload, correlation_id)`` items as a service would.

    The correlation id defaults to the payload's ``run_id`` (or ``file_id``), the bus convention.
    """
    import asyncio

    from .bus import Bus
    from .settings import CommonSettings

    async def go() -> list:
        bus = Bus(CommonSettings(), "test-producer")
        await bus.start()
        try:
            sent = []
            for topic, payload, *rest in items:
                correlation_id = rest[0] if rest else getattr(payload, "run_id", None) or getattr(payload, "file_id", None)
                sent.append(await bus.publish(topic, payload, correlation_id=correlation_id))
            return sent
        finally:
            await bus.stop()

    return asyncio.run(go())


def wait_for(fetch, predicate, timeout_s: float = 30):
    """Call ``fetch()`` until ``predicate`` holds for its value; fail with the last value after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = fetch()
        if predicate(value):
            return value
        if time.monotonic() >= deadline:
            shown = f"{value.status_code} {value.text[:500]}" if hasattr(value, "status_code") else repr(value)[:2000]
            raise AssertionError(f"never matched: {shown}")
        time.sleep(0.2)


async def until(predicate, what: str, timeout_s: float = 30, interval_s: float = 0.02):
    """``wait_for`` on a running event loop: poll ``predicate()`` (the loop keeps running the service under
    test between polls) and return its first truthy value; fail naming ``what`` after ``timeout_s``."""
    import asyncio

    deadline = time.monotonic() + timeout_s
    while not (result := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(interval_s)
    return result


def wait_recorded(views, topic, run_id: str, count: int = 1, timeout_s: float = 30) -> list:
    """Wait until a gateway's read model (``app.state.gateway.views``) holds ``count`` events of ``topic`` for a run."""
    return wait_for(lambda: views.events(topic, correlation_id=run_id), lambda found: len(found) >= count, timeout_s)


def ws_receive(ws, timeout_s: float) -> dict | None:
    """The next JSON message of a Starlette ``TestClient`` WebSocket, or None after ``timeout_s``."""
    import json

    import anyio

    async def next_message():
        with anyio.move_on_after(timeout_s):
            return await ws._send_rx.receive()
        return None

    message = ws.portal.call(next_message)
    if message is None:
        return None
    assert message["type"] == "websocket.send", f"socket closed: {message}"
    return json.loads(message["text"])


def ws_until_end(ws, timeout_s: float = 30) -> list[dict]:
    """Every message of a /ws/training stream up to and including ``training_complete``/``training_failed``."""
    messages: list[dict] = []
    deadline = time.monotonic() + timeout_s
    while not messages or messages[-1]["type"] not in ("training_complete", "training_failed"):
        message = ws_receive(ws, max(0.5, deadline - time.monotonic()))
        assert message is not None, f"no end within {timeout_s}s: {messages}"
        messages.append(message)
    return messages


@contextmanager
def root_logging_kept() -> Iterator[None]:
    """A ``ServiceRuntime`` built inside the test process (the in-memory tier) calls ``setup_logging``,
    which replaces the root logger's handlers and level: right for a service's process, a leak in a
    test session (a later test would see INFO records it never asked for). Puts them back after."""
    import logging

    from .observability import QUIETED_LOGGERS

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    quieted = {name: logging.getLogger(name).level for name in QUIETED_LOGGERS}
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, old in quieted.items():
            logging.getLogger(name).setLevel(old)
