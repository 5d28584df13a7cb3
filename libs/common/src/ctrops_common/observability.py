"""JSON logs that carry run/event ids, Prometheus metrics, and the /healthz /readyz /metrics server."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import sys
import traceback
from collections.abc import Callable
from datetime import datetime, timezone

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

run_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("run_id", default=None)
event_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("event_id", default=None)

# Metric names follow Prometheus conventions: counters end in _total, durations in _seconds.
# Labels are bounded sets (service, topic, outcome), never ids. Base units only (seconds,
# bytes, ratios); the label combinations a service knows at start are created at 0.
EVENTS_HANDLED = Counter(
    "ctrops_events_handled_total", "Events handled by a consumer", ["service", "topic", "outcome"]
)
EVENTS_PUBLISHED = Counter("ctrops_events_published_total", "Events published", ["service", "topic"])
EVENT_HANDLE_SECONDS = Histogram(
    "ctrops_event_handle_seconds",
    "Time spent in an event handler",
    ["service", "topic"],
    buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 1200),
)
EVENTS_IN_FLIGHT = Gauge("ctrops_events_in_flight", "Events being handled now", ["service"])
DEAD_LETTERS = Counter("ctrops_dead_letters_total", "Events sent to the dead-letter topic", ["service", "topic"])
HANDLED_OUTCOMES = ("ok", "dead_letter", "duplicate")


def init_consumer_metrics(service: str, topic: str) -> None:
    """Create the counters of a topic a service consumes at 0 when it subscribes.

    A counter child that only appears on its first increment is born at 1, and
    ``increase()`` sees no change from a series that did not exist: the first dead letter
    would never fire ``CtropsDeadLetters``. Born at 0, the first one is a 0 -> 1 step.
    """
    DEAD_LETTERS.labels(service, topic)
    for outcome in HANDLED_OUTCOMES:
        EVENTS_HANDLED.labels(service, topic, outcome)
    EVENT_HANDLE_SECONDS.labels(service, topic)


SERVICE_UP = Gauge("ctrops_service_up", "1 while the service runs", ["service"])
SERVICE_READY = Gauge("ctrops_service_ready", "1 while the service is ready", ["service"])


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if (run_id := run_id_var.get()) is not None:
            entry["run_id"] = run_id
        if (event_id := event_id_var.get()) is not None:
            entry["event_id"] = event_id
        if record.exc_info:
            entry["stack"] = "".join(traceback.format_exception(*record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


class PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ids = " ".join(f"{k}={v}" for k, v in (("run", run_id_var.get()), ("event", event_id_var.get())) if v)
        line = f"{record.levelname:<7} {record.name}: {record.getMessage()}" + (f" [{ids}]" if ids else "")
        if record.exc_info:
            line += "\n" + "".join(traceback.format_exception(*record.exc_info))
        return line


QUIETED_LOGGERS = ("aiokafka", "kafka", "uvicorn.access", "httpx", "alembic")  # WARNING and above only


def setup_logging(service: str, level: str = "INFO", json_lines: bool = True) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service) if json_lines else PlainFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in QUIETED_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def metrics_payload() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST


async def serve_health(
    host: str,
    port: int,
    is_ready: Callable[[], bool],
    stop: asyncio.Event,
) -> None:
    """A tiny HTTP server for probes and scraping; runs until ``stop`` is set."""
    await serve_until(await open_health_server(host, port, is_ready), stop)


async def serve_until(server: asyncio.Server, stop: asyncio.Event) -> None:
    async with server:
        await stop.wait()


async def open_health_server(host: str, port: int, is_ready: Callable[[], bool]) -> asyncio.Server:
    """The probe server, bound and listening: an OSError here (the port is taken) reaches the caller at
    once, so a service never says it is up without its health port.

    Plain asyncio keeps the worker services free of a web framework they do not need.
    """

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), timeout=5)
            while (await asyncio.wait_for(reader.readline(), timeout=5)) not in (b"\r\n", b"\n", b""):
                pass
            parts = request_line.decode("latin-1").split()
            path = parts[1].split("?")[0] if len(parts) >= 2 else "/"
            if path == "/healthz":
                status, body, ctype = 200, b'{"status":"ok"}', "application/json"
            elif path == "/readyz":
                ready = is_ready()
                status = 200 if ready else 503
                body = b'{"status":"ready"}' if ready else b'{"status":"starting"}'
                ctype = "application/json"
            elif path == "/metrics":
                body, ctype = metrics_payload()
                status = 200
            else:
                status, body, ctype = 404, b'{"detail":"not found"}', "application/json"
            reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
            head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            writer.write(head.encode() + body)
            await writer.drain()
        except (asyncio.TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)
