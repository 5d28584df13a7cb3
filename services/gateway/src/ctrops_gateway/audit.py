"""The audit trail: who did what to which resource, when, from where, with what outcome.

Each audited route declares its action where it is defined, as a dependency:
``@router.post("/api/upload", dependencies=[audited("upload")])``. ``AuditMiddleware`` records
the call from the route the request matches (so refusals before the route runs, 401 and 413
included, are recorded too), and stores it in the gateway database (table ``gateway_audit``;
SQLite by default, PostgreSQL when CTROPS_DATABASE_URL is set). The row is written
before the response leaves the gateway, so a client that saw an answer can trust the
trail has it. Refusals (401/403/413/429) of audited calls are recorded too.

Audited calls (declared on the routes; a route walk in the tests checks the list below); any other
non-GET call under /api is recorded as ``other``, so a new mutating route is never missed:

| method, route | action |
|---|---|
| POST /api/upload | upload |
| POST /api/train | train |
| POST /api/train/{run_id}/cancel, DELETE /api/train/{run_id} | cancel |
| POST /api/train/{run_id}/retrain | retrain (the resource is the new run) |
| POST /api/predict/{run_id} | predict |
| POST /api/predict/{run_id}/batch | predict_batch |
| POST /api/report/generate-pdf/{run_id} | generate_pdf |
| GET /api/report/pdf/{run_id} | download_pdf |
| GET /api/audit | read_audit |
| PUT /api/feature-mapping, DELETE /api/feature-mapping | feature_mapping |

The resource is the run id (path, response or ``Content-Disposition`` file name) or the
file id (response of an upload, request of a train call). No credential, query string or
request body is stored, only the ids taken from them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    or_,
    select,
)
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ctrops_common.db import as_utc
from ctrops_common.migrate import Schema, upgrade
from ctrops_common.storage import is_id

from .caller import matched_route, method_of, principal_of, remote_addr, route_of

log = logging.getLogger(__name__)

class Audited:
    """The audit action a route declares: ``dependencies=[audited("upload")]``. Running it does nothing;
    the middleware reads the declaration off the matched route (``declared_action``)."""

    def __init__(self, action: str) -> None:
        self.action = action

    async def __call__(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"Audited({self.action!r})"


def audited(action: str) -> Any:
    """``Depends`` on the route's audit action (see ``Audited``)."""
    from fastapi import Depends

    return Depends(Audited(action))


def declared_action(route: Any) -> str | None:
    """The action a route declares with ``audited(...)`` (its own or its router's dependencies)."""
    dependant = getattr(route, "dependant", None)
    for dependency in getattr(dependant, "dependencies", ()):
        if isinstance(dependency.call, Audited):
            return dependency.call.action
    return None


READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_CAPTURE = 1 << 20  # a JSON answer larger than this is passed on without looking for ids in it
MAX_REQUEST_CAPTURE = 64 * 1024
ID_KEYS = ("run_id", "file_id", "request_id")
_HEX_IN_NAME = re.compile(r"([0-9a-f]{32})")

# The tables as the queries see them; ctrops_gateway/migrations makes them (a test compares the two).
metadata = MetaData()

