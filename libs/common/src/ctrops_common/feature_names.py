"""Korean display names of the data's columns: one mapping file, overridable by the user.

``feature_name_mapping.csv`` (shipped in this package) gives every column of the Toss
layout (../shared/spec/dataset.md) - and the readable names of "renamed" files - a Korean
name, a group (사용자, 지면·시간, 행동 이력, 광고, 정보영역, 과거 이력, ...) and a
description. A user replaces or adds names by uploading their own mapping
(``PUT /api/feature-mapping``, CSV ``column,name,group,description`` or JSON); the gateway
stores it in the file store at ``FEATURE_MAPPING_PATH`` as a ``FeatureNameMapping``, and
``effective_feature_names(store)`` returns the shipped mapping overlaid with it (the user's
entry wins for a column both name). A column in neither is shown by its own name.

Reading is cheap: the shipped file is parsed once per process, the override is re-read
only when its file changes (size or modification time), and the overlay is cached with it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import threading
from datetime import datetime
from functools import lru_cache
from importlib import resources
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from .storage import FileStore

log = logging.getLogger(__name__)

FEATURE_MAPPING_PATH = "settings/feature_name_mapping.json"
SHIPPED_FILE = "feature_name_mapping.csv"
MAX_ENTRIES = 5000
OTHER_GROUP = "기타"

# Header names a mapping CSV may use (English or Korean), per field.
HEADER_ALIASES: dict[str, tuple[str, ...]] = {
    "column": ("column", "col", "feature", "컬럼", "열", "변수"),
    "name": ("name", "korean_name", "name_ko", "이름", "한글명", "표시명"),
    "group": ("group", "그룹", "분류"),
    "description": ("description", "desc", "설명"),
}


class MappingError(ValueError):
    """A mapping that cannot be used; the message names the line/entry and the field to fix."""


def _clean(value: str, field: str, limit: int) -> str:
    text = " ".join(str(value).split())  # no tabs, newlines or runs of spaces in a display name
    if len(text) > limit:
        raise ValueError(f"{field} is longer than {limit} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise ValueError(f"{field} contains control characters")
    return text


class FeatureName(BaseModel):
    """One column's display name: ``name`` (Korean, shown in reports), ``group``, ``description``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    column: str = Field(min_length=1, max_length=200, description="Column name exactly as in the CSV header.")
    name: str = Field(min_length=1, max_length=100, description="Korean display name, e.g. 시간대.")
    group: str = Field("", max_length=50, description="Group, e.g. 사용자, 지면·시간, 광고, 정보영역.")
    description: str = Field("", max_length=500, description="What the column holds, for readers.")

    @field_validator("column")
    @classmethod
    def _column(cls, value: str) -> str:
        text = value.strip()
        if not text:
            raise ValueError("column is empty")
        if any(ord(c) < 32 or ord(c) == 127 for c in text):
            raise ValueError("column contains control characters")
        return text

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        text = _clean(value, "name", 100)
        if not text:
            raise ValueError("name is empty")
        return text

    @field_validator("group")
    @classmethod
    def _group(cls, value: str) -> str:
        return _clean(value, "group", 50)

    @field_validator("description")
    @classmethod
    def _description(cls, value: str) -> str:
        return _clean(value, "description", 500)


