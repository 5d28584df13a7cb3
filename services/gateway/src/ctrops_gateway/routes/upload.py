"""POST /api/upload: stream the CSV to the store, let ingest judge it, answer with its verdict.

The request body is parsed as it arrives (python-multipart's streaming parser over
``request.stream()``): the file part goes straight to ``uploads/<file_id>/original.csv``
through a temporary sibling, never whole in memory and never through a second temp copy.
The size limit (``CTROPS_MAX_UPLOAD_MB``) is enforced while streaming (413). The client's
file name is only ever metadata: paths are built from the generated file id.

Then the route publishes ``upload.received`` and waits for ingest's ``file.uploaded``
(200 with the contract's body) or ``file.rejected`` (its status and message).

``receive_and_judge`` is that whole path (concurrency slots, streaming, publishing, waiting
for the verdict); POST /api/predict/{run_id}/batch uses it too, with ``purpose="scoring"``
and its small form fields (``period``, ``bucket``, ``model``) checked before ingest sees the file.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header
from starlette.requests import ClientDisconnect

from ctrops_common.bus import BrokerUnavailable
from ctrops_common.dataset import upload_path
from ctrops_common.events import Event, FileUploaded, Topic, UploadPurpose, UploadReceived, new_id

from ..api_models import UPLOAD_EXAMPLE, UploadResult, success
from ..audit import audited
from ..broker_gate import require_broker, unavailable_response, wait_reply
from ..limits import BodyClock
from ..rate_limits import UPLOAD_RATE
from ..security import AUTH_RESPONSES, OPERATOR
from ..state import GatewayState, State

log = logging.getLogger(__name__)

router = APIRouter(tags=["upload"], dependencies=[OPERATOR], responses=AUTH_RESPONSES)

MB = 1 << 20
FIELD = "file"
WRITE_EVERY = 1 << 20  # bytes buffered from the parser before one write in a worker thread
MULTIPART_SLACK = 64 * 1024  # boundaries and part headers around the file itself
BUSY_RETRY_AFTER_S = 5


class UploadError(Exception):
    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


def too_large(limit_mb: float) -> UploadError:
    return UploadError(413, f"The file is larger than the upload limit of {limit_mb:g} MB (CTROPS_MAX_UPLOAD_MB). "
                            "Split it into smaller files or ask the operators to raise the limit.")


def filename_problem(name: str | None) -> str | None:
    """Why a client file name is refused, or None. It is never used to build a path."""
    if name is None:
        return f"The part '{FIELD}' must be a file upload (with a file name), not a plain form field."
    if not name.strip():
        return "The uploaded file has no name. Choose a CSV file such as data.csv."
    if len(name) > 255:
        return "The file name is longer than 255 characters. Rename the file and upload it again."
    if "/" in name or "\\" in name or name.strip() in (".", "..") or any(ord(c) < 32 or ord(c) == 127 for c in name):
        return f"The file name must be a plain name such as data.csv, not a path ({name[:80]!r})."
    return None


class _FilePart:
    """Collects the ``file`` part of a multipart body into an open file, as the parser yields it."""

    def __init__(self, limit_mb: float) -> None:
        self.limit_mb = limit_mb
        self.limit_bytes = int(limit_mb * MB)
        self.filename: str | None = None
        self.found = False
        self.size = 0
        self.other_bytes = 0  # data of the other parts: bounded too
        self.fields: dict[str, str] = {}  # the other parts as text (small form fields such as ``period``)
        self._field_name: str | None = None
        self._field_value = bytearray()
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.error: UploadError | None = None
        self._in_file = False
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, bytes] = {}

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda d, s, e: self._header_field.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self._header_value.extend(d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._headers = {}
        self._in_file = False
        self._field_name = None
        self._field_value.clear()

    def _header_end(self) -> None:
        self._headers[self._header_field.decode("latin-1").strip().lower()] = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get("content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if name != FIELD and options.get(b"filename") is None and name not in self.fields:
            self._field_name = name  # a plain form field: kept as text (the first of each name)
        if name != FIELD or self.found or self.error:
            return  # only the first 'file' part is the file
        self.found = True
        raw = options.get(b"filename")
        if raw is not None:
            try:
                self.filename = raw.decode("utf-8")  # browsers send UTF-8 names (Korean included)
            except UnicodeDecodeError:
                self.filename = raw.decode("latin-1")
        problem = filename_problem(self.filename)
        if problem:
            self.error = UploadError(400, problem)
            return
        self._in_file = True

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        self.other_bytes += 0 if self._in_file else end - start
        if self.other_bytes > MULTIPART_SLACK and not self.error:
            self.error = UploadError(413, f"Form fields other than '{FIELD}' are limited to "
                                          f"{MULTIPART_SLACK // 1024} KB in all.")
        if not self._in_file or self.error:
            if self._field_name is not None and not self.error:
                self._field_value.extend(data[start:end])
            return
        self.size += end - start
        if self.size > self.limit_bytes:
            self.error = too_large(self.limit_mb)
            self.pending.clear()
            self._in_file = False
            return
        self.pending.append(data[start:end])
        self.pending_bytes += end - start

    def _part_end(self) -> None:
        self._in_file = False
        if self._field_name is not None:
            self.fields[self._field_name] = bytes(self._field_value).decode("utf-8", "replace")
            self._field_name = None
            self._field_value.clear()

    def take(self) -> bytes:
        data = b"".join(self.pending)
        self.pending.clear()
        self.pending_bytes = 0
        return data


def _boundary(request: Request) -> bytes:
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise UploadError(415, f"Send the CSV as multipart/form-data with one part named '{FIELD}'.")
    return boundary


def _sync_close(fh: IO[bytes]) -> None:
    fh.flush()
    os.fsync(fh.fileno())
    fh.close()


async def _receive(request: Request, state: GatewayState, file_id: str) -> tuple[str, int, dict[str, str]]:
    """Stream the body into the store; returns (client file name, bytes, the other form fields as text).
    Leaves nothing on failure."""
    limit_mb = state.settings.max_upload_mb
    boundary = _boundary(request)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit_mb * MB + MULTIPART_SLACK:
        raise too_large(limit_mb)  # refused before reading a byte of the body
    part = _FilePart(limit_mb)
    parser = MultipartParser(boundary, part.callbacks())
    store = state.store
    target = upload_path(file_id)
    clock = BodyClock(state.settings.request_body_timeout_s, state.settings.request_body_min_rate_bps)
    tmp: Path | None = None
    fh: IO[bytes] | None = None
    try:
        tmp = await asyncio.to_thread(store.temp_path, target)
        fh = await asyncio.to_thread(open, tmp, "wb")
        try:
            chunks = request.stream().__aiter__()
            while True:
                try:
                    chunk = await asyncio.wait_for(chunks.__anext__(), clock.wait_s())
                except StopAsyncIteration:
                    break
                except asyncio.TimeoutError:
                    raise UploadError(408, f"{clock.explain(timed_out=True)}, so the upload was cut off and nothing of it "
                                           "was kept. Upload the file again.") from None
                clock.add(len(chunk))
                if clock.too_slow():
                    raise UploadError(408, f"{clock.explain()}, so the upload was cut off and nothing of it "
                                           "was kept. Upload the file again.")
                parser.write(chunk)
                if part.error:
                    raise part.error
                if part.pending_bytes >= WRITE_EVERY:
                    await asyncio.to_thread(fh.write, part.take())
        except ClientDisconnect:
            raise UploadError(400, "The upload was interrupted before the whole file arrived.") from None
        except UploadError:
            raise
        except Exception as exc:  # noqa: BLE001 - python-multipart raises several kinds for a broken body
            raise UploadError(400, f"The multipart body could not be parsed ({type(exc).__name__}). "
                                   f"Send the CSV as multipart/form-data with one part named '{FIELD}'.") from None
        parser.finalize()
        if part.error:
            raise part.error
        if part.found and parser.state != MultipartState.END:
            raise UploadError(400, "The upload was cut short: the request ended before the file did. "
                                   "Upload the file again.")
        if not part.found:
            raise UploadError(400, f"The request has no part named '{FIELD}'. Send the CSV in the form field '{FIELD}'.")
        if part.pending:
            await asyncio.to_thread(fh.write, part.take())
        await asyncio.to_thread(_sync_close, fh)
        await asyncio.to_thread(store.commit_temp, tmp, target)
    except BaseException:
        # Synchronously: a cancelled request (the client went away) must not skip the clean-up at an await.
        if fh is not None:
            with suppress(OSError):
                fh.close()
        if tmp is not None:
            with suppress(OSError):
                tmp.unlink()
        store.delete(f"uploads/{file_id}")
        raise
    return part.filename or "", part.size, part.fields


def upload_response(uploaded: FileUploaded) -> dict[str, Any]:
    """The contract's body for POST /api/upload from a ``file.uploaded`` payload."""
    validation, info = uploaded.validation, uploaded.info
    return {
        "file_id": uploaded.file_id,
        "filename": uploaded.filename,
        "rows": uploaded.rows,
        "columns": uploaded.columns,
        "validation": {
            "isValid": validation.is_valid,
            "errors": validation.errors,
            "warnings": validation.warnings,
        },
        "info": {
            "totalRows": info.total_rows,
            "totalColumns": info.total_columns,
            "missingValues": info.missing_values,
            "missingPercentage": info.missing_percentage,
            "duplicateRows": info.duplicate_rows,
            "clickedOne": info.clicked_one,
            "clickedZero": info.clicked_zero,
            "ctr": info.ctr,
        },
        "preview": uploaded.preview,
        "column_descriptions": uploaded.column_descriptions,
    }


