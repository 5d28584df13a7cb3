"""Model and system performance: GET /api/performance/{run_id} (alias /api/metrics/{run_id}), WS /ws/performance."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, HTTPException, WebSocket

from ctrops_common.events import Topic, TrainingDone, TrainingProgress
from ctrops_common.storage import is_id

from .. import performance_live as live
from ..api_models import PERFORMANCE_EXAMPLE, PerformanceView, success
from ..security import AUTH_RESPONSES, VIEWER
from ..state import GatewayState, State

router = APIRouter(tags=["performance"], dependencies=[VIEWER], responses=AUTH_RESPONSES)
NOT_FOUND = {404: {"description": "Unknown run id, a run without metrics yet, or `latest` before any completed run"}}


def _known_status(state: GatewayState, run_id: str) -> str | None:
    """training / failed for a run that has not finished; None if the id was never seen."""
    if live.find_run_event(state.views, Topic.TRAINING_FAILED, run_id) is not None:
        return "failed"
    for topic in (Topic.TRAINING_PROGRESS, Topic.TRAINING_STARTED, Topic.TRAINING_REQUESTED):
        if live.find_run_event(state.views, topic, run_id) is not None:
            return "training"
    return None


def performance_of(state: GatewayState, run_id: str) -> dict[str, Any]:
    done = live.resolve_done(state.views, run_id)
    finished: TrainingDone | None = None
    if done is not None:
        finished, status, when = done.typed(TrainingDone), "completed", done.time
        metrics, real_id = finished.metrics, finished.run_id
        extra = {
            "best_epoch": finished.best_epoch,
            "epochs_run": finished.epochs_run,
            "duration_s": live.finite(finished.duration_s),
            "experiment_name": finished.experiment_name,
        }
    else:
        if run_id == "latest":
            raise HTTPException(404, "no completed training run yet: train a model first (POST /api/train)")
        status = _known_status(state, run_id) if is_id(run_id) else None
        if status is None:
            raise HTTPException(404, f"unknown run id {run_id!r}")
        progress = live.find_run_event(state.views, Topic.TRAINING_PROGRESS, run_id)
        if status == "failed" or progress is None:
            raise HTTPException(404, f"run {run_id} has no metrics ({status}); see /api/train/status/{run_id}")
        # Still training: the latest finished epoch, marked as such.
        epoch, when = progress.typed(TrainingProgress), progress.time
        metrics, real_id = epoch.metrics, epoch.run_id
        extra = {"epoch": epoch.epoch, "total_epochs": epoch.total_epochs}
    snapshot = live.fresh_snapshot(state.views, live.snapshot_max_age(state))
    ms, source = live.response_time(state, snapshot)
    return {
        "run_id": real_id,
        "runId": real_id,
        "status": status,
        **live.model_metrics(metrics, finished),
        "response_time": ms,
        "responseTime": ms,
        "response_time_source": source,
        "evaluated_at": when.isoformat(),
        **extra,
        "note": live.NOTE,
    }


PERFORMANCE_ROUTE = dict(response_model=PerformanceView, response_model_exclude_unset=True,
                         responses={**success(PERFORMANCE_EXAMPLE, "The run's numbers (a completed run here)"),
                                    **NOT_FOUND})


@router.get("/api/performance/{run_id}", **PERFORMANCE_ROUTE)
async def performance(run_id: str, state: State) -> dict[str, Any]:
    """accuracy, precision, recall, f1_score (fractions) and response_time (ms, platform p95),
    plus every other ModelMetrics field (auc, ap, logloss, calibration, score, ...) under each of its
    spellings. ``latest`` is the newest completed run."""
    return await asyncio.to_thread(performance_of, state, run_id)


@router.get("/api/metrics/{run_id}", **PERFORMANCE_ROUTE)
async def metrics_alias(run_id: str, state: State) -> dict[str, Any]:
    """Alias of /api/performance/{run_id}."""
    return await asyncio.to_thread(performance_of, state, run_id)


@router.websocket("/ws/performance")
async def performance_socket(websocket: WebSocket) -> None:
    """metrics_update and system_health at once and every few seconds; performance_alert
    once per incident (alert_resolved when it ends); error_log per service error."""
    await live.serve(websocket, websocket.app.state.gateway)
