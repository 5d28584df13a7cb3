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

Batch scoring jobs the gateway accepted in the last day (their ``scoring.requested`` is in the
read model) without ``scoring.done``/``scoring.failed`` are requested again as well: the
scorer republishes a job it finished (``scorer_jobs``), scores one it never saw, and keeps one
whose run it has not recorded yet parked (its own durable record) until the run is known.
An upload being checked when the broker went away needs no replay: its request is still
open and answers 503 (the file removed), so the client sends it again.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from ctrops_common.bus import BrokerUnavailable
from ctrops_common.events import ScoringRequested, Topic, TrainingRequested

from .state import GatewayState
from .views import P, event_log

log = logging.getLogger(__name__)

CHECK_S = 1.0
LOOKBACK = timedelta(hours=24)
MAX_RUNS = 500


TRAINING_END = (Topic.TRAINING_DONE, Topic.TRAINING_FAILED)
EXPLANATION_END = (Topic.EXPLANATION_DONE, Topic.EXPLANATION_FAILED)
REPORT_END = (Topic.REPORT_READY, Topic.REPORT_FAILED)
SCORING_END = (Topic.SCORING_DONE, Topic.SCORING_FAILED)


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


def _first_requests(state: GatewayState, topic: Topic, model: type[P]) -> dict[str, P]:
    """The first ``topic`` request of each id (run or job) of the last day, oldest first."""
    since = datetime.now(timezone.utc) - LOOKBACK
    firsts: dict[str, P] = {}
    for event in reversed(state.views.events(topic, newest_first=True, limit=MAX_RUNS)):
        if event.correlation_id and event.correlation_id not in firsts and event.time >= since:
            firsts[event.correlation_id] = event.typed(model)
    return firsts


def open_runs(state: GatewayState) -> list[TrainingRequested]:
    """The requested runs of the last day whose chain has not ended, oldest first."""
    firsts = _first_requests(state, Topic.TRAINING_REQUESTED, TrainingRequested)
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


def open_jobs(state: GatewayState) -> list[ScoringRequested]:
    """The batch scoring jobs of the last day without an answer (done or failed), oldest first."""
    firsts = _first_requests(state, Topic.SCORING_REQUESTED, ScoringRequested)
    if not firsts:
        return []
    query = select(event_log.c.correlation_id).where(
        event_log.c.topic.in_([t.value for t in SCORING_END]), event_log.c.correlation_id.in_(list(firsts)))
    with state.views.engine.connect() as conn:
        answered = set(conn.execute(query).scalars())
    return [request for job_id, request in firsts.items() if job_id not in answered]


async def replay_open_runs(state: GatewayState) -> int:
    """Request again every run and batch job the broker may have lost; how many were."""
    runs = await asyncio.to_thread(open_runs, state)
    for request in runs:
        await state.bus.publish(Topic.TRAINING_REQUESTED, request, correlation_id=request.run_id)
    if runs:
        log.warning("broker came back: %d unfinished run(s) requested again to be driven to their end: %s",
                    len(runs), ", ".join(r.run_id for r in runs))
    jobs = await asyncio.to_thread(open_jobs, state)
    for job in jobs:
        await state.bus.publish(Topic.SCORING_REQUESTED, job, correlation_id=job.job_id)
    if jobs:
        log.warning("broker came back: %d unanswered scoring job(s) requested again: %s",
                    len(jobs), ", ".join(j.job_id for j in jobs))
    return len(runs) + len(jobs)


async def lost_at_start(state: GatewayState) -> bool:
    """The broker holds none of the requests the read model recorded: it is not the one they went to
    (a memory-only broker started again). A gateway restarted beside a broker that kept its log
    replays nothing."""
    for topic in (Topic.TRAINING_REQUESTED, Topic.SCORING_REQUESTED):
        recorded = await asyncio.to_thread(state.views.latest, topic)
        if recorded is None:
            continue
        try:
            if await state.bus.topic_log_empty(topic):
                log.warning("the broker holds no %s event though %s were recorded: it lost its log; replaying",
                            topic.value, topic.value)
                return True
        except Exception as exc:  # noqa: BLE001 - not knowing is no reason to stop; the restart watch remains
            log.warning("could not read the broker's %s log at start: %s", topic.value, exc)
        return False
    return False


def install(state: GatewayState) -> None:
    async def watch() -> None:
        stop = state.runtime.stop_event
        seen = state.bus.broker_restarts
        # At start-up too: a gateway started with (or after) an empty broker, a whole `make run`
        # again say, never saw the restart, yet what it recorded as open may be lost.
        at_start = state.settings.replay_on_start and await lost_at_start(state)
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), CHECK_S)
            except asyncio.TimeoutError:
                pass
            if (state.bus.broker_restarts == seen and not at_start) or not state.bus.broker_up:
                continue
            try:
                await replay_open_runs(state)
                seen, at_start = state.bus.broker_restarts, False
            except BrokerUnavailable as exc:  # down again: try at the next return
                log.warning("replay after the broker's restart deferred: %s", exc)
            except Exception:  # noqa: BLE001 - never take the gateway down; try again next second
                log.exception("replay after the broker's restart failed")

    state.runtime.add_background(watch)
