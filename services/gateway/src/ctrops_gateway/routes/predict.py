"""Inference: online predictions (proxied to the scorer) and batch scoring jobs.

- ``POST /api/predict/{run_id}``: JSON rows, answered by the scorer's internal API
  (CTROPS_SCORER_URL, interface A of issue 16) through the gateway's one pooled HTTP client;
  the scorer's status, JSON body and Retry-After pass through untouched (``run_id`` is added
  beside the scorer's ``runId``, the contract's spelling). Scorer unreachable: 503 + Retry-After.
- ``POST /api/predict/{run_id}/batch``: a CSV stored and judged by ingest exactly like
  /api/upload (``upload.receive_and_judge``, ``purpose="scoring"``: ``clicked`` optional),
  then ``scoring.requested`` for the scorer; answers 202 with the job id at once.
- ``GET /api/predict/jobs/{job_id}`` and ``.../predictions.csv``: the job as the scorer's
  ``scoring.*`` events left it, and its CSV ``row,probability`` once completed.

The gateway scores nothing and computes no metric itself: it routes, validates, waits for
ingest's verdict and serves what the scorer produced.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import date
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from ctrops_common.dataset import predictions_path
from ctrops_common.events import PeriodBucket, ScoringModelChoice, ScoringRequested, Topic, TrainingDone, new_id
from ctrops_common.storage import is_id

from .. import model_runs, training_live
from ..api_models import FILE_ID, RUN_ID, success
from ..audit import audited
from ..caller import client_id_of
from ..rate_limits import UPLOAD_RATE
from ..scorer_client import ScorerAnswer, ScorerUnavailable
from ..scoring_jobs import JobView, job_view
from ..security import AUTH_RESPONSES, OPERATOR, VIEWER
from ..state import GatewayState, State
from .upload import _BODY as UPLOAD_BODY
from .upload import FIELD, receive_and_judge

router = APIRouter(tags=["inference"], responses=AUTH_RESPONSES)

RUN_REF_HELP = ("A run id (32 hex characters), `latest` (the newest completed run) or `champion` (the newest "
                "completed run whose model is the platform's champion).")
MODEL_HELP = ("Which of the run's models: `lstm` (LSTM+MLP) or `gbdt` (LightGBM); default `champion`, the run's "
              "better model.")
PERIOD_HELP = ("The monitoring period the batch belongs to: `YYYY-MM` (month), `YYYY-Www` (ISO week) or "
               "`YYYY-MM-DD` (day). Default: a file with a time column (`date`, `event_date`, `timestamp` or "
               "`event_time`) feeds one period per `bucket` of its rows' dates; any other file, the `bucket` of "
               "the upload's time. Given, it wins over the file's dates (the whole file is that one period).")
BUCKET_HELP = ("day, week or month (default month; implied by `period` when that is given): how the rows' dates, "
               "or the upload's time, become periods.")


# -- models (the documented shapes) ------------------------------------------------------------------


class PredictRequest(BaseModel):
    """Rows as in the CSV: numbers (or numeric strings), `seq` as its comma-separated string (or a
    list of integers), missing values null or absent; `clicked` is allowed and ignored."""

    rows: list[dict[str, Any]] = Field(description="1 to CTROPS_SCORER_MAX_ROWS (10,000) rows, column -> value.")


class Prediction(BaseModel):
    row: int = Field(description="0-based index of the row in the request.")
    probability: float = Field(description="Click probability, corrected to the true click rate.")


class PredictResponse(BaseModel):
    runId: str
    run_id: str = Field(description="The same run id, in the contract's spelling.")
    model: Literal["lstm", "gbdt"]
    modelLabel: str = Field(description="LSTM+MLP or LightGBM.")
    rows: int
    predictions: list[Prediction] = Field(description="One per row, in request order.")
    seconds: float = Field(description="Time the scorer spent on the request.")


class BatchAccepted(BaseModel):
    jobId: str
    job_id: str
    status: Literal["queued"] = "queued"
    runId: str = Field(description="The run the job scores with (an alias resolved to its run id).")
    run_id: str
    model: ScoringModelChoice
    fileId: str
    file_id: str
    filename: str
    rows: int
    labelled: bool = Field(description="The file has `clicked`: the batch's period gets label-based metrics.")
    period: str | None = Field(description="The period asked for; null: the periods come from the file's time "
                                           "column when it has one (`timeColumn`), else from the upload's time.")
    bucket: PeriodBucket
    timeColumn: str | None = Field(None, description="The file's time column, whose dates (KST) split the batch "
                                                     "into periods when no period is given; null when none.")
    firstDate: str | None = Field(None, description="The earliest day in the time column (YYYY-MM-DD, KST).")
    lastDate: str | None = Field(None, description="The latest day in the time column (YYYY-MM-DD, KST).")
    warnings: list[str] = Field(description="Ingest's warnings about the file (values treated as missing, ...).")
    statusUrl: str
    downloadUrl: str


class JobState(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    jobId: str
    status: Literal["queued", "scoring", "completed", "failed"]
    rowsDone: int
    rowsTotal: int
    progress: float = Field(description="rowsDone / rowsTotal, 0..1.")
    runId: str | None
    model: ScoringModelChoice | None = Field(description="The model asked for (`champion`, `lstm`, `gbdt`).")
    modelKind: Literal["lstm", "gbdt"] | None = Field(description="The model that scored (once completed).")
    periodId: str | None = Field(description="The monitoring period the batch fed (the first, when its dates "
                                             "fed several), once completed.")
    periodIds: list[str] = Field(description="Every monitoring period the batch fed, in time order (several when "
                                             "the file's time column spread its rows over several periods); "
                                             "empty until completed, or when no period could be built.")
    period: str | None
    bucket: PeriodBucket | None
    labelled: bool | None
    fileId: str | None
    filename: str | None
    seconds: float | None
    error: str | None = Field(description="Why the job failed, for a person.")
    errorStatus: int | None = Field(description="The status the job's routes answer for that failure.")
    createdAt: str | None
    updatedAt: str | None
    downloadUrl: str | None = Field(description="The predictions CSV, once completed.")


JOB_ID = "e4f5a6b7c8d94e0fa1b2c3d4e5f60718"
PREDICT_EXAMPLE = {"runId": RUN_ID, "run_id": RUN_ID, "model": "gbdt", "modelLabel": "LightGBM", "rows": 2,
                   "predictions": [{"row": 0, "probability": 0.0213}, {"row": 1, "probability": 0.0071}],
                   "seconds": 0.0042}
BATCH_EXAMPLE = {
    "jobId": JOB_ID, "job_id": JOB_ID, "status": "queued", "runId": RUN_ID, "run_id": RUN_ID, "model": "champion",
    "fileId": FILE_ID, "file_id": FILE_ID, "filename": "march_traffic.csv", "rows": 50000, "labelled": True,
    "period": None, "bucket": "month", "timeColumn": "event_date", "firstDate": "2026-03-01",
    "lastDate": "2026-03-31", "warnings": [], "statusUrl": f"/api/predict/jobs/{JOB_ID}",
    "downloadUrl": f"/api/predict/jobs/{JOB_ID}/predictions.csv",
}
JOB_EXAMPLE = {
    "jobId": JOB_ID, "status": "completed", "rowsDone": 50000, "rowsTotal": 50000, "progress": 1.0, "runId": RUN_ID,
    "model": "champion", "modelKind": "gbdt", "periodId": f"{RUN_ID}:gbdt:2026-03",
    "periodIds": [f"{RUN_ID}:gbdt:2026-03"],
    "period": None, "bucket": "month", "labelled": True, "fileId": FILE_ID, "filename": "march_traffic.csv",
    "seconds": 3.81, "error": None, "errorStatus": None, "createdAt": "2026-03-31T23:10:04.551+00:00",
    "updatedAt": "2026-03-31T23:10:09.127+00:00", "downloadUrl": f"/api/predict/jobs/{JOB_ID}/predictions.csv",
}


# -- shared helpers -----------------------------------------------------------------------------------


def _error(status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": detail, **extra}, status_code=status, headers=headers)


def check_run_ref(run_id: str) -> None:
    """Never forward or look up an id that is not one (it would land in the scorer's URL)."""
    if not model_runs.is_run_ref(run_id):
        raise HTTPException(404, f"unknown run id {run_id[:80]!r}: use a 32-hex run id, 'latest' or 'champion'")


def resolve_run(state: GatewayState, run_id: str) -> TrainingDone:
    """The completed run ``run_id`` means (blocking: call in a thread); 404 unknown, 409 not completed."""
    check_run_ref(run_id)
    done = model_runs.resolve_completed(state.views, run_id)
    if done is not None:
        return done
    if run_id == "latest":
        raise HTTPException(404, "no training run has completed yet: train a model first (POST /api/train)")
    if run_id == "champion":
        raise HTTPException(404, "no run's model is the champion yet: train a model first (POST /api/train)")
    view = training_live.run_view(state.views, run_id)
    if view is None:
        raise HTTPException(404, f"unknown run id {run_id!r}: run ids are the run_id that POST /api/train returned")
    if view.status == "failed":
        raise HTTPException(409, f"run {run_id} failed, so it has no model to score with; use another run "
                                 "(GET /api/train/runs) or 'latest'")
    raise HTTPException(409, f"run {run_id} is still training; score once it has completed "
                             f"(GET /api/train/status/{run_id}) or use 'latest'")


_PERIOD_FORMS: list[tuple[PeriodBucket, re.Pattern[str]]] = [
    ("month", re.compile(r"^(\d{4})-(\d{2})$")),
    ("week", re.compile(r"^(\d{4})-W(\d{2})$")),
    ("day", re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")),
]


def period_bucket(period: str) -> PeriodBucket:
    """The bucket a period label names; ValueError saying what is wrong with it."""
    for bucket, pattern in _PERIOD_FORMS:
        match = pattern.match(period)
        if match is None:
            continue
        year, second = int(match.group(1)), int(match.group(2))
        try:
            if bucket == "month":
                date(year, second, 1)
            elif bucket == "week":
                date.fromisocalendar(year, second, 1)
            else:
                date(year, second, int(match.group(3)))
        except ValueError:
            raise ValueError(f"period {period!r} is not a real {bucket}") from None
        return bucket
    raise ValueError(f"period {period[:40]!r} must be YYYY-MM (a month, e.g. 2026-03), YYYY-Www (an ISO week, "
                     "e.g. 2026-W11) or YYYY-MM-DD (a day, e.g. 2026-03-14)")


def scoring_options(period: str | None, bucket: str | None, model: str | None) -> tuple[str | None, PeriodBucket,
                                                                                          ScoringModelChoice]:
    """Checked (period, bucket, model); ValueError with a sentence for a person."""
    period = period.strip() if period is not None and period.strip() else None
    bucket = bucket.strip() if bucket is not None and bucket.strip() else None
    if bucket is not None and bucket not in ("day", "week", "month"):
        raise ValueError(f"bucket {bucket[:40]!r} must be day, week or month")
    if period is not None:
        implied = period_bucket(period)
        if bucket is not None and bucket != implied:
            raise ValueError(f"period {period!r} is a {implied} but bucket is {bucket!r}: give one that matches "
                             "(or leave bucket out)")
        bucket = implied
    model = model.strip() if model is not None and model.strip() else "champion"
    if model not in ("champion", "lstm", "gbdt"):
        raise ValueError(f"model {model[:40]!r} must be champion, lstm or gbdt")
    return period, bucket or "month", model  # type: ignore[return-value]


def check_model(done: TrainingDone, model: ScoringModelChoice) -> None:
    if model_runs.kind_for(done, model) is None:
        raise HTTPException(404, f"run {done.run_id} has no {model} model (it saved: "
                                 f"{', '.join(model_runs.model_kinds(done))}); choose one of those or leave model out")


# -- online -------------------------------------------------------------------------------------------

_PREDICT_BODY = {
    "content": {"application/json": {"schema": PredictRequest.model_json_schema(),
                                     "example": {"rows": [{"hour": 14, "age_group": 5, "gender": 1,
                                                           "seq": "12,57,9", "l_feat_1": 0.3}]}}},
    "required": True,
}
# The scorer's error body {detail, problems: [{row, column, message}]}, written out: a pydantic model's nested
# model would be a $defs reference outside components/schemas.
_ERROR_BODY = {"application/json": {"schema": {
    "type": "object", "required": ["detail"],
    "properties": {
        "detail": {"type": "string", "description": "One sentence for a person."},
        "problems": {"type": "array", "items": {
            "type": "object", "required": ["message"],
            "properties": {"row": {"type": ["integer", "null"]}, "column": {"type": ["string", "null"]},
                           "message": {"type": "string"}}}},
    }}}}


def _pass_through(answer: ScorerAnswer) -> Response:
    """The scorer's answer as it came (status, JSON, Retry-After), ``run_id`` added to a 200."""
    headers = {"Retry-After": answer.retry_after} if answer.retry_after else None
    if "json" not in answer.content_type.lower():
        return _error(502, f"The scoring service answered {answer.status_code} without a JSON body; "
                           "check its log (the gateway passes only JSON on).")
    if answer.status_code != 200:
        return Response(answer.body, status_code=answer.status_code, media_type="application/json", headers=headers)
    try:
        data = json.loads(answer.body)
        data["run_id"] = data.get("runId")
        body = json.dumps(data, allow_nan=False, ensure_ascii=False, separators=(",", ":")).encode()
    except (ValueError, TypeError, AttributeError):
        return _error(502, "The scoring service answered 200 with a body that is not a JSON object of "
                           "finite numbers; check its log.")
    return Response(body, status_code=200, media_type="application/json", headers=headers)


@router.post(
    "/api/predict/{run_id}",
    dependencies=[OPERATOR, audited("predict")],
    response_model=PredictResponse,
    description=(
        'Click probabilities for JSON rows (`{"rows": [{column: value}]}`), in request order, from the run\'s '
        f"model (`run_id`: {RUN_REF_HELP}). Answered by the scoring service, which keeps the champion loaded; "
        "at least 1,000 rows per request are accepted (CTROPS_SCORER_MAX_ROWS, default 10,000). "
        "A multipart `file` (a CSV) sent to this route, as the frontend's contract allows, is a batch job: "
        "it is answered exactly as POST /api/predict/{run_id}/batch."
    ),
    openapi_extra={"requestBody": _PREDICT_BODY},
    responses={
        **success(PREDICT_EXAMPLE, "One probability per row, in request order (the scorer's answer)"),
        404: {"description": "Unknown run, no completed run yet, or the run has no model of that kind",
              "content": _ERROR_BODY},
        413: {"description": "More rows than CTROPS_SCORER_MAX_ROWS, or a body above CTROPS_MAX_PREDICT_BODY_MB",
              "content": _ERROR_BODY},
        415: {"description": "The body is not JSON"},
        422: {"description": "Bad rows, columns or body: `problems` names each row and column",
              "content": _ERROR_BODY},
        500: {"description": "The scorer could not load the run's model (its answer, passed on)",
              "content": _ERROR_BODY},
        502: {"description": "The scorer answered without JSON, or with a 200 body that is not a JSON object"},
        503: {"description": "The scorer is unreachable or still loading the model (Retry-After)"},
        504: {"description": "The scorer did not answer within CTROPS_SCORER_TIMEOUT_S"},
    },
)
async def predict(
    run_id: str, request: Request, state: State,
    model: ScoringModelChoice | None = Query(None, description=MODEL_HELP),
) -> Response:
    """Click probabilities for JSON rows, answered by the scoring service (see the description)."""
    check_run_ref(run_id)
    content_type = request.headers.get("content-type", "application/json").lower()
    if "json" not in content_type:
        return _error(415, "Send the rows as JSON (Content-Type: application/json): "
                           '{"rows": [{"hour": 14, "seq": "12,57,9", ...}]}. For a CSV file send it as the '
                           f"multipart field `file` (here or to POST /api/predict/{run_id}/batch).")
    body = await request.body()
    if not body.strip():
        return _error(422, 'The body is empty: send {"rows": [{column: value, ...}, ...]}.')
    params = {"model": model} if model else {}
    try:
        answer = await state.scorer_client().forward(f"/predict/{run_id}", body, params)
    except ScorerUnavailable as exc:
        headers = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s else None
        return _error(exc.status_code, exc.message, headers, unavailable="scorer")
    return _pass_through(answer)


# -- batch ----------------------------------------------------------------------------------------------


def _batch_body() -> dict[str, Any]:
    body = json.loads(json.dumps(UPLOAD_BODY))
    schema = body["content"]["multipart/form-data"]["schema"]
    schema["properties"][FIELD]["description"] = "The CSV to score (the upload's columns; `clicked` optional)."
    schema["properties"].update({
        "period": {"type": "string", "description": PERIOD_HELP + " (or the query parameter)"},
        "bucket": {"type": "string", "enum": ["day", "week", "month"], "description": BUCKET_HELP},
        "model": {"type": "string", "enum": ["champion", "lstm", "gbdt"], "description": MODEL_HELP},
    })
    return body


def job_urls(job_id: str) -> tuple[str, str]:
    return f"/api/predict/jobs/{job_id}", f"/api/predict/jobs/{job_id}/predictions.csv"


@router.post(
    "/api/predict/{run_id}/batch",
    dependencies=[OPERATOR, UPLOAD_RATE, audited("predict_batch")],  # a file to score is an upload; refused before its body is read
    status_code=202,
    response_model=BatchAccepted,
    description=(
        f"Score a CSV (multipart field `file`) with the run's model in the background (`run_id`: {RUN_REF_HELP}). "
        "The file is checked like an upload (`clicked` optional: with it the batch becomes a labelled "
        "monitoring period). A time column (`date`, `event_date`, `timestamp` or `event_time`: YYYY-MM-DD or "
        "YYYY-MM-DD HH:MM[:SS], Korean time unless an offset is given) puts each row in the period of its "
        "day, week or month (`bucket`) when no `period` is given: `period` null in the answer means that. "
        "Answers 202 with the job id at once; follow it at `statusUrl` and download "
        "`row,probability` at `downloadUrl`. `period`, `bucket` and `model` may also come as form fields."
    ),
    openapi_extra={"requestBody": _batch_body()},
    responses={
        **success(BATCH_EXAMPLE, "The job was queued; follow it at `statusUrl`", status=202),
        400: {"description": "Not a usable CSV (the detail says what to fix)"},
        404: {"description": "Unknown run, no completed run yet, or the run has no model of that kind"},
        408: {"description": "The body stalled longer than CTROPS_REQUEST_BODY_TIMEOUT_S"},
        409: {"description": "The run has not completed (still training, or failed)"},
        413: {"description": "Larger than CTROPS_MAX_UPLOAD_MB"},
        415: {"description": "Not multipart, or binary content"},
        422: {"description": "Bad period/bucket/model, or the file failed validation (`validation.errors`)"},
        503: {"description": "Uploads busy (Retry-After) or the broker is unavailable"},
        504: {"description": "Ingest did not answer in time"},
    },
)
async def predict_batch(
    run_id: str, request: Request, state: State,
    model: ScoringModelChoice | None = Query(None, description=MODEL_HELP),
    period: str | None = Query(None, max_length=40, description=PERIOD_HELP),
    bucket: PeriodBucket | None = Query(None, description=BUCKET_HELP),
) -> JSONResponse:
    """Score a CSV in the background (see the description)."""
    try:
        options = scoring_options(period, bucket, model)
    except ValueError as exc:
        return _error(422, str(exc))
    done = await asyncio.to_thread(resolve_run, state, run_id)  # before the body: no upload for nothing
    check_model(done, options[2])

    chosen: dict[str, Any] = {}

    def check_fields(fields: dict[str, str]) -> JSONResponse | None:
        try:
            chosen["options"] = scoring_options(
                period if period is not None else fields.get("period"),
                bucket if bucket is not None else fields.get("bucket"),
                model if model is not None else fields.get("model"),
            )
        except ValueError as exc:
            return _error(422, str(exc))
        return None

    judged = await receive_and_judge(request, state, purpose="scoring", check_fields=check_fields)
    if isinstance(judged, JSONResponse):
        return judged
    uploaded = judged.uploaded
    validation = uploaded.validation
    if not validation.is_valid or not uploaded.parquet_location:
        errors = "; ".join(validation.errors) or "the file could not be converted for scoring"
        return _error(422, f"The file cannot be scored: {errors}. Fix the file and upload it again.",
                      file_id=uploaded.file_id,
                      validation={"isValid": False, "errors": validation.errors, "warnings": validation.warnings})
    the_period, the_bucket, the_model = chosen.get("options", options)
    if run_id in model_runs.ALIASES:  # the alias may have moved while ingest checked the file
        done = await asyncio.to_thread(resolve_run, state, run_id)
    check_model(done, the_model)

    job_id = new_id()
    requested = ScoringRequested(
        job_id=job_id, run_id=done.run_id, model=the_model, file_id=uploaded.file_id, filename=uploaded.filename,
        parquet_location=uploaded.parquet_location, rows=uploaded.rows, labelled=uploaded.labelled,
        period=the_period, bucket=the_bucket, client_id=client_id_of(request.scope),
    )
    event = await state.bus.publish(Topic.SCORING_REQUESTED, requested, correlation_id=job_id)
    await asyncio.to_thread(state.views.record, event)  # the job is readable at once
    status_url, download_url = job_urls(job_id)
    accepted = BatchAccepted(
        jobId=job_id, job_id=job_id, runId=done.run_id, run_id=done.run_id, model=the_model,
        fileId=uploaded.file_id, file_id=uploaded.file_id, filename=uploaded.filename, rows=uploaded.rows,
        labelled=uploaded.labelled, period=the_period, bucket=the_bucket, timeColumn=uploaded.time_column,
        firstDate=uploaded.first_date, lastDate=uploaded.last_date, warnings=validation.warnings,
        statusUrl=status_url, downloadUrl=download_url,
    )
    return JSONResponse(accepted.model_dump(), status_code=202)


# -- jobs ---------------------------------------------------------------------------------------------------


def _unknown_job(job_id: str) -> HTTPException:
    return HTTPException(404, f"unknown scoring job {job_id[:80]!r}: job ids are the jobId that "
                              "POST /api/predict/{run_id}/batch returned")


async def _job(state: GatewayState, job_id: str) -> JobView:
    view = await asyncio.to_thread(job_view, state.views, job_id) if is_id(job_id) else None
    if view is None:
        raise _unknown_job(job_id)
    return view


def job_state(view: JobView) -> JobState:
    requested, done, failed = view.requested, view.done, view.failed
    total, rows_done = view.rows_total, view.rows_done
    return JobState(
        jobId=view.job_id,
        status=view.status,
        rowsDone=rows_done,
        rowsTotal=total,
        progress=round(min(1.0, rows_done / total), 4) if total else (1.0 if done is not None else 0.0),
        runId=done.run_id if done is not None else (requested.run_id if requested is not None else None),
        model=requested.model if requested is not None else None,
        modelKind=done.model_kind if done is not None else None,
        periodId=done.period_id if done is not None else None,
        periodIds=(done.period_ids or ([done.period_id] if done.period_id else [])) if done is not None else [],
        period=requested.period if requested is not None else None,
        bucket=requested.bucket if requested is not None else None,
        labelled=requested.labelled if requested is not None else None,
        fileId=requested.file_id if requested is not None else None,
        filename=requested.filename if requested is not None else None,
        seconds=done.seconds if done is not None else None,
        error=failed.reason if failed is not None and done is None else None,
        errorStatus=failed.status_code if failed is not None and done is None else None,
        createdAt=view.requested_at.isoformat() if view.requested_at else None,
        updatedAt=view.updated_at.isoformat() if view.updated_at else None,
        downloadUrl=job_urls(view.job_id)[1] if done is not None else None,
    )


@router.get("/api/predict/jobs/{job_id}", dependencies=[VIEWER], response_model=JobState,
            responses={**success(JOB_EXAMPLE, "The job (a completed one here)"),
                       404: {"description": "Unknown job id"}})
async def scoring_job(job_id: str, state: State) -> JobState:
    """A batch scoring job: status (queued, scoring, completed, failed), rowsDone of rowsTotal, the run and
    model, the monitoring period it fed, and why it failed."""
    return job_state(await _job(state, job_id))


@router.get(
    "/api/predict/jobs/{job_id}/predictions.csv",
    dependencies=[VIEWER],
    response_class=FileResponse,
    responses={
        200: {"content": {"text/csv": {"schema": {"type": "string", "format": "binary"},
                                       "example": "row,probability\n0,0.0213\n1,0.0071\n2,0.0388\n"}},
              "description": "CSV `row,probability` (row = 0-based data row of the file)"},
        404: {"description": "Unknown job id, or the job failed because its run or model was not found"},
        409: {"description": "The job is still queued or scoring"},
        410: {"description": "The predictions are no longer stored"},
        422: {"description": "The job failed: the file or its options could not be scored (the detail says why)"},
        500: {"description": "The job failed inside the scorer: the model could not be loaded or the file could not "
                             "be scored (the status the scorer gave, passed on)"},
    },
)
async def scoring_predictions(job_id: str, state: State) -> FileResponse:
    """The job's predictions as CSV `row,probability`, once it has completed."""
    view = await _job(state, job_id)
    if view.done is None:
        if view.failed is not None:
            status = view.failed.status_code if 400 <= view.failed.status_code < 600 else 422
            raise HTTPException(status, f"scoring job {job_id} failed: {view.failed.reason}")
        raise HTTPException(409, f"scoring job {job_id} is still {view.status} ({view.rows_done} of "
                                 f"{view.rows_total} rows); download it once GET /api/predict/jobs/{job_id} "
                                 "says completed")
    location = view.done.predictions_location or predictions_path(job_id)
    path = state.store.path(location)
    if not await asyncio.to_thread(path.is_file):
        raise HTTPException(410, f"the predictions of scoring job {job_id} are no longer stored; score the file "
                                 "again")
    return FileResponse(path, media_type="text/csv", filename=f"predictions_{job_id}.csv")
