"""Which events the monitor consumes and publishes.

Consumes training.done / training.failed / training.progress (model quality, training
progress), monitoring.period (the deployed model's calibration, AUC and feature drift per
period), service.heartbeat (liveness, CPU, memory, API traffic) and service.error, and
training.requested / training.started / explanation.done / report.requested / report.ready
for their times only (the latest run's pipeline stages, pipeline.py).
Publishes monitor.alert (once per incident, then 'resolved') and monitor.snapshot
(every ``monitor_snapshot_interval_s``, right after a run finishes and when a later event of
the latest run, e.g. its report becoming ready, changes its stages).

The logic lives in ``monitor.py``; database calls run in a thread under one lock, so the
consumer and the periodic jobs never interleave half-way through an incident change.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from ctrops_common.events import Event, MonitorAlert, Topic
from ctrops_common.service import ServiceRuntime

from .monitor import Monitor, utcnow
from .pipeline import TIMED_TOPICS
from .settings import MonitorSettings
from .store import MonitorStore

log = logging.getLogger(__name__)

T = TypeVar("T")


class MonitorWorker:
    def __init__(self, runtime: ServiceRuntime, settings: MonitorSettings) -> None:
        self.runtime = runtime
        self.settings = settings
        self.store = MonitorStore(runtime.engine)
        self.monitor = Monitor(settings, self.store)
        self._lock = asyncio.Lock()
        self._flush_lock = asyncio.Lock()

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        async with self._lock:
            return await asyncio.to_thread(fn, *args)

    async def flush_alerts(self) -> None:
        """Publish the alert outbox in order; a message leaves the outbox only once acknowledged."""
        async with self._flush_lock:
            for seq, message in await asyncio.to_thread(self.store.pending_messages):
                alert = MonitorAlert.model_validate(message["alert"])
                await self.runtime.bus.publish(
                    Topic.MONITOR_ALERT, alert, correlation_id=message.get("correlation_id"), key=alert.alert_id
                )
                await asyncio.to_thread(self.store.message_sent, seq)
                log.warning("alert %s %s: %s", alert.alert_id, alert.state, alert.message)

    async def publish_snapshot(self) -> None:
        snapshot = await self.call(self.monitor.snapshot)
        await self.runtime.bus.publish(Topic.MONITOR_SNAPSHOT, snapshot, correlation_id=snapshot.run_id, key="monitor")

    # -- consumers -----------------------------------------------------------------

    async def on_training_done(self, event: Event[Any]) -> None:
        await self.call(self.monitor.on_training_done, event.payload, event.time)
        await self.flush_alerts()
        await self.publish_snapshot()  # the dashboards see the new run without waiting a period

    async def on_period(self, event: Event[Any]) -> None:
        await self.call(self.monitor.on_period, event.payload, event.time)
        await self.flush_alerts()

    async def on_training_failed(self, event: Event[Any]) -> None:
        await self.call(self.monitor.on_training_failed)

    async def on_training_progress(self, event: Event[Any]) -> None:
        await self.call(self.monitor.on_training_progress, event.payload)

    async def on_run_event(self, topic: Topic, event: Event[Any]) -> None:
        """One of a run's pipeline events (``topic``, one of pipeline.TIMED_TOPICS): its time is recorded;
        a snapshot goes out at once when it changed the latest finished run's stages (a redelivery does not)."""
        changed = await self.call(self.monitor.on_run_event, topic, event.payload.run_id, event.event_id, event.time)
        if changed:
            await self.publish_snapshot()

    async def on_heartbeat(self, event: Event[Any]) -> None:
        await self.call(self.monitor.on_heartbeat, event.payload, event.time)

    async def on_error(self, event: Event[Any]) -> None:
        await self.call(self.monitor.on_error, event.payload, event.time)

    # -- periodic jobs ------------------------------------------------------------------

    async def _every(self, period_s: float, job: Callable[[], Any]) -> None:
        stop = self.runtime.stop_event
        while not stop.is_set():
            try:
                await job()
            except Exception as exc:  # noqa: BLE001 - a broker blip must not stop monitoring
                log.warning("monitor job %s failed: %r", getattr(job, "__name__", job), exc)
            try:
                await asyncio.wait_for(stop.wait(), timeout=period_s)
            except asyncio.TimeoutError:
                pass

    async def _wait_consuming(self) -> bool:
        """Liveness is judged only once the consumer caught up with its group; False if stopping."""
        stop = self.runtime.stop_event
        while not self.runtime.bus.consuming:
            if stop.is_set():
                return False
            await asyncio.sleep(0.1)
        self.monitor.started_at = utcnow()  # the grace period (one timeout) starts now
        return True

    async def checks(self) -> None:
        if not await self._wait_consuming():
            return

        async def check_and_flush() -> None:
            await self.call(self.monitor.check)
            await self.flush_alerts()

        await self._every(self.settings.monitor_check_interval_s, check_and_flush)

    async def snapshots(self) -> None:
        if not await self._wait_consuming():
            return
        await self._every(self.settings.monitor_snapshot_interval_s, self.publish_snapshot)


def register(runtime: ServiceRuntime, settings: MonitorSettings) -> MonitorWorker:
    """Subscribe this service's handlers on the runtime's bus and add its periodic jobs."""
    worker = MonitorWorker(runtime, settings)
    bus = runtime.bus
    bus.subscribe(Topic.TRAINING_DONE, worker.on_training_done)
    bus.subscribe(Topic.TRAINING_FAILED, worker.on_training_failed)
    bus.subscribe(Topic.TRAINING_PROGRESS, worker.on_training_progress)
    bus.subscribe(Topic.MONITORING_PERIOD, worker.on_period)
    bus.subscribe(Topic.SERVICE_HEARTBEAT, worker.on_heartbeat, remember=False)  # keeps the newest: idempotent
    bus.subscribe(Topic.SERVICE_ERROR, worker.on_error)
    for topic in TIMED_TOPICS:
        bus.subscribe(topic, functools.partial(worker.on_run_event, topic))
    runtime.add_background(worker.checks)
    runtime.add_background(worker.snapshots)
    return worker
