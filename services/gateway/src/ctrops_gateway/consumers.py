"""The events the gateway consumes: each is stored in the read model, then fanned out.

Handlers are thin: store (idempotent by event id), resolve a waiting request, push to
WebSocket clients. A redelivered event is stored once and not pushed again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ctrops_common.events import Event, ServiceHeartbeat, Topic

from .state import GatewayState

# Everything the REST answers or WebSockets need; heartbeats are handled apart.
RECORDED_TOPICS = [
    Topic.FILE_UPLOADED,
    Topic.FILE_REJECTED,
    Topic.TRAINING_REQUESTED,
    Topic.TRAINING_STARTED,
    Topic.TRAINING_PROGRESS,
    Topic.TRAINING_DONE,
    Topic.TRAINING_FAILED,
    # Another replica's cancel (it records its own at once): every replica's view of the run shows it.
    Topic.TRAINING_CANCEL_REQUESTED,
    Topic.EXPLANATION_DONE,
    Topic.EXPLANATION_FAILED,
    Topic.REPORT_REQUESTED,
    Topic.REPORT_READY,
    Topic.REPORT_FAILED,
    Topic.MONITOR_SNAPSHOT,
    Topic.MONITOR_ALERT,
    Topic.SERVICE_ERROR,
    # Batch scoring jobs (GET /api/predict/jobs/{job_id}) and the deployed model's periods (the SI dashboard).
    Topic.SCORING_REQUESTED,
    Topic.SCORING_PROGRESS,
    Topic.SCORING_DONE,
    Topic.SCORING_FAILED,
    Topic.MONITORING_PERIOD,
]


SNAPSHOTS_KEPT = 100


def reply_key(event: Event[Any]) -> str | None:
    """The key a waiting request listens on, if this event answers one."""
    payload = event.payload
    if event.type in (Topic.FILE_UPLOADED, Topic.FILE_REJECTED):
        return f"upload:{payload.file_id}"
    if event.type in (Topic.REPORT_READY, Topic.REPORT_FAILED):
        return f"report:{payload.request_id}"
    return None


def register(state: GatewayState, fan_out: FanOutTable) -> None:
    """Subscribe the read model to every recorded topic; each event is then handed to ``fan_out``'s
    functions for its topic (the live views' WebSocket pushes, wired by ``create_app``)."""
    bus = state.bus

    async def on_event(event: Event[Any]) -> None:
        await asyncio.to_thread(state.views.record, event)
        if (key := reply_key(event)) is not None:
            state.replies.resolve(key, event)
        # Push every event this replica's consumer delivers, even one another replica stored
        # first (replicas may share a database): each replica has its own WebSocket clients,
        # and the bus already skips redeliveries within this replica's group.
        for push in fan_out.get(event.type, ()):
            push(state, event)
        if event.type is Topic.MONITOR_SNAPSHOT:  # only the latest is ever read; one arrives every 10 s
            await asyncio.to_thread(state.views.prune, Topic.MONITOR_SNAPSHOT, SNAPSHOTS_KEPT)

    async def on_heartbeat(event: Event[ServiceHeartbeat]) -> None:
        await asyncio.to_thread(state.views.record_heartbeat, event)

    for topic in RECORDED_TOPICS:
        bus.subscribe(topic, on_event)
    bus.subscribe(Topic.SERVICE_HEARTBEAT, on_heartbeat, remember=False)  # keeps the newest: idempotent


# topic -> functions(state, event) that push WebSocket messages (training_live.FAN_OUT, performance_live.FAN_OUT).
FanOut = Callable[[GatewayState, Event[Any]], None]
FanOutTable = Mapping[Topic, Sequence[FanOut]]


def fan_out_table(*tables: Mapping[Topic, FanOut]) -> dict[Topic, list[FanOut]]:
    """One table from the live views' own (topic -> push function), in the order given."""
    merged: dict[Topic, list[FanOut]] = {}
    for table in tables:
        for topic, push in table.items():
            merged.setdefault(topic, []).append(push)
    return merged