class FeatureNameMapping(BaseModel):
    """Column -> display name, group, description; each column at most once."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    entries: list[FeatureName] = Field(max_length=MAX_ENTRIES)
    updated_at: datetime | None = Field(None, description="When the user's mapping was stored (None: shipped).")

    _index: dict[str, FeatureName] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _unique(self) -> FeatureNameMapping:
        seen: dict[str, int] = {}
        for position, entry in enumerate(self.entries, start=1):
            if entry.column in seen:
                raise ValueError(f"entry {position}: column {entry.column!r} appears again "
                                 f"(first in entry {seen[entry.column]}); each column may be named once")
            seen[entry.column] = position
        self._index = {e.column: e for e in self.entries}
        return self

    def get(self, column: str) -> FeatureName | None:
        return self._index.get(column)

    def name_of(self, column: str) -> str:
        """The Korean display name; the column itself when the mapping does not know it."""
        entry = self._index.get(column)
        return entry.name if entry else column

    def group_of(self, column: str) -> str:
        entry = self._index.get(column)
        return entry.group if entry and entry.group else OTHER_GROUP

    def columns(self) -> set[str]:
        return set(self._index)

    def overlay(self, other: FeatureNameMapping | None) -> FeatureNameMapping:
        """This mapping with ``other``'s entries replacing or added to it (order: ours, then new ones)."""
        if other is None or not other.entries:
            return self
        replaced = {e.column: e for e in other.entries}
        entries = [replaced.pop(e.column, e) for e in self.entries] + [e for e in other.entries if e.column in replaced]
        return FeatureNameMapping(entries=entries, updated_at=other.updated_at)

    def digest(self) -> str:
        """Changes whenever a display name, group or description changes (reports rebuild on it)."""
        canonical = "\n".join(f"{e.column}\t{e.name}\t{e.group}\t{e.description}" for e in self.entries)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# --- parsing a mapping file ---------------------------------------------------------------


