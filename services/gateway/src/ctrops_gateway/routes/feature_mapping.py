"""The feature-name mapping: GET, PUT and DELETE /api/feature-mapping.

Every column is shown to people by a Korean name from one mapping (column -> name, group,
description; ctrops_common.feature_names). The platform ships one for the Toss layout; a
user uploads their own to rename or add columns:

- ``GET /api/feature-mapping``: the mapping in effect (shipped, overlaid with the user's),
  each entry saying where it comes from.
- ``PUT /api/feature-mapping``: replace the user's mapping. The body is a CSV
  (``Content-Type: text/csv``; header ``column,name,group,description``, group and
  description optional; UTF-8 with or without BOM, or CP949), JSON (``application/json``:
  ``{"entries": [{"column", "name", "group", "description"}]}`` or the bare list), or
  ``multipart/form-data`` with the file in the part ``file`` (``.json`` by name or type,
  else CSV). A mapping with a duplicate column, an empty name or an unknown header is
  refused with 422 naming the line (CSV) or entry (JSON) and the field; nothing is stored.
- ``DELETE /api/feature-mapping``: remove the user's mapping (back to the shipped names).

The user's mapping is stored in the shared file store as a ``FeatureNameMapping``; the
reporter (report and PDF), ingest (an upload's ``column_descriptions``) and the importance
routes read it from there, so the next report and upload use the new names. Writing needs
the operator role when authentication is on.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile

from ctrops_common.feature_names import (
    FeatureNameMapping,
    MappingError,
    delete_override,
    effective_feature_names,
    parse_mapping,
    save_override,
    stored_override,
)

from ..api_models import success
from ..audit import audited
from ..security import AUTH_RESPONSES, OPERATOR, VIEWER
from ..state import State

router = APIRouter(tags=["feature mapping"], responses=AUTH_RESPONSES)

FIELD = "file"
CSV_TYPES = frozenset({"text/csv", "application/csv", "text/plain", "application/vnd.ms-excel"})
JSON_TYPES = frozenset({"application/json", "text/json"})
FORMATS_HELP = ("send the mapping as text/csv (header column,name,group,description), application/json "
                '({"entries": [{"column": ..., "name": ...}]}), or multipart/form-data with the file in the part '
                f"'{FIELD}'")


class FeatureNameView(BaseModel):
    column: str = Field(description="Column name exactly as in the data's header.")
    name: str = Field(description="Korean display name used in reports, the PDF and the importance routes.")
    group: str = Field(description="Group, e.g. 사용자, 지면·시간, 행동 이력, 광고, 정보영역, 과거 이력.")
    description: str = Field(description="What the column holds.")
    source: Literal["shipped", "user"] = Field(description="`user`: from the uploaded mapping; `shipped`: built in.")


class FeatureMappingView(BaseModel):
    """The mapping in effect: the shipped names overlaid with the user's mapping, if any."""

    override: bool = Field(description="True when a user's mapping is stored.")
    updated_at: datetime | None = Field(None, description="When the user's mapping was stored (UTC).")
    user_entries: int = Field(description="Entries of the user's mapping (0 without one).")
    entries: list[FeatureNameView]


_SHIPPED = [
    {"column": "hour", "name": "시간대", "group": "지면·시간", "description": "노출 시각 (0-23시)", "source": "shipped"},
    {"column": "age_group", "name": "연령대", "group": "사용자", "description": "사용자 연령대 코드", "source": "shipped"},
]
MAPPING_EXAMPLE = {"override": False, "updated_at": None, "user_entries": 0, "entries": _SHIPPED}
USER_MAPPING_EXAMPLE = {
    "override": True, "updated_at": "2026-03-14T05:20:31.402000Z", "user_entries": 1,
    "entries": [*_SHIPPED, {"column": "feat_a_3", "name": "앱 사용 빈도", "group": "정보영역",
                            "description": "하루 평균 앱 실행 수", "source": "user"}],
}


def _view(store) -> dict[str, Any]:
    override = stored_override(store)
    effective = effective_feature_names(store)
    mine = override.columns() if override else set()
    return {
        "override": override is not None,
        "updated_at": override.updated_at if override else None,
        "user_entries": len(override.entries) if override else 0,
        "entries": [{**e.model_dump(), "source": "user" if e.column in mine else "shipped"} for e in effective.entries],
    }


def _problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def _kind(content_type: str, filename: str | None = None) -> str | None:
    base = content_type.split(";")[0].strip().lower()
    if filename and filename.lower().endswith(".json"):
        return "json"
    if filename and filename.lower().endswith((".csv", ".txt")):
        return "csv"
    if base in JSON_TYPES:
        return "json"
    if base in CSV_TYPES:
        return "csv"
    return None