_BODY = {
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": [FIELD],
                "properties": {FIELD: {"type": "string", "format": "binary", "description": "The CSV (UTF-8 or CP949)."}},
            }
        }
    },
    "required": True,
}


@router.post(
    "/api/upload",
    dependencies=[UPLOAD_RATE, audited("upload")],  # before the handler reads a byte of the body
    openapi_extra={"requestBody": _BODY},
    response_model=UploadResult,
    responses={
        **success(UPLOAD_EXAMPLE, "Ingest's verdict: statistics, a preview, and whether the file can be trained on "
                                  "(`validation.isValid`)"),
        400: {"description": "Not a usable CSV (the detail says what to fix)"},
        408: {"description": "The body stalled longer than CTROPS_REQUEST_BODY_TIMEOUT_S"},
        413: {"description": "Larger than CTROPS_MAX_UPLOAD_MB"},
        415: {"description": "Not multipart, or binary content"},
        503: {"description": "CTROPS_MAX_CONCURRENT_UPLOADS uploads already in progress (Retry-After), "
                             "or the broker is unavailable"},
        504: {"description": "Ingest did not answer in time"},
    },
)
async def upload(request: Request, state: State) -> Any:
    """Upload an ad-click log (CSV, multipart field `file`): validation, statistics and a preview."""
    judged = await receive_and_judge(request, state)
    if isinstance(judged, JSONResponse):
        return judged
    return upload_response(judged.uploaded)


