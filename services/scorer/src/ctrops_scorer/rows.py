"""JSON rows of a prediction request -> a table in the training layout, every value checked.

Values are read as ingest reads the CSV: a feature is a number or a numeric string ("0.5",
" 3 ", "1e-3"), missing when null, absent or an empty string; ``seq`` is the comma-separated
integer string of the CSV ("12,7,3", spaces allowed) or a JSON list of integers, oldest token
first. Refused, each named by row and column: booleans, non-numeric text, non-finite numbers
(NaN, Infinity, "inf", numbers too large for a float), tokens that are not integers or do not
fit int32 (the training layout's token type), a missing or empty ``seq`` (ingest refuses those
rows too), and columns the model does not know (``clicked`` and a time column such as ``date``,
as a CSV to score may carry them, are allowed and ignored: ctrops_common.time_columns).

The result is what ingest would have written for the same rows: features float64 (null for
missing) in ``preprocess.feature_columns`` order and ``seq`` list<int32>, ready for
``ctrops_common.model_inputs.DataFile.from_table``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ctrops_common.dataset import SEQUENCE, TARGET
from ctrops_common.time_columns import is_time_column

MAX_PROBLEMS = 20
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")  # what ingest accepts as a number
_SEQ_TEXT = re.compile(r"^-?\d+(,-?\d+)*$")


@dataclass
class Problem:
    row: int | None
    column: str | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "column": self.column, "message": self.message}


@dataclass
class Problems:
    """The first ``MAX_PROBLEMS`` problems found, and how many there were in all."""

    items: list[Problem] = field(default_factory=list)
    total: int = 0

    def add(self, row: int | None, column: str | None, message: str) -> None:
        self.total += 1
        if len(self.items) < MAX_PROBLEMS:
            self.items.append(Problem(row, column, message))

    def __bool__(self) -> bool:
        return self.total > 0


class RowsError(ValueError):
    """The rows cannot be scored; ``detail`` is one sentence, ``problems`` name row and column."""

    def __init__(self, detail: str, problems: list[Problem]) -> None:
        super().__init__(detail)
        self.detail = detail
        self.problems = problems


def rows_table(rows: Any, feature_columns: list[str]) -> pa.Table:
    """The request's ``rows`` (a list of JSON objects) -> the training-layout table, or ``RowsError``."""
    if not isinstance(rows, list):
        raise RowsError("'rows' must be a list of objects, one per row ({column: value}).",
                        [Problem(None, None, f"'rows' is {type(rows).__name__}, not a list")])
    if not rows:
        raise RowsError("'rows' is empty: send at least one row.", [Problem(None, None, "no rows")])
    problems = Problems()
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            problems.add(i, None, f"a row must be a JSON object of column: value, not {type(row).__name__}")
    if problems:
        raise _error(problems, "rows")

    known = set(feature_columns) | {SEQUENCE, TARGET}
    unknown: dict[str, int] = {}
    for i, row in enumerate(rows):
        for name in row:
            if name not in known and name not in unknown and not (isinstance(name, str) and is_time_column(name)):
                unknown[name] = i
    if unknown:
        for name, first in unknown.items():
            problems.add(first, name, f"the model does not know the column {name!r}")
        names = ", ".join(repr(n) for n in list(unknown)[:10]) + (" ..." if len(unknown) > 10 else "")
        raise RowsError(f"{len(unknown)} column(s) the model does not know: {names}; remove them or score with the "
                        "model trained on them.", problems.items)

    arrays = [_feature(name, [row.get(name) for row in rows], problems) for name in feature_columns]
    seq = _sequence([row.get(SEQUENCE) for row in rows], problems)
    if problems:
        raise _error(problems, "values")
    return pa.table([*arrays, seq], names=[*feature_columns, SEQUENCE])


def _error(problems: Problems, what: str) -> RowsError:
    shown = len(problems.items)
    more = f" (the first {shown} are listed)" if problems.total > shown else ""
    first = problems.items[0]
    where = f"row {first.row}" + (f", column {first.column!r}" if first.column else "")
    return RowsError(f"{problems.total} problem(s) in the request's {what}{more}; the first: {where}: "
                     f"{first.message}.", problems.items)