async def _mapping_from(request: Request) -> FeatureNameMapping | JSONResponse:
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() == "multipart/form-data":
        try:
            form = await request.form(max_files=1, max_fields=10)
        except Exception as exc:  # noqa: BLE001 - python-multipart raises several kinds for a broken body
            return _problem(400, f"the multipart body could not be parsed ({type(exc).__name__}); {FORMATS_HELP}")
        try:
            part = form.get(FIELD)
            if not isinstance(part, UploadFile):
                return _problem(400, f"the request has no file part named '{FIELD}'; {FORMATS_HELP}")
            data = await part.read()
            kind = _kind(part.content_type or "", part.filename) or "csv"
        finally:
            await form.close()
    else:
        kind = _kind(content_type)
        if kind is None:
            shown = content_type[:80] or "none"
            return _problem(415, f"unknown format (Content-Type {shown!r}): {FORMATS_HELP}")
        data = await request.body()
    if not data.strip():
        return _problem(400, f"the mapping is empty; {FORMATS_HELP}")
    try:
        mapping = parse_mapping(data, kind)
    except MappingError as exc:
        return _problem(422, f"the feature-name mapping ({kind.upper()}) was not stored: {exc}")
    return mapping.model_copy(update={"updated_at": datetime.now(timezone.utc)})


def _inline_defs(schema: dict[str, Any]) -> dict[str, Any]:
    """Pydantic's JSON schema with its ``$defs`` written in place: OpenAPI has no ``#/$defs``, so a
    ``$ref`` to it is unresolvable (ReDoc stopped rendering the whole page on it)."""
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                rest = {key: value for key, value in node.items() if key != "$ref"}
                return resolve({**definitions[ref.removeprefix("#/$defs/")], **rest})
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return resolve(schema)


_BODY = {
    "required": True,
    "content": {
        "text/csv": {"schema": {"type": "string", "description": "CSV: header column,name,group,description."},
                     "example": "column,name,group,description\nfeat_a_3,앱 사용 빈도,정보영역,하루 평균 앱 실행 수\n"},
        "application/json": {"schema": _inline_defs(FeatureNameMapping.model_json_schema(mode="validation"))},
        "multipart/form-data": {"schema": {
            "type": "object", "required": [FIELD],
            "properties": {FIELD: {"type": "string", "format": "binary",
                                   "description": "The mapping file (.csv or .json)."}},
        }},
    },
}


@router.get("/api/feature-mapping", dependencies=[VIEWER], response_model=FeatureMappingView,
            summary="The feature-name mapping in effect (Korean names, groups, descriptions)",
            responses=success(MAPPING_EXAMPLE, "The mapping in effect (the shipped names here)"))
async def get_feature_mapping(state: State) -> dict[str, Any]:
    """Column -> Korean name, group and description, as reports and the PDF show them."""
    return await asyncio.to_thread(_view, state.store)


@router.put("/api/feature-mapping", dependencies=[OPERATOR, audited("feature_mapping")],
            response_model=FeatureMappingView, openapi_extra={"requestBody": _BODY},
            summary="Upload your own feature-name mapping (CSV or JSON); it overlays the shipped names",
            responses={
                **success(USER_MAPPING_EXAMPLE, "Stored; the mapping now in effect"),
                400: {"description": "Empty body, or a multipart body without the part 'file'"},
                415: {"description": "Not CSV, JSON or multipart/form-data"},
                422: {"description": "Not a usable mapping: the detail names the line or entry and the field "
                                     "(duplicate column, empty name, unknown header, not UTF-8/CP949)"},
            })
async def put_feature_mapping(request: Request, state: State) -> Any:
    """Replace the user's mapping; answers with the mapping now in effect. Later reports and uploads use it."""
    found = await _mapping_from(request)
    if isinstance(found, JSONResponse):
        return found
    await asyncio.to_thread(save_override, state.store, found)
    return await asyncio.to_thread(_view, state.store)


@router.delete("/api/feature-mapping", dependencies=[OPERATOR, audited("feature_mapping")], response_model=FeatureMappingView,
               summary="Remove your feature-name mapping (back to the shipped names)",
               responses=success(MAPPING_EXAMPLE, "Removed (or there was none); the shipped names are in effect"))
async def delete_feature_mapping(state: State) -> dict[str, Any]:
    def remove(store) -> dict[str, Any]:
        delete_override(store)
        return _view(store)

    return await asyncio.to_thread(remove, state.store)

