"""Gateway routes: the AI report and its PDF.

- ``GET /api/report/ai/{run_id}``: the reporter's report.json.
- ``POST /api/report/generate-pdf/{run_id}``: asks the reporter (``report.requested``) and
  waits for ``report.ready`` / ``report.failed`` with the same request id.
- ``GET /api/report/pdf/{run_id}``: the newest PDF of the run; generated on demand (same
  way) when the run has none yet.

A request for a run that finished training but is still being explained (or whose
report is being written) waits for it, up to CTROPS_REPORT_TIMEOUT_S in all, and then
answers with the run's report or PDF: a click on "PDF" the moment training completes
gets the PDF, not a 409. Only a run still training, or one still unexplained after the
wait, answers 409 with ``Retry-After``.

``latest`` here is the newest completed run that *has* a report, so while a newer run
is still being explained the previous run's report and PDF are served at once; before
any run has one it is the newest completed run (and the request waits for it). On the
training and performance routes ``latest`` stays the newest completed run. Unknown ids
answer 404; errors are JSON, never a 2xx body.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from ctrops_common.bus import BrokerUnavailable
from ctrops_common.dataset import report_path, report_pdf_path, run_dir
from ctrops_common.documents import ReportDoc, read_document
from ctrops_common.events import ReportFailed, ReportReady, ReportRequested, Topic, new_id
from ctrops_common.storage import UnsafePath, is_id

from ..api_models import PDF_GENERATED_EXAMPLE, REPORT_EXAMPLE, PdfGenerated, success
from ..audit import audited
from ..broker_gate import wait_reply
from ..security import AUTH_RESPONSES, OPERATOR, VIEWER
from ..state import GatewayState, State

log = logging.getLogger(__name__)

router = APIRouter(tags=["reports"], responses=AUTH_RESPONSES)

RETRY_AFTER_S = 5
POLL_S = 0.25  # how often a waiting request looks at the read model and the file store
LATEST_SCAN = 50  # completed runs looked at, newest first, for the newest one with a report
# Documented answers besides 200 (the OpenAPI schema is fuzzed against the running gateway).
REPORT_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "Unknown run id, or `latest` before any completed run"},
    409: {"description": "Still training, or not explained/written within CTROPS_REPORT_TIMEOUT_S, "
                         "or its training or explanation failed; see Retry-After"},
    502: {"description": "The reporter failed to write the report, or the stored report.json does not match "
                         "the report document (generate it again)"},
}
PDF_ERRORS: dict[int | str, dict[str, Any]] = {
    **REPORT_ERRORS,
    503: {"description": "The message broker is unavailable"},
    504: {"description": "The reporter did not answer in time"},
}


class PdfOptions(BaseModel):
    """Sections of the PDF; camelCase (frontend) or snake_case, all optional, default true."""

    model_config = ConfigDict(extra="ignore", alias_generator=to_camel, populate_by_name=True)

    include_charts: bool = True
    include_insights: bool = True
    include_action_plan: bool = True


def _not_ready(detail: str, retry: bool = True) -> HTTPException:
    return HTTPException(409, detail=detail, headers={"Retry-After": str(RETRY_AFTER_S)} if retry else None)


async def _latest(state: GatewayState, topics: Topic | list[Topic], run_id: str | None = None):
    return await asyncio.to_thread(state.views.latest, topics, run_id)


def _deadline(state: GatewayState) -> float:
    return asyncio.get_running_loop().time() + state.settings.report_timeout_s


def _left(deadline: float) -> float:
    return deadline - asyncio.get_running_loop().time()


def report_exists(state: GatewayState, run_id: str) -> bool:
    return state.store.exists(report_path(run_id))


def newest_reported_run(state: GatewayState) -> str | None:
    """The newest completed run with a report.json; else the newest completed run; None before any."""
    done = state.views.events(Topic.TRAINING_DONE, newest_first=True, limit=LATEST_SCAN)
    if not done:
        return None
    for event in done:
        run_id = event.payload.run_id
        if is_id(run_id) and report_exists(state, run_id):
            return run_id
    return done[0].payload.run_id


async def resolve_run(state: GatewayState, run_id: str) -> str:
    """``latest`` -> the newest completed run that has a report (see the module's docstring);
    anything that is not a run id -> 404."""
    if run_id == "latest":
        found = await asyncio.to_thread(newest_reported_run, state)
        if found is None:
            raise HTTPException(404, detail="no completed training run yet / 완료된 학습이 아직 없습니다")
        return found
    if not is_id(run_id):
        raise HTTPException(404, detail=f"unknown run {run_id!r} / 알 수 없는 실행입니다")
    return run_id


async def explained(state: GatewayState, run_id: str) -> bool:
    """True once the run has its explanation; False while it is being explained.

    Raises 404 (unknown run) or 409 (still training, or a failure that waiting cannot mend).
    """
    if await _latest(state, Topic.TRAINING_DONE, run_id) is None:
        failed = await _latest(state, Topic.TRAINING_FAILED, run_id)
        if failed is not None:
            raise _not_ready(f"run {run_id} failed, so it has no report: {failed.payload.reason}", retry=False)
        started = await _latest(state, [Topic.TRAINING_REQUESTED, Topic.TRAINING_STARTED, Topic.TRAINING_PROGRESS],
                                run_id)
        if started is not None:
            raise _not_ready(f"run {run_id} is still training; the report follows its explanation / 학습 중입니다")
        raise HTTPException(404, detail=f"unknown run {run_id!r} / 알 수 없는 실행입니다")
    if await _latest(state, Topic.EXPLANATION_DONE, run_id) is not None:
        return True
    failed = await _latest(state, Topic.EXPLANATION_FAILED, run_id)
    if failed is not None:
        raise _not_ready(
            f"the explanation of run {run_id} failed, so there is no report: {failed.payload.reason}",
            retry=False,
        )
    return False


async def await_explanation(state: GatewayState, run_id: str, deadline: float) -> None:
    """Wait (until ``deadline``) for the run's explanation; 404/409 as ``explained`` says, or 409 at the deadline."""
    while not await explained(state, run_id):
        if _left(deadline) <= 0:
            raise _not_ready(
                f"run {run_id}: the explanation is still being computed after "
                f"{state.settings.report_timeout_s:.0f} s; the report follows / 분석 중입니다"
            )
        await asyncio.sleep(POLL_S)


async def request_pdf(
    state: GatewayState, run_id: str, options: PdfOptions, deadline: float | None = None
) -> ReportReady:
    """Publish ``report.requested`` and wait (until ``deadline``) for the reporter's answer.

    The reporter consumes explanation.done on its own: asked the moment this gateway saw
    the explanation, it may not have it yet and answers "not ready" (retryable); the
    request is then asked again until the deadline rather than failing the user's click.
    """
    deadline = _deadline(state) if deadline is None else deadline
    while True:
        try:
            return await _request_pdf_once(state, run_id, options, max(1.0, _left(deadline)))
        except HTTPException as exc:
            if exc.status_code != 409 or not (exc.headers or {}).get("Retry-After") or _left(deadline) <= POLL_S * 4:
                raise
        await asyncio.sleep(POLL_S * 2)


async def _request_pdf_once(state: GatewayState, run_id: str, options: PdfOptions, timeout_s: float) -> ReportReady:
    request_id = new_id()
    key = f"report:{request_id}"
    future = state.replies.expect(key)  # before publishing, so a fast answer is not missed
    try:
        await state.bus.publish(
            Topic.REPORT_REQUESTED,
            ReportRequested(run_id=run_id, request_id=request_id, **options.model_dump()),
            correlation_id=run_id,
        )
    except BrokerUnavailable:  # the broker is down: say so (503 + Retry-After), never hang
        state.replies.forget(key)
        raise
    try:
        event = await wait_reply(state.bus, state.replies, key, future, timeout_s)
    except asyncio.TimeoutError:
        raise HTTPException(
            504, detail=f"the reporter did not answer within {state.settings.report_timeout_s:.0f} s; try again",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        ) from None
    payload = event.payload  # the topic's model: report.ready or report.failed answer this key
    if isinstance(payload, ReportFailed):
        if payload.retryable:
            raise _not_ready(payload.reason)
        raise HTTPException(502, detail=f"report generation failed: {payload.reason}")
    if not isinstance(payload, ReportReady):
        raise TypeError(f"a {event.type} event answered report request {request_id}")
    return payload


async def newest_pdf(state: GatewayState, run_id: str) -> str | None:
    """Store path of the run's newest PDF that exists (the last generated, whatever its options)."""
    ready = await _latest(state, Topic.REPORT_READY, run_id)
    candidates = [ready.payload.pdf_location] if ready is not None else []
    candidates.append(report_pdf_path(run_id))  # the reporter's default, even before its event is seen
    for location in candidates:
        try:
            if location and location.startswith(f"{run_dir(run_id)}/") and state.store.exists(location):
                return location
        except UnsafePath:
            continue
    return None


async def await_report_json(state: GatewayState, run_id: str, deadline: float) -> str:
    """Store path of the run's report.json, waiting (until ``deadline``) while it is explained and written."""
    location = report_path(run_id)
    await await_explanation(state, run_id, deadline)
    while not state.store.exists(location):
        failed = await _latest(state, Topic.REPORT_FAILED, run_id)
        if failed is not None and not failed.payload.retryable and failed.payload.request_id == f"auto-{run_id}":
            raise HTTPException(502, detail=f"report generation failed: {failed.payload.reason}")
        if _left(deadline) <= 0:
            raise _not_ready(f"run {run_id}: the report is still being written after "
                             f"{state.settings.report_timeout_s:.0f} s / 보고서를 작성 중입니다")
        await asyncio.sleep(POLL_S)
    return location


async def await_auto_pdf(state: GatewayState, run_id: str, deadline: float) -> str | None:
    """The PDF the reporter renders by itself right after report.json (all sections), once it
    is there; None when its announcement says there is none, or at the deadline."""
    auto = f"auto-{run_id}"
    while (location := await newest_pdf(state, run_id)) is None and _left(deadline) > 0:
        answered = await asyncio.to_thread(state.views.events, [Topic.REPORT_READY, Topic.REPORT_FAILED], run_id)
        if any(e.payload.request_id == auto for e in answered):
            return await newest_pdf(state, run_id)
        await asyncio.sleep(POLL_S)
    return location


@router.get("/api/report/ai/{run_id}", dependencies=[VIEWER], summary="The AI marketing report of a run (report.json)",
            response_model=ReportDoc,
            responses={**success(REPORT_EXAMPLE, "The run's report.json, as the reporter wrote it"), **REPORT_ERRORS})
async def ai_report(run_id: str, state: State) -> JSONResponse:
    """The reporter's ``ReportDoc``, read back through its model and served as it dumps (camelCase keys,
    ``run_id`` beside ``runId``, the metrics in every spelling)."""
    run_id = await resolve_run(state, run_id)
    location = report_path(run_id)
    if not state.store.exists(location):
        location = await await_report_json(state, run_id, _deadline(state))
    try:
        report = await asyncio.to_thread(read_document, state.store, location, ReportDoc)
    except ValidationError as exc:
        log.warning("report.json of %s does not match the report document: %s", run_id, exc.error_count())
        raise HTTPException(502, detail=f"the stored report of run {run_id} does not match the report document; "
                                        "generate it again") from None
    return JSONResponse(report.model_dump(mode="json"))


@router.post("/api/report/generate-pdf/{run_id}", dependencies=[OPERATOR, audited("generate_pdf")],
             summary="Generate the PDF report (sections optional)",
             response_model=PdfGenerated,
             responses={**success(PDF_GENERATED_EXAMPLE, "The PDF was rendered; download it at `pdf_url`"),
                        **PDF_ERRORS})
async def generate_pdf(
    run_id: str, state: State, options: Annotated[PdfOptions | None, Body()] = None
) -> dict[str, Any]:
    run_id = await resolve_run(state, run_id)
    deadline = _deadline(state)
    await await_explanation(state, run_id, deadline)
    ready = await request_pdf(state, run_id, options or PdfOptions(), deadline)
    return {
        "pdf_url": f"/api/report/pdf/{run_id}",
        "pdfUrl": f"/api/report/pdf/{run_id}",
        "status": "generated",
        "run_id": run_id,
        "request_id": ready.request_id,
        "model_used": ready.model_used,
    }


@router.get(
    "/api/report/pdf/{run_id}",
    dependencies=[VIEWER, audited("download_pdf")],
    summary="The PDF report of a run (generated on demand)",
    response_class=FileResponse,
    responses={200: {"description": "The PDF (`Content-Disposition: attachment; filename=ctr-report-{run_id}.pdf`)",
                     "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}}},
               **PDF_ERRORS},
)
async def pdf_report(run_id: str, state: State) -> FileResponse:
    run_id = await resolve_run(state, run_id)
    deadline = _deadline(state)
    location = await newest_pdf(state, run_id)
    if location is None:
        await await_report_json(state, run_id, deadline)
        location = await await_auto_pdf(state, run_id, deadline)
    if location is None:  # the run's PDF was never rendered, or was removed: ask for it
        ready = await request_pdf(state, run_id, PdfOptions(), deadline)
        location = ready.pdf_location
        if not state.store.exists(location):
            raise HTTPException(502, detail="the reporter announced a PDF that is not in the file store")
    return FileResponse(
        state.store.path(location), media_type="application/pdf", filename=f"ctr-report-{run_id}.pdf",
    )