def _feature(name: str, values: list[Any], problems: Problems) -> pa.Array:
    """One feature column -> float64 with nulls for missing values; bad values go to ``problems``."""
    kinds = {type(v) for v in values}
    if kinds <= {int, float, type(None)}:  # the fast path: plain JSON numbers and nulls
        missing = np.fromiter((v is None for v in values), dtype=bool, count=len(values))
        try:
            out = np.array([0.0 if v is None else v for v in values], dtype=np.float64)
        except OverflowError:  # an integer too large for a float: find it below
            out = None
        if out is not None and np.isfinite(out[~missing]).all():
            return pa.array(out, mask=missing)
    out = np.zeros(len(values), dtype=np.float64)
    missing = np.zeros(len(values), dtype=bool)
    for i, value in enumerate(values):
        number, message = _number(value)
        if message:
            problems.add(i, name, message)
        elif number is None:
            missing[i] = True
        else:
            out[i] = number
    return pa.array(out, mask=missing)


def _number(value: Any) -> tuple[float | None, str | None]:
    """(the number, None), (None, None) for missing, or (None, what is wrong)."""
    if value is None:
        return None, None
    if isinstance(value, bool):
        return None, f"{str(value).lower()} is a boolean; send a number (1 or 0)"
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:
            return None, "the number is too large"
        return (number, None) if math.isfinite(number) else (None, f"{value!r} is not a finite number")
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None, None  # an empty cell, as in the CSV
        if not _NUMBER.match(text):
            return None, f"{value[:40]!r} is not a number"
        number = float(text)
        return (number, None) if math.isfinite(number) else (None, f"{value[:40]!r} is not a finite number")
    return None, f"a {type(value).__name__} is not a number"


def _sequence(values: list[Any], problems: Problems) -> pa.Array:
    """``seq`` -> list<int32>. Each row's form is checked in Python (cheap), the tokens are parsed and
    range-checked for the whole column at once in Arrow/numpy (a long sequence costs no Python loop)."""
    texts: list[str | None] = []
    for i, value in enumerate(values):
        text, message = _sequence_text(value)
        if message:
            problems.add(i, SEQUENCE, message)
        texts.append(text)
    lists = pc.split_pattern(pa.array(texts, type=pa.string()), ",")
    try:
        wide = lists.cast(pa.list_(pa.int64()))
    except (pa.ArrowInvalid, OverflowError):  # a token too long for int64: parse row by row to name it
        return _sequence_slow(texts, problems)
    flat = pc.list_flatten(wide).to_numpy(zero_copy_only=False)
    bad = (flat < INT32_MIN) | (flat > INT32_MAX)
    if bad.any():
        offsets = wide.offsets.to_numpy()
        for position in np.flatnonzero(bad)[:MAX_PROBLEMS]:
            row = int(np.searchsorted(offsets, position, side="right") - 1)
            problems.add(row, SEQUENCE, _range_message(int(flat[position])))
        return pa.array([[] for _ in values], type=pa.list_(pa.int32()))
    return pa.ListArray.from_arrays(wide.offsets, pa.array(flat.astype(np.int32), type=pa.int32()))


def _sequence_slow(texts: list[str | None], problems: Problems) -> pa.Array:
    out = []
    for i, text in enumerate(texts):
        tokens = [int(t) for t in text.split(",")] if text else []
        wrong = next((t for t in tokens if not INT32_MIN <= t <= INT32_MAX), None)
        if wrong is not None:
            problems.add(i, SEQUENCE, _range_message(wrong))
        out.append(tokens if wrong is None else [])
    return pa.array(out, type=pa.list_(pa.int32()))


def _range_message(token: int) -> str:
    return f"token {token} does not fit a 32-bit integer (-2147483648..2147483647)"


def _sequence_text(value: Any) -> tuple[str | None, str | None]:
    """(the row's tokens as compact "1,2,3" text, None) or (None, what is wrong)."""
    if value is None:
        return None, "seq is missing; every row needs its comma-separated integer tokens (\"12,7,3\")"
    if isinstance(value, str):
        text = value.replace(" ", "")
        if not text:
            return None, "seq is empty; every row needs its comma-separated integer tokens (\"12,7,3\")"
        if not _SEQ_TEXT.match(text):
            return None, f"{value[:40]!r} is not comma-separated integers (\"12,7,3\")"
        return text, None
    if isinstance(value, list):
        if not value:
            return None, "seq is empty; every row needs at least one token"
        bad = next((t for t in value if type(t) is not int), None)  # bool is not int here
        if bad is not None:
            return None, f"seq holds {bad!r}; its tokens must be integers"
        return ",".join(map(str, value)), None
    return None, f"seq must be a comma-separated string or a list of integers, not a {type(value).__name__}"
