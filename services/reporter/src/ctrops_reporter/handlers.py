"""Which events the reporter consumes and publishes.

Consumes ``training.progress`` (keeps the training curve), ``training.done`` and
``explanation.done`` (the report's inputs; the report is built as soon as both are
there, whichever comes first, and announced with request id ``auto-<run_id>``), and
``report.requested`` (renders the PDF with the asked sections). Publishes
``report.ready`` or ``report.failed`` with the request's id. Building (LLM call, charts,
PDF) runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging

from ctrops_common.events import (
    Event,
    ExplanationDone,
    ReportFailed,
    ReportReady,
    ReportRequested,
    Topic,
    TrainingDone,
    TrainingProgress,
)
from ctrops_common.service import ServiceRuntime

from .builder import ReportBuilder, ReportNotReady, report_json_path
from .pdf import PdfOptions
from .records import Records
from .settings import ReporterSettings

log = logging.getLogger(__name__)


def auto_request_id(run_id: str) -> str:
    return f"auto-{run_id}"


def register(runtime: ServiceRuntime, settings: ReporterSettings) -> None:
    """Subscribe this service's handlers on the runtime's bus."""
    records = Records(runtime.engine)
    builder = ReportBuilder(runtime.store, records, settings)
    bus = runtime.bus

    async def produce(run_id: str, request_id: str, options: PdfOptions) -> None:
        """Build (or reuse) and announce the outcome; a failure is announced, never raised."""
        try:
            report, pdf, reused = await asyncio.to_thread(builder.build, run_id, options)
        except ReportNotReady as exc:
            failed = ReportFailed(run_id=run_id, request_id=request_id, reason=str(exc), retryable=exc.retryable)
            await bus.publish(Topic.REPORT_FAILED, failed, correlation_id=run_id)
            return
        except Exception as exc:  # noqa: BLE001 - the requester must hear back, with the reason
            log.exception("report for %s failed", run_id)
            await bus.publish(
                Topic.REPORT_FAILED,
                ReportFailed(run_id=run_id, request_id=request_id, reason=f"report generation failed: {exc}"),
                correlation_id=run_id,
            )
            return
        log.info("report %s for %s: %s (%s)", request_id, run_id, pdf, "reused" if reused else "rendered")
        await bus.publish(
            Topic.REPORT_READY,
            ReportReady(run_id=run_id, request_id=request_id, report_location=report_json_path(run_id),
                        pdf_location=pdf, model_used=report.model_used),
            correlation_id=run_id,
        )

    async def build_when_complete(run_id: str) -> None:
        training, explanation = await asyncio.to_thread(records.inputs, run_id)
        if training is not None and explanation is not None:
            await produce(run_id, auto_request_id(run_id), PdfOptions())

    @bus.subscriber(Topic.TRAINING_PROGRESS)
    async def on_progress(event: Event[TrainingProgress]) -> None:
        p = event.payload
        await asyncio.to_thread(records.save_epoch, p.run_id, p.epoch, p.attempt, p.total_epochs,
                                p.metrics.model_dump(mode="json"))

    @bus.subscriber(Topic.TRAINING_DONE)
    async def on_training_done(event: Event[TrainingDone]) -> None:
        await asyncio.to_thread(records.save_input, event.payload.run_id, event.payload)
        await build_when_complete(event.payload.run_id)  # the explanation may have come first

    @bus.subscriber(Topic.EXPLANATION_DONE)
    async def on_explanation_done(event: Event[ExplanationDone]) -> None:
        await asyncio.to_thread(records.save_input, event.payload.run_id, event.payload)
        await build_when_complete(event.payload.run_id)

    @bus.subscriber(Topic.REPORT_REQUESTED)
    async def on_report_requested(event: Event[ReportRequested]) -> None:
        p = event.payload
        options = PdfOptions(p.include_charts, p.include_insights, p.include_action_plan)
        await produce(p.run_id, p.request_id, options)