@dataclass
class Judged:
    """An upload ingest accepted as a file (valid or not: see ``uploaded.validation``)."""

    uploaded: FileUploaded
    fields: dict[str, str] = field(default_factory=dict)  # the request's other form fields, as text


def _slots(state: GatewayState) -> asyncio.Semaphore:
    """Uploads in progress at once, per process: each holds a socket and a file, so they are bounded."""
    slots = getattr(state, "_upload_slots", None)
    if slots is None:
        slots = asyncio.Semaphore(state.settings.max_concurrent_uploads)
        state._upload_slots = slots  # type: ignore[attr-defined]
    return slots


async def receive_and_judge(
    request: Request, state: GatewayState, *, purpose: UploadPurpose = "training",
    check_fields: Callable[[dict[str, str]], JSONResponse | None] | None = None,
) -> Judged | JSONResponse:
    """Stream a multipart CSV upload into the store, have ingest judge it, and return its
    ``file.uploaded`` verdict, or the response to answer instead: 503 (uploads busy, broker
    down), the upload's 4xx (size, stall, multipart), ingest's rejection (status and message),
    504 (no verdict in time), or what ``check_fields`` answers about the other form fields
    (called once the body is in, before ingest is asked; the upload is removed then)."""
    slots = _slots(state)
    if slots.locked():
        limit = state.settings.max_concurrent_uploads
        return JSONResponse({"detail": f"The gateway is already receiving {limit} uploads "
                                       "(CTROPS_MAX_CONCURRENT_UPLOADS); try again in a few seconds."},
                            status_code=503,
                            headers={"Retry-After": str(BUSY_RETRY_AFTER_S), "Connection": "close"})  # body unread
    async with slots:
        return await _receive_and_judge(request, state, purpose, check_fields)


