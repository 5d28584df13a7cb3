"""The live performance view: what /ws/performance pushes and the dashboards read.

Sources, all from events (the read model) or this process:
- model metrics: the latest ``training.done`` (the same answer as /api/performance/latest);
- system health and the platform-wide p95 response time: the latest ``monitor.snapshot``
  while it is fresh; without a monitor, a local estimate from heartbeats and this
  gateway's own traffic, marked ``source: "gateway"``;
- alerts: ``monitor.alert`` events (one per incident state change);
- error logs: ``service.error`` events.

Pushes on the hub channel ``performance`` (every connected client gets every message):
``metrics_update`` + ``system_health`` right after accept and every
``ws_performance_interval_s``; ``metrics_update`` at once when a new run's snapshot
arrives; ``performance_alert`` once per incident; ``alert_resolved`` when it ends;
``error_log`` per service error.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect

from ctrops_common.events import (
    ModelMetrics,
    Event,
    MonitorAlert,
    MonitorSnapshot,
    PeriodEvidence,
    ServiceError,
    Topic,
    TrainingDone,
)
from ctrops_common.numbers import finite as finite_or
from ctrops_common.service import PLATFORM_SERVICES
from ctrops_common.storage import is_id

from .state import GatewayState
from .views import ReadModel, StoredEvent

log = logging.getLogger(__name__)

CHANNEL = "performance"
SERVICES = list(PLATFORM_SERVICES)
# Alerts and errors older than this are history (e.g. replayed into a new read model): not pushed live.
LIVE_AGE = timedelta(minutes=5)
NOTE = (
    "accuracy/precision/recall/f1 are at the stated decision threshold; with ~2% clicks a constant "
    "'no click' model scores ~98% accuracy, so judge the model by auc and ap (and logloss, calibration)."
)


def finite(value: Any, default: float | None = 0.0) -> float | None:
    """A JSON-safe number for the dashboards: NaN, infinities and junk become ``default`` (0 unless given)."""
    return finite_or(value, default)


def percent(value: Any) -> float:
    return round(min(100.0, max(0.0, finite(value) or 0.0)), 2)


# -- reading the model --------------------------------------------------------------------


def find_run_event(views: ReadModel, topic: Topic, run_id: str) -> StoredEvent | None:
    """The newest event of ``topic`` for ``run_id``: run events carry it as correlation id (docs/events.md)."""
    return views.latest(topic, correlation_id=run_id)


def resolve_done(views: ReadModel, run_id: str) -> StoredEvent | None:
    """``latest`` or a run id -> its training.done event (None: unknown or not finished)."""
    if run_id == "latest":
        return views.latest(Topic.TRAINING_DONE)
    if not is_id(run_id):
        return None
    return find_run_event(views, Topic.TRAINING_DONE, run_id)


def fresh_snapshot(views: ReadModel, max_age_s: float) -> StoredEvent | None:
    snapshot = views.latest(Topic.MONITOR_SNAPSHOT)
    if snapshot is None or datetime.now(timezone.utc) - snapshot.time > timedelta(seconds=max_age_s):
        return None
    return snapshot


@dataclass(frozen=True)
class FiringAlert:
    """An open incident: the alert its newest message carried (state 'firing') and that message's time."""

    alert: MonitorAlert
    since: datetime


def open_alerts(views: ReadModel) -> list[FiringAlert]:
    """Incidents whose newest message is 'firing', the high ones first, then oldest first."""
    newest: dict[str, StoredEvent] = {}
    for event in views.events(Topic.MONITOR_ALERT):
        newest[event.typed(MonitorAlert).alert_id] = event
    firing = [FiringAlert(e.typed(MonitorAlert), e.time) for e in newest.values()
              if e.typed(MonitorAlert).state == "firing"]
    return sorted(firing, key=lambda a: (a.alert.severity != "high", a.since))


def recent_errors(views: ReadModel, limit: int = 20) -> list[dict[str, Any]]:
    return [error_entry(e.payload, e.time) for e in views.events(Topic.SERVICE_ERROR, newest_first=True, limit=limit)]


