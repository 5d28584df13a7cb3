"""Gateway routes: explain. What drives clicks (LIME importance with statistics) and correlations.

The explainer writes ``runs/<run_id>/explanation.json``; these routes read it from the
file store. While it does not exist yet, the read model (events) says why: the run is
unknown (404), still training or being explained (409 with Retry-After), or failed (409
with the reason). Definitions of every number: docs/explainer.md.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ctrops_common.dataset import column_description, explanation_path
from ctrops_common.documents import Explanation, read_document
from ctrops_common.events import Topic
from ctrops_common.feature_names import FeatureNameMapping, effective_feature_names
from ctrops_common.storage import is_id

from ..api_models import success
from ..security import AUTH_RESPONSES, VIEWER
from ..state import GatewayState, State

router = APIRouter(tags=["explanation"], dependencies=[VIEWER], responses=AUTH_RESPONSES)

RETRY_AFTER_S = 5
TRAINING_TOPICS = [Topic.TRAINING_REQUESTED, Topic.TRAINING_STARTED, Topic.TRAINING_PROGRESS]

IMPORTANCE_DEFINITION = """\
Features ranked by how much the run's champion model (LSTM+MLP or LightGBM) uses them, each
with a test of whether the feature carries click signal on validation rows the model never
saw (the trainer's stratified validation split).

- `importance` (0..1): mean |attribution| over validation rows, divided by the largest such
  mean, so the strongest feature scores 1. Attribution: exact TreeSHAP contribution to the
  logit for a LightGBM champion (the `seq_*` features summed into `seq`); the LIME weight in
  click probability for an LSTM+MLP champion (explained validation rows, perturbations sized by
  a convergence test).
- `pValue`: Benjamini-Hochberg adjusted (across all features) one-sided p of a held-out
  permutation test. H0: shuffling the feature across the validation rows does not lower the
  model's ROC AUC there. Statistic: the AUC drop, its standard error from DeLong's paired
  variance. The unadjusted p is `p_value_raw` in the run's explanation file.
- `ci`: 95% percentile bootstrap interval of `importance` (rows resampled, seeded).
- `description`: the column's Korean name from the feature-name mapping in effect (shipped,
  or your own: PUT /api/feature-mapping). The explanation file also gives each feature's
  direction of effect (which values raise clicks, with the observed click rates).
- `seq` (the behaviour sequence) is one feature: the row's own sequence versus another user's.
"""

CORRELATION_DEFINITION = """\
Pearson correlation matrix of the most important features (top 10 by default) on the
uploaded data: pairwise-complete rows; a pair with a constant or missing side has no
defined correlation and is reported as 0; the diagonal is 1. `seq` appears as
`seq_length` (tokens in the sequence). Always square, symmetric and finite.
"""

ERRORS = {
    404: {"description": "Unknown or malformed run id, or `latest` before any run completed."},
    409: {"description": "Not ready: the run is still training or being explained (`Retry-After` header), "
                         "or its training or explanation failed (`detail` gives the reason)."},
    503: {"description": "The explanation was announced but is missing from the gateway's file store, or the "
                         "stored file is not an explanation document (explain the run again)."},
}


class FeatureImportanceItem(BaseModel):
    feature: str = Field(description="Column name (`seq` for the behaviour sequence).")
    importance: float = Field(ge=0, le=1, description="Mean |attribution| (TreeSHAP or LIME) relative to the "
                                                      "strongest feature.")
    pValue: float = Field(ge=0, le=1, description="Benjamini-Hochberg adjusted p of the held-out permutation "  # noqa: N815
                                                  "test (AUC drop on validation rows).")
    ci: tuple[float, float] = Field(description="95% bootstrap interval of importance [low, high].")
    description: str = Field(description="Korean label of the column.")


class CorrelationMatrix(BaseModel):
    features: list[str]
    matrix: list[list[float]] = Field(description="Square, symmetric, unit diagonal, finite.")
    descriptions: list[str] = Field(default_factory=list, description="Korean labels, in `features` order.")


IMPORTANCE_EXAMPLE = [
    {"feature": "hour", "importance": 1.0, "pValue": 0.001, "ci": [0.86, 1.0], "description": "시간대"},
    {"feature": "age_group", "importance": 0.642, "pValue": 0.004, "ci": [0.51, 0.77], "description": "연령대"},
    {"feature": "seq", "importance": 0.318, "pValue": 0.047, "ci": [0.22, 0.41], "description": "행동 시퀀스"},
]
CORRELATION_EXAMPLE = {
    "features": ["hour", "age_group", "seq_length"],
    "matrix": [[1.0, 0.04, -0.12], [0.04, 1.0, 0.09], [-0.12, 0.09, 1.0]],
    "descriptions": ["시간대", "연령대", "행동 시퀀스 길이"],
}

RunId = Path(description="A run id (32 hex characters) or `latest` (the newest run that finished training).")


def _problem(status: int, detail: str, state_name: str, retry: bool = False) -> JSONResponse:
    headers = {"Retry-After": str(RETRY_AFTER_S)} if retry else None
    return JSONResponse({"detail": detail, "status": state_name}, status_code=status, headers=headers)


def load_explanation(state: GatewayState, run_id: str) -> Explanation | JSONResponse:
    """The run's explanation, or the answer that says why there is none (blocking: call in a thread)."""
    views = state.views
    if run_id == "latest":
        done = views.latest(Topic.TRAINING_DONE)
        if done is None:
            return _problem(404, "no training run has completed yet, so there is no latest explanation", "unknown")
        run_id = done.payload.run_id
    elif not is_id(run_id):
        return _problem(404, f"unknown run id {run_id!r}: run ids are 32 hex characters, or 'latest'", "unknown")

    location = explanation_path(run_id)
    if state.store.exists(location):
        try:
            return read_document(state.store, location, Explanation)
        except ValueError as exc:  # not JSON, or not the explanation document (ValidationError)
            return _problem(503, f"the explanation of run {run_id} at {location} cannot be read as an explanation "
                                 f"({type(exc).__name__}); explain the run again", "unavailable")
    if views.latest(Topic.EXPLANATION_DONE, run_id) is not None:
        # Announced but not in this gateway's store: a deployment whose file store is not shared.
        return _problem(503, f"the explanation of run {run_id} was stored at {location}, but this gateway's file "
                             "store does not have it; check that the gateway and the explainer share CTROPS_DATA_DIR",
                        "unavailable")
    if (failed := views.latest(Topic.EXPLANATION_FAILED, run_id)) is not None:
        return _problem(409, f"the explanation of run {run_id} failed: {failed.payload.reason}", "failed")
    if views.latest(Topic.TRAINING_DONE, run_id) is not None:
        return _problem(409, f"run {run_id} finished training and is being explained; not ready yet, retry shortly",
                        "explaining", retry=True)
    if (training_failed := views.latest(Topic.TRAINING_FAILED, run_id)) is not None:
        return _problem(409, f"training of run {run_id} failed, so it has no explanation: "
                             f"{training_failed.payload.reason}", "training_failed")
    if views.latest(TRAINING_TOPICS, run_id) is not None:
        return _problem(409, f"run {run_id} is still training; its explanation is not ready yet", "training",
                        retry=True)
    return _problem(404, f"unknown run id {run_id!r}", "unknown")


