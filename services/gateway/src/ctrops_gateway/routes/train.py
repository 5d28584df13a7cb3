"""Training: POST /api/train, GET /api/train/status/{run_id}, GET /api/train/runs, cancel, WS /ws/training/{run_id}.

POST /api/train answers at once: it checks the file and the config, publishes
``training.requested`` and records it in the read model, so the status is readable
immediately. The trainer service does the work and reports through ``training.*``
events, which the read model and the WebSocket fan-out (``training_live``) turn into
answers. ``latest`` on any {run_id} path is the newest completed run.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, HTTPException, Request, WebSocket
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from ctrops_common.events import Topic, TrainingCancelRequested, TrainingConfig, TrainingRequested, new_id
from ctrops_common.storage import is_id

from .. import training_cost
from .. import training_live as live
from ..api_models import (
    CANCEL_EXAMPLE,
    FILE_ID,
    RUN_ID,
    RUNS_EXAMPLE,
    TRAINING_STATUS_EXAMPLE,
    CancelAccepted,
    RunSummary,
    TrainingStatus,
    success,
)
from ..audit import audited
from ..caller import Principal, Role, client_id_of
from ..rate_limits import TRAINING_RATE
from ..security import AUTH_RESPONSES, OPERATOR, VIEWER, Operator
from ..state import GatewayState, State
from ..training_cap import ACTIVE_TRAININGS

router = APIRouter(tags=["training"], responses=AUTH_RESPONSES)

RUN_ID_HELP = "A run id (32 hex characters) or `latest` (the newest completed run)."


class TrainRequest(BaseModel):
    """``file_id`` from POST /api/upload and the training options (camelCase or snake_case keys)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    file_id: str = Field(validation_alias=AliasChoices("file_id", "fileId"), max_length=200)
    config: TrainingConfig = Field(default_factory=TrainingConfig)

    @field_validator("config", mode="before")
    @classmethod
    def _no_config_means_defaults(cls, value: Any) -> Any:
        return {} if value is None else value


class TrainAccepted(BaseModel):
    run_id: str = Field(description="Follow it on GET /api/train/status/{run_id} and WS /ws/training/{run_id}")
    status: str = "training"
    file_id: str
    total_epochs: int


TRAIN_EXAMPLE = {"run_id": RUN_ID, "status": "training", "file_id": FILE_ID, "total_epochs": 10}
BROKER_DOWN = {503: {"description": "The message broker is unavailable (Retry-After)"}}


def _unknown_file(file_id: str) -> HTTPException:
    shown = file_id[:80]
    return HTTPException(404, f"unknown file_id {shown!r}: upload the CSV first (POST /api/upload) "
                              "and send the file_id it returns")


@router.post("/api/train", dependencies=[OPERATOR, TRAINING_RATE, ACTIVE_TRAININGS, audited("train")], response_model=TrainAccepted,
             responses={
    **success(TRAIN_EXAMPLE, "Training was requested; the run id answers at once"),
    404: {"description": "Unknown file_id."},
    422: {"description": "Out-of-range config value, a config whose estimated memory is above "
                         "CTROPS_TRAINING_MEMORY_LIMIT_MB, or a file that failed validation."},
    **BROKER_DOWN,
})
async def start_training(body: TrainRequest, request: Request, state: State) -> dict[str, Any]:
    """Start training on an uploaded file; answers at once with the run id (progress: WS /ws/training/{run_id})."""
    problem = training_cost.too_big(body.config, state.settings.training_memory_limit_mb)
    if problem:
        raise HTTPException(422, problem)
    if not is_id(body.file_id):
        raise _unknown_file(body.file_id)
    record = await asyncio.to_thread(state.views.file_record, body.file_id)
    if record is None:
        raise _unknown_file(body.file_id)
    if not record.validation.is_valid or not record.parquet_location:
        errors = "; ".join(record.validation.errors) or "the file could not be converted for training"
        raise HTTPException(422, f"file {body.file_id} failed validation and cannot be trained on: {errors}. "
                                 "Fix the file and upload it again.")
    run_id = new_id()
    requested = TrainingRequested(
        run_id=run_id,
        file_id=body.file_id,
        parquet_location=record.parquet_location,
        config=body.config,
        client_id=client_id_of(request.scope),
    )
    event = await state.bus.publish(Topic.TRAINING_REQUESTED, requested, correlation_id=run_id)
    await asyncio.to_thread(state.views.record, event)  # readable now, before the consumer sees it
    return {"run_id": run_id, "status": "training", "file_id": body.file_id, "total_epochs": body.config.epochs}