audit_table = Table(
    "gateway_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("client_id", String(200), nullable=False),
    Column("auth_method", String(16), nullable=False),
    Column("role", String(16)),
    Column("remote_addr", String(100), nullable=False),
    Column("action", String(64), nullable=False),
    Column("method", String(8), nullable=False),
    Column("route", String(200), nullable=False),
    Column("resource", String(64)),
    Column("run_id", String(64)),
    Column("file_id", String(64)),
    Column("status", Integer, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("detail", Text),
    Column("duration_ms", Float, nullable=False),
    Index("ix_gateway_audit_action_at", "action", "at"),
    Index("ix_gateway_audit_resource", "resource"),
    Index("ix_gateway_audit_client_at", "client_id", "at"),
)

COLUMNS = [c.name for c in audit_table.columns]


def outcome_of(status: int) -> str:
    if status < 400:
        return "ok"
    if status in (401, 403):
        return "denied"
    if status in (413, 429):
        return "limited"
    if status < 500:
        return "rejected"
    return "failed"


class AuditLog:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        upgrade(engine, Schema.of_service("gateway"))  # ctrops_gateway/migrations

    def record(self, entry: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(audit_table).values(**entry))

    def query(self, action: str | None = None, resource: str | None = None, client_id: str | None = None,
              limit: int = 100) -> list[dict[str, Any]]:
        """Newest first. ``resource`` matches the resource, run id or file id of an entry."""
        q = select(audit_table)
        if action:
            q = q.where(audit_table.c.action == action)
        if resource:
            q = q.where(or_(audit_table.c.resource == resource, audit_table.c.run_id == resource,
                            audit_table.c.file_id == resource))
        if client_id:
            q = q.where(audit_table.c.client_id == client_id)
        q = q.order_by(audit_table.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        return [{**row, "at": as_utc(row["at"]).isoformat()} for row in rows]

    def started_runs(self, client_id: str, remote: str | None, since: datetime) -> set[str]:
        """Run ids of the successful train (and retrain) calls of a client since ``since`` (``remote``:
        only those from this address, for anonymous callers)."""
        q = select(audit_table.c.run_id).where(
            audit_table.c.action.in_(("train", "retrain")), audit_table.c.outcome == "ok", audit_table.c.client_id == client_id,
            audit_table.c.at >= since, audit_table.c.run_id.is_not(None),
        )
        if remote is not None:
            q = q.where(audit_table.c.remote_addr == remote)
        with self.engine.connect() as conn:
            return {r[0] for r in conn.execute(q)}


# -- the middleware --------------------------------------------------------------------------------


def action_of(method: str, route: Any, path: str) -> str | None:
    """The action to record for a call to ``route`` (None: no such route, nothing happened to record)."""
    if route is None:
        return None
    declared = declared_action(route)
    if declared is not None and method != "HEAD" and method in getattr(route, "methods", ()):
        return declared  # (a 405 matches the path's route: its other methods are not that action)
    if method not in READ_METHODS and method != "WS" and path.startswith("/api/"):
        return "other"
    return None


def _ids_from_json(body: bytes) -> dict[str, str]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: data[k] for k in ID_KEYS if isinstance(data.get(k), str) and is_id(data[k])}


def _detail_from_json(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    detail = data.get("detail") if isinstance(data, dict) else None
    return detail[:500] if isinstance(detail, str) else None


class _Exchange:
    """What one audited request and its response said, collected as they pass."""

    def __init__(self, scope: Scope, action: str, template: str, params: dict[str, Any]) -> None:
        self.scope = scope
        self.action = action
        self.template = template
        self.params = params
        self.started = time.perf_counter()
        self.request_chunks: list[bytes] = []
        self.request_size = 0
        self.status: int | None = None
        self.response_json = False
        self.held: list[Message] = []
        self.held_size = 0
        self.disposition = ""
        self.recorded = False

    def entry(self, response_body: bytes | None) -> dict[str, Any]:
        ids: dict[str, str] = {}
        run_param = self.params.get("run_id")
        if isinstance(run_param, str) and is_id(run_param):
            ids["run_id"] = run_param
        if self.request_chunks:
            ids = {**_ids_from_json(b"".join(self.request_chunks)), **ids}
        detail = None
        if response_body is not None:
            ids.update(_ids_from_json(response_body) if (self.status or 500) < 400 else {})
            detail = _detail_from_json(response_body) if (self.status or 500) >= 400 else None
        if "run_id" not in ids and (found := _HEX_IN_NAME.search(self.disposition)):
            ids["run_id"] = found.group(1)
        principal = principal_of(self.scope)
        status = self.status or 500
        return {
            "at": datetime.now(timezone.utc),
            "client_id": principal.client_id if principal else "anonymous",
            "auth_method": principal.method if principal else "none",
            "role": principal.role.label if principal else None,
            "remote_addr": remote_addr(self.scope)[:100],
            "action": self.action,
            "method": method_of(self.scope),
            "route": self.template[:200],
            "resource": ids.get("run_id") or ids.get("file_id"),
            "run_id": ids.get("run_id"),
            "file_id": ids.get("file_id"),
            "status": status,
            "outcome": outcome_of(status),
            "detail": detail,
            "duration_ms": round((time.perf_counter() - self.started) * 1000, 3),
        }


class AuditMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = method_of(scope)
        template, params = route_of(scope)
        action = action_of(method, matched_route(scope), scope.get("path", ""))
        audit_log = getattr(getattr(scope.get("app"), "state", None), "audit", None)
        if action is None or audit_log is None:
            await self.app(scope, receive, send)
            return
        exchange = _Exchange(scope, action, template or "", params)
        json_request = Headers(scope=scope).get("content-type", "").startswith("application/json")

        async def tee_receive() -> Message:
            message = await receive()
            if json_request and message["type"] == "http.request" and exchange.request_size < MAX_REQUEST_CAPTURE:
                chunk = message.get("body", b"")
                exchange.request_chunks.append(chunk[: MAX_REQUEST_CAPTURE - exchange.request_size])
                exchange.request_size += len(chunk)
            return message

        async def audited_send(message: Message) -> None:
            if exchange.recorded:
                await send(message)
                return
            if message["type"] == "http.response.start":
                exchange.status = message["status"]
                headers = Headers(raw=message.get("headers", []))
                exchange.response_json = headers.get("content-type", "").startswith("application/json")
                exchange.disposition = headers.get("content-disposition", "")
                if not exchange.response_json:  # a file: record now, stream it untouched
                    await self._write(audit_log, exchange, None)
                    await send(message)
                    return
                exchange.held.append(message)
                return
            if message["type"] == "http.response.body":
                exchange.held.append(message)
                exchange.held_size += len(message.get("body", b""))
                more = message.get("more_body", False)
                if more and exchange.held_size <= MAX_CAPTURE:
                    return
                body = b"".join(m.get("body", b"") for m in exchange.held[1:]) if not more else None
                await self._write(audit_log, exchange, body)
                for held in exchange.held:
                    await send(held)
                exchange.held.clear()
                return
            await send(message)

        try:
            await self.app(scope, tee_receive, audited_send)
        except BaseException:
            if not exchange.recorded:
                exchange.status = exchange.status or 500
                await self._write(audit_log, exchange, None)
            raise
        if not exchange.recorded and exchange.status is None:
            exchange.status = 499  # the app returned without answering (client gone)
            await self._write(audit_log, exchange, None)

    @staticmethod
    async def _write(audit_log: AuditLog, exchange: _Exchange, response_body: bytes | None) -> None:
        exchange.recorded = True
        entry = exchange.entry(response_body)
        try:
            await asyncio.shield(asyncio.to_thread(audit_log.record, entry))
        except Exception:  # noqa: BLE001 - the call itself succeeded or failed already; say so loudly
            log.exception("could not write the audit entry for %s %s (status %s)", entry["method"], entry["route"],
                          entry["status"])
