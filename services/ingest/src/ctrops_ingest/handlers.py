"""Which events the ingest service consumes and publishes.

Consumes ``upload.received`` (the gateway stored a CSV); publishes ``file.uploaded``
(validated, profiled, converted when valid) or ``file.rejected`` (structural problem,
with the HTTP status and message the gateway answers). The work runs in a thread. At start,
the dashboard highlights missing from uploads profiled before ingest wrote them (``backfill``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from ctrops_common.bus import PermanentError
from ctrops_common.dataset import upload_path
from ctrops_common.events import Event, FileUploaded, Topic, UploadReceived
from ctrops_common.service import ServiceRuntime
from ctrops_common.storage import is_id

from .backfill import backfill_highlights
from .pipeline import IngestOptions
from .results import Verdicts
from .settings import IngestSettings
from .uploads import decide


def options_from(settings: IngestSettings) -> IngestOptions:
    return IngestOptions(
        block_bytes=int(settings.ingest_block_mb * (1 << 20)),
        row_group_rows=settings.ingest_row_group_rows,
        max_categories=settings.ingest_max_categories,
        max_segment_values=settings.ingest_max_segment_values,
    )


def register(runtime: ServiceRuntime, settings: IngestSettings) -> None:
    """Subscribe this service's handlers on the runtime's bus."""
    options = options_from(settings)
    verdicts = Verdicts(runtime.engine)

    async def on_upload(event: Event[Any]) -> None:
        upload: UploadReceived = event.payload
        if not is_id(upload.file_id) or upload.location != upload_path(upload.file_id):
            raise PermanentError(f"upload event with a bad file id or location: {upload.file_id!r} {upload.location!r}")
        verdict = await asyncio.to_thread(verdicts.get, upload.file_id)
        if verdict is None:  # a redelivery after a crash republishes the verdict already given
            verdict = await asyncio.to_thread(decide, runtime.store, upload, options)
            await asyncio.to_thread(verdicts.put, upload.file_id, *verdict)
        topic, payload = verdict
        await runtime.bus.publish(topic, payload, correlation_id=upload.file_id)

    runtime.bus.subscribe(Topic.UPLOAD_RECEIVED, on_upload)

    def totals(file_id: str) -> tuple[int, float] | None:
        """The rows and CTR of an upload's accepted verdict; None without one."""
        verdict = verdicts.get(file_id)
        if verdict is None or not isinstance(verdict[1], FileUploaded):
            return None
        return verdict[1].info.total_rows, verdict[1].info.ctr

    async def backfill() -> None:  # once, at start, off the event loop
        await asyncio.to_thread(backfill_highlights, runtime.store, totals)

    runtime.add_background(backfill)
