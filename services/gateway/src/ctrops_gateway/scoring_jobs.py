"""Batch scoring jobs as the gateway sees them, folded from their typed ``scoring.*`` events.

The gateway records the ``scoring.requested`` it publishes at once (so a job is readable
before the scorer picks it up); the scorer's ``scoring.progress`` / ``scoring.done`` /
``scoring.failed`` arrive through the consumer. All are stored under the job id
(views.stored_correlation). Topics are consumed in no global order, so the fold is
order-free: a done or failed event ends the job whatever came after it, and progress is
the most rows any progress event reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from ctrops_common.events import ScoringDone, ScoringFailed, ScoringProgress, ScoringRequested, Topic
from ctrops_common.storage import is_id

from .views import SCORING_TOPICS, ReadModel

JobStatus = Literal["queued", "scoring", "completed", "failed"]


@dataclass
class JobView:
    job_id: str
    requested: ScoringRequested | None = None
    requested_at: datetime | None = None
    progress: ScoringProgress | None = None  # the furthest one
    done: ScoringDone | None = None
    failed: ScoringFailed | None = None
    updated_at: datetime | None = None

    @property
    def status(self) -> JobStatus:
        if self.done is not None:
            return "completed"
        if self.failed is not None:
            return "failed"
        return "scoring" if self.progress is not None else "queued"

    @property
    def rows_total(self) -> int:
        if self.done is not None:
            return self.done.rows
        if self.progress is not None:
            return self.progress.rows_total
        return self.requested.rows if self.requested is not None else 0

    @property
    def rows_done(self) -> int:
        if self.done is not None:
            return self.done.rows
        return self.progress.rows_done if self.progress is not None else 0


def job_view(views: ReadModel, job_id: str) -> JobView | None:
    """The job's state from its events, or None when no event of it is stored."""
    if not is_id(job_id):
        return None
    events = views.events(SCORING_TOPICS, correlation_id=job_id)
    if not events:
        return None
    view = JobView(job_id)
    for stored in events:
        view.updated_at = max(view.updated_at, stored.time) if view.updated_at else stored.time
        if stored.topic == Topic.SCORING_REQUESTED.value:
            if view.requested is None:
                view.requested = stored.typed(ScoringRequested)
                view.requested_at = stored.time
        elif stored.topic == Topic.SCORING_PROGRESS.value:
            progress = stored.typed(ScoringProgress)
            if view.progress is None or progress.rows_done >= view.progress.rows_done:
                view.progress = progress
        elif stored.topic == Topic.SCORING_DONE.value:
            view.done = view.done or stored.typed(ScoringDone)
        elif stored.topic == Topic.SCORING_FAILED.value:
            view.failed = view.failed or stored.typed(ScoringFailed)
    return view
