"""GET /api/audit: the audit trail, newest first (operator only when authentication is on)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field

from ..api_models import RUN_ID, success
from ..audit import AuditLog, audited
from ..security import AUTH_RESPONSES, OPERATOR

router = APIRouter(tags=["audit"], dependencies=[OPERATOR], responses=AUTH_RESPONSES)


class AuditEntry(BaseModel):
    id: int
    at: str = Field(description="When (ISO 8601, UTC)")
    client_id: str = Field(description="Who: the authenticated client id, or 'anonymous'")
    auth_method: str = Field(description="api_key, jwt or none")
    role: str | None = None
    remote_addr: str = Field(description="From where (the peer, or X-Forwarded-For of a trusted proxy)")
    action: str = Field(description="upload, train, cancel, generate_pdf, download_pdf, read_audit or other")
    method: str
    route: str = Field(description="The route template, e.g. /api/report/pdf/{run_id}")
    resource: str | None = Field(None, description="The run id, else the file id, the call was about")
    run_id: str | None = None
    file_id: str | None = None
    status: int = Field(description="HTTP status of the answer")
    outcome: str = Field(description="ok, denied (401/403), limited (413/429), rejected (other 4xx) or failed (5xx)")
    detail: str | None = Field(None, description="The error detail of a refused or failed call")
    duration_ms: float


class AuditPage(BaseModel):
    entries: list[AuditEntry]
    count: int


AUDIT_EXAMPLE = {"entries": [{
    "id": 412, "at": "2026-03-14T05:04:02.118+00:00", "client_id": "marketing-dashboard", "auth_method": "api_key",
    "role": "operator", "remote_addr": "10.0.3.17", "action": "download_pdf", "method": "GET",
    "route": "/api/report/pdf/{run_id}", "resource": RUN_ID, "run_id": RUN_ID, "file_id": None, "status": 200,
    "outcome": "ok", "detail": None, "duration_ms": 38.4}], "count": 1}


def _audit_log(request: Request) -> AuditLog:
    audit_log = getattr(request.app.state, "audit", None)
    if audit_log is None:
        raise HTTPException(503, "the audit trail is not available yet; the gateway is starting")
    return audit_log


@router.get(
    "/api/audit",
    dependencies=[audited("read_audit")],
    response_model=AuditPage,
    summary="Who uploaded, trained, generated or downloaded what, when and from where",
    responses={**success(AUDIT_EXAMPLE, "Matching entries, newest first"),
               503: {"description": "The gateway is still starting"}},
)
async def audit_trail(
    request: Request,
    action: Annotated[str | None, Query(pattern=r"^[a-z_]{1,64}$", description="Only this action")] = None,
    resource: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_-]{1,64}$",
                                          description="Only entries about this run id or file id")] = None,
    client: Annotated[str | None, Query(max_length=200, description="Only this client id")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many entries")] = 100,
) -> AuditPage:
    entries = await asyncio.to_thread(_audit_log(request).query, action, resource, client, limit)
    return AuditPage(entries=[AuditEntry(**e) for e in entries], count=len(entries))