def _decode(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for encoding in ("utf-8", "cp949"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise MappingError("the mapping is not UTF-8 (with or without BOM) or CP949 text")


def _field_problem(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def parse_mapping_csv(data: bytes) -> FeatureNameMapping:
    """A CSV with the header ``column,name[,group][,description]`` (any order; English or Korean
    header names, see HEADER_ALIASES). Raises MappingError naming the line and field."""
    text = _decode(data)
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise MappingError(f"the CSV cannot be read: {exc}") from None
    numbered = [(line, row) for line, row in enumerate(rows, start=1) if any(cell.strip() for cell in row)]
    if not numbered:
        raise MappingError("the mapping is empty: expected a header line column,name,group,description and one "
                           "line per column")
    header_line, header = numbered[0]
    fields: list[str] = []
    for position, cell in enumerate(header, start=1):
        key = cell.strip().lower()
        field = next((f for f, aliases in HEADER_ALIASES.items() if key in aliases), None)
        if field is None:
            raise MappingError(
                f"unknown format: header (line {header_line}) cell {position} is {cell.strip()[:40]!r}; "
                "the first line must be the header column,name,group,description (group and description optional)")
        if field in fields:
            raise MappingError(f"header (line {header_line}): '{field}' appears twice")
        fields.append(field)
    missing = [f for f in ("column", "name") if f not in fields]
    if missing:
        raise MappingError(f"unknown format: the header (line {header_line}) lacks {', '.join(missing)}; "
                           "expected column,name,group,description")
    entries: list[FeatureName] = []
    first_line: dict[str, int] = {}
    for line, row in numbered[1:]:
        if len(row) > len(fields) and any(cell.strip() for cell in row[len(fields):]):
            raise MappingError(f"line {line}: {len(row)} cells but the header has {len(fields)}; "
                               "quote a value that contains a comma")
        values = {f: (row[i] if i < len(row) else "") for i, f in enumerate(fields)}
        column = values["column"].strip()
        if not column:
            raise MappingError(f"line {line}: the column is empty")
        if column in first_line:
            raise MappingError(f"line {line}: duplicate column {column!r} (first on line {first_line[column]})")
        if not values["name"].strip():
            raise MappingError(f"line {line} (column {column!r}): the name is empty")
        try:
            entries.append(FeatureName(column=column, name=values["name"], group=values.get("group", ""),
                                       description=values.get("description", "")))
        except ValidationError as exc:
            raise MappingError(f"line {line} (column {column!r}): {_field_problem(exc)}") from None
        first_line[column] = line
    return _mapping(entries)


def parse_mapping_json(data: bytes) -> FeatureNameMapping:
    """``{"entries": [{"column", "name", "group", "description"}, ...]}`` or the bare list."""
    import json

    try:
        document: Any = json.loads(_decode(data))
    except ValueError as exc:
        raise MappingError(f"the JSON cannot be read: {exc}") from None
    if isinstance(document, list):
        document = {"entries": document}
    if not isinstance(document, dict) or not isinstance(document.get("entries"), list):
        raise MappingError('unknown format: expected {"entries": [{"column": ..., "name": ..., "group": ..., '
                           '"description": ...}, ...]} or a list of such objects')
    entries: list[FeatureName] = []
    first: dict[str, int] = {}
    for position, item in enumerate(document["entries"], start=1):
        if not isinstance(item, dict):
            raise MappingError(f"entry {position}: expected an object with column and name")
        column = str(item.get("column") or "").strip()
        if not column:
            raise MappingError(f"entry {position}: the column is empty")
        if column in first:
            raise MappingError(f"entry {position}: duplicate column {column!r} (first in entry {first[column]})")
        if not str(item.get("name") or "").strip():
            raise MappingError(f"entry {position} (column {column!r}): the name is empty")
        try:
            entries.append(FeatureName.model_validate(item))
        except ValidationError as exc:
            raise MappingError(f"entry {position} (column {column!r}): {_field_problem(exc)}") from None
        first[column] = position
    return _mapping(entries)


def _mapping(entries: list[FeatureName]) -> FeatureNameMapping:
    if not entries:
        raise MappingError("the mapping has no entries: give at least one line column,name")
    if len(entries) > MAX_ENTRIES:
        raise MappingError(f"the mapping has {len(entries)} entries; at most {MAX_ENTRIES} are accepted")
    return FeatureNameMapping(entries=entries)


def parse_mapping(data: bytes, kind: str) -> FeatureNameMapping:
    """``kind``: "csv" or "json"."""
    if kind == "json":
        return parse_mapping_json(data)
    if kind == "csv":
        return parse_mapping_csv(data)
    raise MappingError(f"unknown format {kind!r}: send CSV (text/csv) or JSON (application/json)")


# --- the shipped mapping, the user's override and their overlay -----------------------------------


@lru_cache(maxsize=1)
def shipped_feature_names() -> FeatureNameMapping:
    """The mapping shipped with the platform (Toss layout and the known readable names)."""
    data = resources.files("ctrops_common").joinpath(SHIPPED_FILE).read_bytes()
    return parse_mapping_csv(data)


_lock = threading.Lock()
_cache: dict[str, tuple[tuple[int, int, int], FeatureNameMapping | None, FeatureNameMapping]] = {}


def _stamp(store: FileStore) -> tuple[int, int, int] | None:
    """Identity of the stored file: every save is a new file (atomic rename), so a new inode."""
    try:
        stat = store.path(FEATURE_MAPPING_PATH).stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def stored_override(store: FileStore) -> FeatureNameMapping | None:
    """The user's mapping stored in ``store``, or None when there is none."""
    return _load(store)[0]


def effective_feature_names(store: FileStore | None) -> FeatureNameMapping:
    """The shipped mapping overlaid with the user's mapping stored in ``store`` (if any)."""
    if store is None:
        return shipped_feature_names()
    return _load(store)[1]


def _load(store: FileStore) -> tuple[FeatureNameMapping | None, FeatureNameMapping]:
    stamp = _stamp(store)
    if stamp is None:
        return None, shipped_feature_names()
    key = str(store.path(FEATURE_MAPPING_PATH))
    with _lock:
        cached = _cache.get(key)
    if cached is not None and cached[0] == stamp:
        return cached[1], cached[2]
    try:
        override = FeatureNameMapping.model_validate_json(store.path(FEATURE_MAPPING_PATH).read_bytes())
    except FileNotFoundError:
        return None, shipped_feature_names()
    except (OSError, ValueError) as exc:  # edited by hand or truncated: names must never stop a report
        log.warning("ignoring unreadable feature-name mapping %s: %s", FEATURE_MAPPING_PATH, str(exc)[:300])
        return None, shipped_feature_names()
    effective = shipped_feature_names().overlay(override)
    with _lock:
        _cache[key] = (stamp, override, effective)
    return override, effective


def save_override(store: FileStore, mapping: FeatureNameMapping) -> None:
    """Store the user's mapping (atomically; replaces any earlier one)."""
    store.write_bytes(FEATURE_MAPPING_PATH, mapping.model_dump_json().encode())


def delete_override(store: FileStore) -> bool:
    """Remove the user's mapping; True when there was one."""
    existed = store.exists(FEATURE_MAPPING_PATH)
    store.delete(FEATURE_MAPPING_PATH)
    return existed