def error_entry(error: ServiceError, when: datetime) -> dict[str, Any]:
    return {
        "level": error.level,
        "message": f"[{error.service}] {error.message}",
        "timestamp": when.isoformat(),
        "stack": error.stack,
        "service": error.service,
        "run_id": error.run_id,
    }


# -- the views ------------------------------------------------------------------------------


# The contract's keys of /api/performance and metrics_update: numbers, 0 when unknown (the others are null).
CONTRACT_NUMBERS = ("accuracy", "precision", "recall", "f1_score", "f1Score")


def model_metrics(metrics: ModelMetrics | None, done: TrainingDone | None = None) -> dict[str, Any]:
    """Every metric of ``metrics`` (a run's champion's, or the latest epoch's) under every spelling the
    frontend reads, and which model they are of (``done`` names the champion)."""
    values: dict[str, Any] = (metrics or ModelMetrics()).both_spellings()
    for key in CONTRACT_NUMBERS:
        values[key] = finite(values[key])
    return {**values, **champion_of(done)}


def champion_of(done: TrainingDone | None) -> dict[str, Any]:
    """Which model the numbers are of: the run's champion (absent for runs from before the challenger)."""
    if done is None or not done.models:
        return {}
    label = next((m.label for m in done.models if m.kind == done.champion), None)
    return {"champion": done.champion, "model": label}


def response_time(state: GatewayState, snapshot: StoredEvent | None) -> tuple[float, str]:
    """Platform p95 (ms) from the monitor (worst replica) or, without one, this gateway's own."""
    if snapshot is not None:
        value = finite(snapshot.typed(MonitorSnapshot).health.response_time_ms, None)
        if value is not None:
            return round(value, 3), "monitor"
    return round(float(state.traffic.summary()["latency_p95_ms"]), 3), "gateway"


def snapshot_max_age(state: GatewayState) -> float:
    return max(60.0, 3 * state.settings.service_timeout_s)


def current_metrics(state: GatewayState) -> dict[str, Any]:
    done = state.views.latest(Topic.TRAINING_DONE)
    snapshot = fresh_snapshot(state.views, snapshot_max_age(state))
    ms, source = response_time(state, snapshot)
    finished = done.typed(TrainingDone) if done else None
    run_id = finished.run_id if finished else None
    return {
        "run_id": run_id,
        "runId": run_id,
        **model_metrics(finished.metrics if finished else None, finished),
        "response_time": ms,
        "responseTime": ms,
        "response_time_source": source,
        "evaluated_at": done.time.isoformat() if done else None,
    }


def _local_health(state: GatewayState) -> dict[str, Any]:
    """Without a monitor: heartbeats this gateway stored and its own traffic."""
    timeout = state.settings.service_timeout_s
    now = datetime.now(timezone.utc)
    live = [seen.beat for seen in state.views.heartbeats() if seen.fresh(now, timeout)]
    cpu = max((finite(hb.host_cpu_percent, None) or finite(hb.cpu_percent) for hb in live), default=0.0)
    memory = max((finite(hb.memory_percent) for hb in live), default=0.0)
    routes = state.traffic.routes()
    requests = sum(r["count"] for r in routes.values())
    errors = sum(r["errors"] for r in routes.values())
    error_rate = 100.0 * errors / requests if requests else 0.0
    liveness = state.views.service_liveness(SERVICES, timeout)
    liveness["gateway"]["status"] = "up"
    down = [s for s, v in liveness.items() if v["status"] != "up"]
    return {
        "status": "critical" if down else "healthy",
        "cpu_usage": cpu,
        "memory_usage": memory,
        "api_success_rate": 100.0 - error_rate,
        "error_rate": error_rate,
        "services": liveness,
        "active_alerts": [],
        "source": "gateway",
        "note": "monitor offline: estimated by the gateway" if "monitor" in down else "no fresh monitor snapshot",
    }


