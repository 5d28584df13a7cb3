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

The same replay covers the rest of the chain: a run whose ``training.done`` is recorded but
whose explanation never ended, or whose explanation ended but no report did, is requested
again too; the trainer re-reports the recorded result, the explainer explains it (or
re-announces the explanation it stored) and the reporter builds the missing report.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from ctrops_common.bus import BrokerUnavailable
from ctrops_common.events import Topic, TrainingRequested

from .state import GatewayState
from .views import event_log

log = logging.getLogger(__name__)

CHECK_S = 1.0
LOOKBACK = timedelta(hours=24)
MAX_RUNS = 500


TRAINING_END = (Topic.TRAINING_DONE, Topic.TRAINING_FAILED)
EXPLANATION_END = (Topic.EXPLANATION_DONE, Topic.EXPLANATION_FAILED)
REPORT_END = (Topic.REPORT_READY, Topic.REPORT_FAILED)


def unfinished(requested: list[str], seen: dict[Topic, set[str]]) -> list[str]:
    """Of ``requested`` run ids (in order), those whose chain has not ended: no training end; or
    trained (done) without an explanation end; or explained (done) without a report end."""
    def any_of(topics: tuple[Topic, ...], run_id: str) -> bool:
        return any(run_id in seen.get(t, set()) for t in topics)

    left = []
    for run_id in requested:
        if run_id in seen.get(Topic.TRAINING_FAILED, set()):
            continue  # ended; nothing downstream is owed
        if not any_of(TRAINING_END, run_id):
            left.append(run_id)
        elif not any_of(EXPLANATION_END, run_id):
            left.append(run_id)
        elif run_id in seen.get(Topic.EXPLANATION_DONE, set()) and not any_of(REPORT_END, run_id):
            left.append(run_id)
    return left


def open_runs(state: GatewayState) -> list[TrainingRequested]:
    """The requested runs of the last day whose chain has not ended, oldest first."""
    since = datetime.now(timezone.utc) - LOOKBACK
    requested = state.views.events(Topic.TRAINING_REQUESTED, newest_first=True, limit=MAX_RUNS)
    firsts: dict[str, TrainingRequested] = {}
    for event in reversed(requested):
        if event.correlation_id and event.correlation_id not in firsts and event.time >= since:
            firsts[event.correlation_id] = TrainingRequested.model_validate(event.payload)
    if not firsts:
        return []
    topics = [t.value for t in (*TRAINING_END, *EXPLANATION_END, *REPORT_END)]
    query = select(event_log.c.topic, event_log.c.correlation_id).where(
        event_log.c.topic.in_(topics), event_log.c.correlation_id.in_(list(firsts)))
    seen: dict[Topic, set[str]] = {}
    with state.views.engine.connect() as conn:
        for topic, run_id in conn.execute(query):
            seen.setdefault(Topic(topic), set()).add(run_id)
    return [firsts[run_id] for run_id in unfinished(list(firsts), seen)]


async def replay_open_runs(state: GatewayState) -> int:
    runs = await asyncio.to_thread(open_runs, state)
    for request in runs:
        await state.bus.publish(Topic.TRAINING_REQUESTED, request, correlation_id=request.run_id)
    if runs:
        log.warning("broker came back: %d unfinished run(s) requested again to be driven to their end: %s",
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
