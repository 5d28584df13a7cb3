"""POST /api/train/{run_id}/retrain: a new run with the same config on newer labelled data.

What the frontend's "retrain" button means (issue 16, interface E). The new run gets the
config of the run it replaces, the given ``fileId`` or else the newest valid labelled upload
(a training upload, or a labelled file scored for monitoring), and ``replaces`` /
``replaces_model_location`` so the trainer compares its champion with the replaced one on
the new validation rows (paired DeLong) and moves the champion alias only when the new
model is not worse. It answers like POST /api/train, so progress follows on the same routes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Body, HTTPException, Request
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from ctrops_common.events import FileUploaded, Topic, TrainingDone, TrainingRequested, new_id
from ctrops_common.storage import is_id

from .. import training_cost
from ..api_models import FILE_ID, RUN_ID, success
from ..audit import audited
from ..caller import client_id_of
from ..rate_limits import TRAINING_RATE
from ..security import AUTH_RESPONSES, OPERATOR
from ..state import GatewayState, State
from ..training_cap import ACTIVE_TRAININGS
from ..views import ReadModel
from .predict import RUN_REF_HELP, resolve_run

router = APIRouter(tags=["training"], dependencies=[OPERATOR], responses=AUTH_RESPONSES)

UPLOADS_SCANNED = 500  # newest uploads looked at for the newest labelled one


class RetrainRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    file_id: str | None = Field(
        None, validation_alias=AliasChoices("fileId", "file_id"), max_length=200,
        description="A labelled upload to train on; default: the newest valid labelled upload.",
    )


class RetrainAccepted(BaseModel):
    run_id: str
    runId: str
    status: str = "training"
    file_id: str
    fileId: str
    total_epochs: int
    replaces: str = Field(description="The run the new one replaces (its champion is compared with the new one).")
    experiment_name: str


RETRAIN_EXAMPLE = {"run_id": "c2b1a0f9e8d7c6b5a4938271605f4e3d", "runId": "c2b1a0f9e8d7c6b5a4938271605f4e3d",
                   "status": "training", "file_id": FILE_ID, "fileId": FILE_ID, "total_epochs": 10,
                   "replaces": RUN_ID, "experiment_name": "CTR_Experiment_20260314"}


def trainable(uploaded: FileUploaded) -> str | None:
    """Why a file cannot be trained on, or None."""
    if not uploaded.validation.is_valid or not uploaded.parquet_location:
        errors = "; ".join(uploaded.validation.errors) or "it could not be converted"
        return f"it failed validation ({errors})"
    if not uploaded.labelled:
        return "it has no 'clicked' column (an unlabelled file to score)"
    if uploaded.info.clicked_one == 0 or uploaded.info.clicked_zero == 0:
        return "its 'clicked' holds one class only; a model needs both clicks and non-clicks"
    return None


def newest_labelled_upload(views: ReadModel) -> FileUploaded | None:
    for stored in views.events(Topic.FILE_UPLOADED, newest_first=True, limit=UPLOADS_SCANNED):
        uploaded = stored.typed(FileUploaded)
        if trainable(uploaded) is None:
            return uploaded
    return None


def _file(state: GatewayState, file_id: str | None) -> FileUploaded:
    """The upload to train on (blocking): the given one, checked, or the newest trainable one."""
    if file_id is None:
        uploaded = newest_labelled_upload(state.views)
        if uploaded is None:
            raise HTTPException(409, "there is no valid labelled upload to retrain on: upload a CSV with 'clicked' "
                                     "(POST /api/upload, or score a labelled file) and retrain again, or send "
                                     '{"fileId": "..."}')
        return uploaded
    uploaded = state.views.file_record(file_id) if is_id(file_id) else None
    if uploaded is None:
        raise HTTPException(404, f"unknown fileId {file_id[:80]!r}: send the file_id that POST /api/upload returned")
    problem = trainable(uploaded)
    if problem:
        raise HTTPException(422, f"file {file_id} cannot be trained on: {problem}. Upload a labelled file.")
    return uploaded


@router.post(
    "/api/train/{run_id}/retrain",
    dependencies=[TRAINING_RATE, ACTIVE_TRAININGS, audited("retrain")],  # a retrain is a training request and starts a run
    response_model=RetrainAccepted,
    description=(
        f"Retrain the model of `run_id` ({RUN_REF_HELP}): a new run with the same config on the given `fileId` "
        "or the newest valid labelled upload, linked to the run it replaces. Its champion becomes the "
        "platform's champion only when a paired DeLong test on the new validation rows finds it not worse "
        "(`promoted` and `promotion` on GET /api/train/status/{new run}). Progress: WS /ws/training/{runId}."
    ),
    responses={
        **success(RETRAIN_EXAMPLE, "The new run was requested; it answers like POST /api/train"),
        404: {"description": "Unknown run (or no completed run for an alias), or unknown fileId"},
        409: {"description": "The run has not completed, or there is no valid labelled upload to train on"},
        422: {"description": "The given file is invalid, unlabelled or single-class, or the config is above "
                             "CTROPS_TRAINING_MEMORY_LIMIT_MB"},
        503: {"description": "The message broker is unavailable (Retry-After)"},
    },
)
async def retrain(
    run_id: str, request: Request, state: State,
    body: RetrainRequest | None = Body(None, description='Optional: {"fileId": "..."}'),
) -> dict[str, Any]:
    """Start a run that replaces `run_id` (see the description)."""
    done: TrainingDone = await asyncio.to_thread(resolve_run, state, run_id)
    problem = training_cost.too_big(done.config, state.settings.training_memory_limit_mb)
    if problem:
        raise HTTPException(422, problem)
    uploaded = await asyncio.to_thread(_file, state, body.file_id if body is not None else None)
    new_run = new_id()
    requested = TrainingRequested(
        run_id=new_run, file_id=uploaded.file_id, parquet_location=uploaded.parquet_location or "",
        config=done.config, client_id=client_id_of(request.scope),
        replaces=done.run_id, replaces_model_location=done.model_location,
    )
    event = await state.bus.publish(Topic.TRAINING_REQUESTED, requested, correlation_id=new_run)
    await asyncio.to_thread(state.views.record, event)  # readable now, before the consumer sees it
    return {"run_id": new_run, "runId": new_run, "status": "training", "file_id": uploaded.file_id,
            "fileId": uploaded.file_id, "total_epochs": done.config.epochs, "replaces": done.run_id,
            "experiment_name": done.config.experiment_name}