async def _view(state: GatewayState, run_id: str) -> live.RunView:
    # A run in memory (fed by the consumer) answers without SQL or a thread; else one database read.
    view = live.cached_view(state.views, run_id)
    if view is None:
        view = await asyncio.to_thread(live.find_view, state.views, run_id)
    if view is None:
        if run_id == "latest":
            raise HTTPException(404, "no training run has completed yet: start one with POST /api/train")
        raise HTTPException(404, f"unknown run id {run_id[:80]!r}: run ids are the 32-hex run_id that "
                                 "POST /api/train returned, or 'latest'")
    return view


@router.get("/api/train/status/{run_id}", dependencies=[VIEWER],
            response_model=TrainingStatus, response_model_exclude_unset=True,
            responses={**success(TRAINING_STATUS_EXAMPLE, "The run (a completed one here)"),
                       404: {"description": "Unknown run id, or `latest` before any run completed."}})
async def training_status(run_id: str, state: State) -> dict[str, Any]:
    """status (training/completed/failed), current_epoch, total_epochs, metrics (both spellings), history."""
    return live.status_body(await _view(state, run_id))


@router.get("/api/train/runs", dependencies=[VIEWER], response_model=list[RunSummary],
            responses=success(RUNS_EXAMPLE, "Every run, newest first (a bare array; empty before any)"))
async def training_runs(state: State) -> list[dict[str, Any]]:
    """Every run, newest first: run_id, created_at (ISO 8601), status, accuracy (fraction), file_id."""
    return await asyncio.to_thread(live.list_runs, state.views)


def _may_cancel(principal: Principal, state: GatewayState, view: live.RunView) -> None:
    """Only the client that started a run, or an admin, may cancel it (with auth off everyone is the
    same anonymous operator). A run recorded without its client (before client ids) is admin-only."""
    if not state.settings.auth_enabled:
        return
    owner = view.requested.payload.client_id if view.requested is not None else None
    if principal.role >= Role.ADMIN or (owner is not None and owner == principal.client_id):
        return
    raise HTTPException(403, f"Forbidden: run {view.run_id} was started by another client; only the client that "
                             f"started it or an 'admin' may cancel it (client '{principal.client_id}' has "
                             f"'{principal.role.label}').")


async def _cancel(run_id: str, principal: Principal, state: GatewayState) -> dict[str, Any]:
    view = await _view(state, run_id)
    _may_cancel(principal, state, view)
    if view.status != "training":
        raise HTTPException(409, f"run {view.run_id} has already {view.status}; nothing to cancel")
    event = await state.bus.publish(Topic.TRAINING_CANCEL_REQUESTED, TrainingCancelRequested(run_id=view.run_id),
                                    correlation_id=view.run_id)
    await asyncio.to_thread(state.views.record, event)
    return {"run_id": view.run_id, "status": "cancelling"}


_CANCEL_RESPONSES: dict[int | str, dict[str, Any]] = {
    **success(CANCEL_EXAMPLE, "The trainer was asked to stop the run", status=202),
    403: {"description": "Auth on: the caller's role is below operator, or the run was started by another "
                         "client and the caller is not an admin."},
    404: {"description": "Unknown run id."}, 409: {"description": "The run already ended."},
    **BROKER_DOWN,
}


@router.post("/api/train/{run_id}/cancel", status_code=202, dependencies=[audited("cancel")], response_model=CancelAccepted,
             responses=_CANCEL_RESPONSES)
async def cancel_training(run_id: str, principal: Operator, state: State) -> dict[str, Any]:
    """Ask the trainer to stop the run; it ends as failed with ``cancelled: true``. Only the client that
    started the run, or an admin, may cancel it."""
    return await _cancel(run_id, principal, state)


@router.delete("/api/train/{run_id}", status_code=202, dependencies=[audited("cancel")], response_model=CancelAccepted,
               responses=_CANCEL_RESPONSES)
async def cancel_training_delete(run_id: str, principal: Operator, state: State) -> dict[str, Any]:
    """The same as POST /api/train/{run_id}/cancel."""
    return await _cancel(run_id, principal, state)


@router.websocket("/ws/training/{run_id}", dependencies=[VIEWER])
async def training_socket(websocket: WebSocket, run_id: str) -> None:
    """History of the run at once (log with status, one epoch_update per finished epoch), then live messages."""
    await live.serve(websocket, websocket.app.state.gateway, run_id)