def importance_items(explanation: Explanation, names: FeatureNameMapping | None = None
                     ) -> list[FeatureImportanceItem]:
    """Importance rows; ``description`` from ``names`` (the mapping in effect) when given."""
    items = [
        FeatureImportanceItem(
            feature=f.feature, importance=f.importance, pValue=f.p_value, ci=f.ci,
            description=column_description(f.feature, names) if names is not None else f.description,
        )
        for f in explanation.features
    ]
    items.sort(key=lambda f: (-f.importance, f.feature))
    return items


async def _feature_importance(state: GatewayState, run_id: str) -> Any:
    found = await asyncio.to_thread(load_explanation, state, run_id)
    if isinstance(found, JSONResponse):
        return found
    return importance_items(found, await asyncio.to_thread(effective_feature_names, state.store))


@router.get("/api/report/feature-importance/{run_id}", response_model=list[FeatureImportanceItem],
            summary="Feature importance (TreeSHAP or LIME) with adjusted held-out p-values and 95% intervals",
            description=IMPORTANCE_DEFINITION,
            responses={**success(IMPORTANCE_EXAMPLE, "Features, most important first"), **ERRORS})
async def feature_importance(state: State, run_id: str = RunId) -> Any:
    return await _feature_importance(state, run_id)


@router.get("/api/features/{run_id}", response_model=list[FeatureImportanceItem],
            summary="Feature importance (alias of /api/report/feature-importance/{run_id})",
            description=IMPORTANCE_DEFINITION,
            responses={**success(IMPORTANCE_EXAMPLE, "Features, most important first"), **ERRORS})
async def features_alias(state: State, run_id: str = RunId) -> Any:
    return await _feature_importance(state, run_id)


@router.get("/api/report/correlation/{run_id}", response_model=CorrelationMatrix,
            summary="Correlation matrix of the most important features", description=CORRELATION_DEFINITION,
            responses={**success(CORRELATION_EXAMPLE, "The matrix, in `features` order"), **ERRORS})
async def correlation(state: State, run_id: str = RunId) -> Any:
    found = await asyncio.to_thread(load_explanation, state, run_id)
    if isinstance(found, JSONResponse):
        return found
    block = found.correlation
    names = await asyncio.to_thread(effective_feature_names, state.store)
    return CorrelationMatrix(features=block.features, matrix=block.matrix,
                             descriptions=[column_description(name, names) for name in block.features])
