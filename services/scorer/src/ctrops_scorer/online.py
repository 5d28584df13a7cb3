"""One online prediction request, end to end but without HTTP: parse the body, resolve the run,
get its model, validate and score the rows.

Everything that costs more than a dictionary look-up runs in the scorer's worker threads
(``executor``): JSON parsing, the catalogue's SQL, the model's load, row validation and the
model itself. The event loop only awaits. Failures are ``ApiError`` with the status, one
sentence for a person and the problems by row and column.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from ctrops_common.model_loading import LoadedModel

from .catalogue import RunCatalogue, RunEntry, is_run_ref
from .metrics import ServingLatency
from .models import ModelCache, ModelChoice, NoSuchModel, choose_model
from .predict import score_table
from .rows import Problem, RowsError, rows_table

MODEL_CHOICES = ("champion", "lstm", "gbdt")
RETRY_AFTER_S = 5


@dataclass
class ApiError(Exception):
    status: int
    detail: str
    problems: list[Problem] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {"detail": self.detail, "problems": [p.as_dict() for p in self.problems]}


def parse_body(raw: bytes, max_rows: int) -> list[Any]:
    """The request body -> its ``rows`` list (422 when it is not {"rows": [...]}, 413 over ``max_rows``)."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(422, f"the body is not valid JSON ({exc}); send {{\"rows\": [{{column: value}}, ...]}}.",
                       [Problem(None, None, str(exc))]) from None
    if not isinstance(body, dict) or "rows" not in body:
        raise ApiError(422, "the body must be a JSON object with 'rows': [{column: value}, ...].",
                       [Problem(None, None, "no 'rows' key")])
    rows = body["rows"]
    if isinstance(rows, list) and len(rows) > max_rows:
        raise ApiError(413, f"{len(rows)} rows in one request; at most {max_rows} are scored per request: split "
                            "them, or upload a CSV for batch scoring.",
                       [Problem(None, None, f"{len(rows)} rows > {max_rows}")])
    return rows


def answer_json(choice: ModelChoice, probabilities, seconds: float) -> bytes:
    """The 200 body, encoded here (in the worker thread) rather than by the web framework."""
    predictions = ",".join(f'{{"row":{i},"probability":{_float(p)}}}' for i, p in enumerate(probabilities.tolist()))
    return (f'{{"runId":"{choice.run_id}","model":"{choice.kind}","modelLabel":{json.dumps(choice.label)},'
            f'"rows":{len(probabilities)},"predictions":[{predictions}],"seconds":{seconds!r}}}').encode()


def _float(value: float) -> str:
    return repr(value) if math.isfinite(value) else "null"


class OnlineScorer:
    def __init__(self, catalogue: RunCatalogue, cache: ModelCache, executor: Executor, latency: ServingLatency, *,
                 max_rows: int, load_wait_s: float) -> None:
        self.catalogue = catalogue
        self.cache = cache
        self.executor = executor
        self.latency = latency
        self.max_rows = max_rows
        self.load_wait_s = load_wait_s
        self._runs: dict[str, RunEntry] = {}  # run_ref -> entry; cleared whenever the catalogue changes

    def forget_runs(self) -> None:
        """The catalogue changed (a new run, a promotion, an explanation): resolve again."""
        self._runs.clear()

    async def _in_thread(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def resolve(self, run_ref: str) -> RunEntry:
        if not is_run_ref(run_ref):
            raise ApiError(404, f"{run_ref!r} is not a run: use a run id (32 hex characters), 'latest' or "
                                "'champion'.", [Problem(None, None, "unknown run reference")])
        entry = self._runs.get(run_ref)
        if entry is None:
            entry = await self._in_thread(self.catalogue.resolve, run_ref)
            if entry is None:
                what = {"latest": "no training run has completed yet",
                        "champion": "no completed training run has been promoted to champion yet"}.get(
                    run_ref, f"run {run_ref} is not a completed training run the scorer knows")
                raise ApiError(404, f"{what}.", [Problem(None, None, what)])
            self._runs[run_ref] = entry
        return entry

    async def model(self, choice: ModelChoice) -> LoadedModel:
        loaded = self.cache.get(choice)
        if loaded is not None:
            return loaded
        task = self.cache.start_load(choice)
        try:
            return await asyncio.wait_for(asyncio.shield(task), self.load_wait_s)
        except asyncio.TimeoutError:
            raise ApiError(503, f"the {choice.label} model of run {choice.run_id} is still loading; try again in "
                                f"{RETRY_AFTER_S} s.", headers={"Retry-After": str(RETRY_AFTER_S)}) from None
        except NoSuchModel as exc:
            raise ApiError(404, f"{exc}.", [Problem(None, None, str(exc))]) from None
        except Exception as exc:  # noqa: BLE001 - a corrupt or incompatible model folder
            raise ApiError(500, f"the {choice.label} model of run {choice.run_id} cannot be loaded "
                                f"({type(exc).__name__}: {exc}).") from None

    async def predict(self, run_ref: str, model: str, raw_body: bytes) -> bytes:
        started = time.perf_counter()
        if model not in MODEL_CHOICES:
            raise ApiError(422, f"model={model!r} is not a model choice: use champion, lstm or gbdt.",
                           [Problem(None, "model", "unknown model choice")])
        rows = await self._in_thread(parse_body, raw_body, self.max_rows)
        entry = await self.resolve(run_ref)
        try:
            choice = choose_model(entry.done, model)
        except NoSuchModel as exc:
            raise ApiError(404, f"{exc}.", [Problem(None, None, str(exc))]) from None
        loaded = await self.model(choice)
        body, n = await self._in_thread(self._score, choice, loaded, rows, started)
        self.latency.observe(choice.kind, time.perf_counter() - started, n)
        return body

    @staticmethod
    def _score(choice: ModelChoice, loaded: LoadedModel, rows: list[Any], started: float) -> tuple[bytes, int]:
        try:
            table = rows_table(rows, list(loaded.preprocess.feature_columns))
        except RowsError as exc:
            raise ApiError(422, exc.detail, exc.problems) from None
        probabilities, _ = score_table(loaded, table)
        return answer_json(choice, probabilities, time.perf_counter() - started), len(probabilities)
