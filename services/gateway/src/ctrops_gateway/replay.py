"""Replay what the gateway still owes when the broker comes back empty.

The embedded broker keeps its log in memory: a restart loses every event not yet handled,
among them a ``training.requested`` a trainer had taken but not finished. The gateway's
read model is the durable record of runs it started: when its bus sees the broker come back
(``Bus.broker_restarts`` grows), every run requested in the last day and still without
``training.done``/``training.failed`` is requested again (the same payload, a new event id
so no consumer skips it as already handled). The trainer's run table then drives it to one
end: a run that completed re-reports its result, one still held under a fresh lease is
waited for, an interrupted one is retried (counted as an attempt, up to the maximum), a
cancelled one fails as cancelled. A training is never run twice at once (the lease).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta, timezone

from ctrops_common.bus import BrokerUnavailable
from ctrops_common.events import Topic, TrainingRequested

from .state import GatewayState

log = logging.getLogger(__name__)

CHECK_S = 1.0
LOOKBACK = timedelta(hours=24)
MAX_RUNS = 500


def open_runs(state: GatewayState) -> list[TrainingRequested]:
    """The requested runs of the last day with no end recorded, oldest first."""
    since = datetime.now(timezone.utc) - LOOKBACK
    requested = state.views.events(Topic.TRAINING_REQUESTED, newest_first=True, limit=MAX_RUNS)
    firsts: dict[str, TrainingRequested] = {}
    for event in reversed(requested):
        when = event.time if event.time.tzinfo else event.time.replace(tzinfo=timezone.utc)
        if event.correlation_id and event.correlation_id not in firsts and when >= since:
            firsts[event.correlation_id] = TrainingRequested.model_validate(event.payload)
    finished = state.views.finished_runs(set(firsts))
    return [request for run_id, request in firsts.items() if run_id not in finished]


async def replay_open_runs(state: GatewayState) -> int:
    runs = await asyncio.to_thread(open_runs, state)
    for request in runs:
        await state.bus.publish(Topic.TRAINING_REQUESTED, request, correlation_id=request.run_id)
    if runs:
        log.warning("broker came back: %d unfinished run(s) requested again for the trainer to finish: %s",
                    len(runs), ", ".join(r.run_id for r in runs))
    return len(runs)


def install(state: GatewayState) -> None:
    async def watch() -> None:
        stop = state.runtime.stop_event
        seen = state.bus.broker_restarts
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), CHECK_S)
            except asyncio.TimeoutError:
                pass
            if state.bus.broker_restarts == seen or not state.bus.broker_up:
                continue
            try:
                await replay_open_runs(state)
                seen = state.bus.broker_restarts
            except BrokerUnavailable as exc:  # down again: try at the next return
                log.warning("replay after the broker's restart deferred: %s", exc)
            except Exception:  # noqa: BLE001 - never take the gateway down; try again next second
                log.exception("replay after the broker's restart failed")

    state.runtime.add_background(watch)
