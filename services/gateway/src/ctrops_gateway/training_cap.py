"""The cap on training runs a client has queued or running at once, as a FastAPI dependency on
the routes that start a run (POST /api/train, POST /api/train/{run_id}/retrain):

    @router.post("/api/train", dependencies=[OPERATOR, TRAINING_RATE, ACTIVE_TRAININGS])

``CTROPS_MAX_ACTIVE_TRAININGS_PER_CLIENT`` (3; 0: off); beyond it 429 with ``Retry-After: 30``
and a detail saying how many runs the client has and what to do. A client is the authenticated
client id, else the remote address (``caller.client_key``).

Active runs are counted from durable state, in the gateway database: the runs the audit trail
says this client started (successful ``train`` / ``retrain`` calls), plus ``training.requested``
events carrying its client id, minus those with a ``training.done`` / ``training.failed`` event
in the read model; runs older than ``CTROPS_TRAINING_ACTIVE_MAX_AGE_H`` no longer count.

Check and claim happen under one lock per process, so a burst cannot slip past the cap in one
replica: a request that passed holds a claim until its response has left. The dependency's exit
runs then (FastAPI's default ``"request"`` scope of a dependency with ``yield``), by when the
audit middleware, outside the route, has recorded the new run, so from then on it is counted
from the audit trail.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from fastapi import Depends, HTTPException, Request
from starlette.types import Scope

from .caller import client_key, principal_of, remote_addr

if TYPE_CHECKING:
    from .settings import GatewaySettings

ACTIVE_RETRY_AFTER_S = 30


class TrainingClaims:
    """Training requests of each client between the check and the recorded run, in this process."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.in_flight: dict[str, int] = {}


async def cap_active_trainings(request: Request) -> AsyncIterator[None]:
    """At most CTROPS_MAX_ACTIVE_TRAININGS_PER_CLIENT runs of this client queued or running at once."""
    settings: GatewaySettings = request.app.state.gateway.settings
    cap = settings.max_active_trainings_per_client
    if cap <= 0:
        yield
        return
    claims: TrainingClaims = request.app.state.training_claims
    who = client_key(request.scope)
    async with claims.lock:  # check and claim together
        active = await asyncio.to_thread(active_trainings, request.scope, settings)
        in_flight = claims.in_flight.get(who, 0)
        if active + in_flight >= cap:
            raise HTTPException(
                429, f"This client already has {active + in_flight} training run(s) queued or running; the limit is "
                     f"{cap} at once (CTROPS_MAX_ACTIVE_TRAININGS_PER_CLIENT). Wait for one to finish or cancel it.",
                headers={"Retry-After": str(ACTIVE_RETRY_AFTER_S)},
            )
        claims.in_flight[who] = in_flight + 1
    try:
        yield
    finally:
        claims.in_flight[who] -= 1
        if claims.in_flight[who] <= 0:
            del claims.in_flight[who]


ACTIVE_TRAININGS = Depends(cap_active_trainings)


def active_trainings(scope: Scope, settings: GatewaySettings) -> int:
    """Runs this client started (audit trail, ``training.requested``) with no done/failed event yet."""
    app = scope.get("app")
    gateway = getattr(getattr(app, "state", None), "gateway", None)
    audit = getattr(getattr(app, "state", None), "audit", None)
    if gateway is None:
        return 0
    since = datetime.now(timezone.utc) - timedelta(hours=settings.training_active_max_age_h)
    principal = principal_of(scope)
    authenticated = principal is not None and principal.authenticated
    client_id = principal.client_id if authenticated else "anonymous"
    runs: set[str] = set()
    if audit is not None:
        runs |= audit.started_runs(client_id, None if authenticated else remote_addr(scope), since)
    if authenticated:
        runs |= gateway.views.requested_runs(client_id, since)
    if not runs:
        return 0
    return len(runs - gateway.views.finished_runs(runs))