def current_health(state: GatewayState) -> dict[str, Any]:
    """System health, 0..100, in both key spellings."""
    snapshot = fresh_snapshot(state.views, snapshot_max_age(state))
    if snapshot is not None:
        health = {**snapshot.typed(MonitorSnapshot).health.model_dump(mode="json", exclude={"run"}),
                  "source": "monitor", "as_of": snapshot.time.isoformat()}
    else:
        health = _local_health(state)
    cpu, memory = percent(health.get("cpu_usage")), percent(health.get("memory_usage"))
    success, errors = percent(health.get("api_success_rate", 100.0)), percent(health.get("error_rate"))
    status = health.get("status") if health.get("status") in ("healthy", "degraded", "critical") else "healthy"
    return {
        **{k: v for k, v in health.items() if k not in ("run",)},
        "status": status,
        "cpu_usage": cpu,
        "cpuUsage": cpu,
        "memory_usage": memory,
        "memoryUsage": memory,
        "api_success_rate": success,
        "apiSuccessRate": success,
        "error_rate": errors,
        "errorRate": errors,
    }


# -- messages ------------------------------------------------------------------------------------


def metrics_message(metrics: dict[str, Any]) -> dict[str, Any]:
    return {"type": "metrics_update", "metrics": metrics, "timestamp": datetime.now(timezone.utc).isoformat()}


def health_message(health: dict[str, Any]) -> dict[str, Any]:
    return {"type": "system_health", "health": health, "timestamp": datetime.now(timezone.utc).isoformat()}


def alert_period(alert: MonitorAlert) -> str | None:
    """The period a model alert (calibration, auc_drop, feature_drift) was decided on; None for the others."""
    return alert.metrics.period if isinstance(alert.metrics, PeriodEvidence) else None


def alert_feature(alert: MonitorAlert) -> str | None:
    """The feature a feature_drift alert is about (its subject); None for the others."""
    return alert.subject if alert.kind == "feature_drift" else None


def alert_message(alert: MonitorAlert, when: datetime) -> dict[str, Any]:
    firing = alert.state == "firing"
    return {
        "type": "performance_alert" if firing else "alert_resolved",
        "severity": alert.severity,
        "message": alert.message,
        "metrics": jsonable(alert.metrics.model_dump(mode="json")),  # the evidence, as the monitor wrote it
        "alert_id": alert.alert_id,
        "kind": alert.kind,
        "subject": alert.subject,
        "state": alert.state,
        "timestamp": when.isoformat(),
        # The model's alerts (calibration, auc_drop, feature_drift) name the period and the feature.
        "period": alert_period(alert),
        "feature": alert_feature(alert),
    }


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float):
        return finite(value, None)
    return value


def current_messages(state: GatewayState, with_open_alerts: bool = False) -> list[dict[str, Any]]:
    """What a client needs to draw the page now (blocking: call in a thread)."""
    messages = [metrics_message(current_metrics(state)), health_message(current_health(state))]
    if with_open_alerts:
        # A client that connects mid-incident learns of it once; it is not repeated on ticks.
        for firing in open_alerts(state.views):
            messages.append(alert_message(firing.alert, firing.since))
    return messages


# -- per-gateway live state -------------------------------------------------------------------------


@dataclass
class LiveState:
    ticker: asyncio.Task[None] | None = None
    last_run_id: str | None = None
    pushed_alerts: set[tuple[str, str]] = field(default_factory=set)


def live_state(state: GatewayState) -> LiveState:
    found = getattr(state, "_performance_live", None)
    if found is None:
        found = LiveState()
        state._performance_live = found  # type: ignore[attr-defined]
    return found


def _is_live(event: Event[Any]) -> bool:
    return datetime.now(timezone.utc) - event.time <= LIVE_AGE


# -- fan-out of consumed events (called by consumers.on_event for every delivered event) ----------------