async def _receive_and_judge(
    request: Request, state: GatewayState, purpose: UploadPurpose,
    check_fields: Callable[[dict[str, str]], JSONResponse | None] | None,
) -> Judged | JSONResponse:
    file_id = new_id()
    try:
        require_broker(state.bus)  # before reading the body: nothing could check the file
    except BrokerUnavailable as exc:
        return unavailable_response(exc)
    try:
        filename, size, fields = await _receive(request, state, file_id)
    except UploadError as exc:
        # After a stall the rest of the body may still arrive: close the connection rather than read it.
        headers = {"Connection": "close"} if exc.status_code == 408 else None
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)
    if check_fields is not None and (refused := check_fields(fields)) is not None:
        await asyncio.to_thread(state.store.delete, f"uploads/{file_id}")
        return refused

    key = f"upload:{file_id}"
    future = state.replies.expect(key)  # before publishing: the verdict may come back at once
    try:
        await state.bus.publish(
            Topic.UPLOAD_RECEIVED,
            UploadReceived(file_id=file_id, filename=filename, location=upload_path(file_id), size_bytes=size,
                           purpose=purpose),
            correlation_id=file_id,
        )
    except BrokerUnavailable as exc:  # nothing will judge this upload
        log.warning("could not publish upload %s: %s", file_id, exc)
        state.replies.forget(key)
        await asyncio.to_thread(state.store.delete, f"uploads/{file_id}")
        return unavailable_response(exc)
    timeout = state.settings.upload_timeout_s
    try:
        event: Event[Any] = await wait_reply(state.bus, state.replies, key, future, timeout)
    except BrokerUnavailable as exc:  # the broker went down while ingest was checking: refused, not half-kept
        log.warning("broker lost while upload %s was being checked: %s", file_id, exc)
        await asyncio.to_thread(state.store.delete, f"uploads/{file_id}")
        return unavailable_response(exc)
    except asyncio.TimeoutError:
        return JSONResponse(
            {"detail": f"The ingest service did not finish checking the file within {timeout:g} s "
                       f"(file id {file_id}). It may be down or busy; try again later."},
            status_code=504,
        )
    await asyncio.to_thread(state.views.record, event)  # later requests (POST /api/train) can read it now
    if event.type == Topic.FILE_REJECTED:
        await asyncio.to_thread(state.store.delete, f"uploads/{file_id}")
        return JSONResponse({"detail": event.payload.message}, status_code=event.payload.status_code)
    return Judged(uploaded=event.payload, fields=fields)