def on_snapshot(state: GatewayState, event: Event[MonitorSnapshot]) -> None:
    """A snapshot about a new run is pushed at once; otherwise the periodic tick carries it."""
    live = live_state(state)
    snapshot = event.payload
    run_id = snapshot.run_id
    if run_id is None or run_id == live.last_run_id:
        return
    live.last_run_id = run_id
    if not _is_live(event):
        return
    ms = finite(snapshot.health.response_time_ms)
    metrics = {
        "run_id": run_id,
        "runId": run_id,
        **model_metrics(snapshot.metrics),
        "response_time": ms,
        "responseTime": ms,
        "response_time_source": "monitor",
        "evaluated_at": event.time.isoformat(),
    }
    state.hub.publish(CHANNEL, metrics_message(metrics))


def on_alert(state: GatewayState, event: Event[MonitorAlert]) -> None:
    alert = event.payload
    key = (alert.alert_id, alert.state)
    pushed = live_state(state).pushed_alerts
    if key in pushed or not _is_live(event):
        return  # the monitor's outbox may resend after a crash: one push per incident state
    pushed.add(key)
    if len(pushed) > 10_000:
        pushed.clear()
    state.hub.publish(CHANNEL, alert_message(alert, event.time))


def on_error(state: GatewayState, event: Event[ServiceError]) -> None:
    if _is_live(event):
        state.hub.publish(CHANNEL, {"type": "error_log", "log": error_entry(event.payload, event.time)})


# What this view pushes for each topic; create_app wires it into the consumer (consumers.fan_out_table).
FAN_OUT = {Topic.MONITOR_SNAPSHOT: on_snapshot, Topic.MONITOR_ALERT: on_alert, Topic.SERVICE_ERROR: on_error}


# -- the WebSocket -------------------------------------------------------------------------------------


async def _tick(state: GatewayState) -> None:
    """Push metrics and health to every client each interval while anyone listens."""
    stop = state.runtime.stop_event
    interval = state.settings.ws_performance_interval_s
    while state.hub.clients(CHANNEL) > 0 and not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
            return
        except asyncio.TimeoutError:
            pass
        if state.hub.clients(CHANNEL) == 0:
            return
        try:
            messages = await asyncio.to_thread(current_messages, state)
        except Exception as exc:  # noqa: BLE001 - a failed read skips one tick, never the stream
            log.warning("performance tick failed: %r", exc)
            continue
        for message in messages:
            state.hub.publish(CHANNEL, message)


def ensure_ticker(state: GatewayState) -> None:
    live = live_state(state)
    if live.ticker is None or live.ticker.done():
        live.ticker = asyncio.create_task(_tick(state))


async def serve(websocket: WebSocket, state: GatewayState) -> None:
    """Accept, push the current state at once, then forward the channel until the client leaves."""
    await websocket.accept()
    queue = state.hub.subscribe(CHANNEL)  # before reading the state: nothing falls in between
    try:
        first = await asyncio.to_thread(current_messages, state, True)
        for message in first:
            await websocket.send_json(message)
        # An alert handled while the state was read is both in it and in the queue: pushed once.
        already_sent = {_alert_key(m) for m in first} - {None}
        ensure_ticker(state)
        listener = asyncio.create_task(_until_disconnect(websocket))
        try:
            while True:
                getter = asyncio.create_task(queue.get())
                done, _ = await asyncio.wait({getter, listener}, return_when=asyncio.FIRST_COMPLETED)
                if listener in done:
                    getter.cancel()
                    return
                message = getter.result()
                if message is None:  # the hub dropped this slow client: close; it reconnects
                    await websocket.close(code=1013)
                    return
                if already_sent and (key := _alert_key(message)) in already_sent:
                    already_sent.discard(key)
                    continue
                await websocket.send_json(message)
        finally:
            listener.cancel()
    except (WebSocketDisconnect, RuntimeError):
        pass  # the client left while we were sending
    finally:
        state.hub.unsubscribe(CHANNEL, queue)


def _alert_key(message: dict[str, Any]) -> tuple[str, str] | None:
    """An alert message's incident state (alert id, firing/resolved); None for other messages."""
    if message["type"] in ("performance_alert", "alert_resolved"):
        return message["alert_id"], message["state"]
    return None


async def _until_disconnect(websocket: WebSocket) -> None:
    """Clients send nothing; reading is how a closed socket is noticed."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
