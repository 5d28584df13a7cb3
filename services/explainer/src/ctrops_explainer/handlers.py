"""Which events the explainer service consumes and publishes.

``training.done`` -> explain the run's model on its data (in a worker thread) -> store
``runs/<run_id>/explanation.json`` atomically -> ``explanation.done`` (its top features).
A failure that retrying cannot fix (no model, unreadable data, ...) -> ``explanation.failed``
with the reason. A run already explained is not explained again: a redelivered or
repeated ``training.done`` re-announces the stored result.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ctrops_common.bus import PermanentError
from ctrops_common.dataset import explanation_path, parquet_path
from ctrops_common.events import (
    Event,
    ExplanationDone,
    ExplanationFailed,
    FeatureImportance,
    Topic,
    TrainingDone,
)
from ctrops_common.ml import load_model
from ctrops_common.service import ServiceRuntime
from ctrops_common.storage import FileStore, UnsafePath, check_id

from .pipeline import ExplainConfig, explain
from .settings import ExplainerSettings

log = logging.getLogger(__name__)


class ExplanationError(Exception):
    """The run cannot be explained; the message says why, for a person."""


def explain_run(store: FileStore, done: TrainingDone, config: ExplainConfig) -> dict[str, Any]:
    """Load the run's model and data from the store and explain them (blocking: call in a thread)."""
    try:
        model_folder = store.path(done.model_location.rstrip("/"))
        data_file = store.path(parquet_path(check_id(done.file_id)))
    except UnsafePath as exc:
        raise ExplanationError(f"refusing an unsafe store location: {exc}") from None
    if not (model_folder / "model.pt").exists() or not (model_folder / "preprocess.json").exists():
        raise ExplanationError(f"no saved model at {done.model_location} (model.pt and preprocess.json expected)")
    if not data_file.exists():
        raise ExplanationError(f"the training data of file {done.file_id} is missing ({parquet_path(done.file_id)})")
    try:
        model, preprocess = load_model(model_folder)
    except Exception as exc:  # noqa: BLE001 - a corrupt or incompatible model is the run's problem, not ours
        raise ExplanationError(f"the saved model cannot be loaded: {type(exc).__name__}: {exc}") from None
    result = explain(model, preprocess, data_file, config)
    return {"run_id": done.run_id, "file_id": done.file_id, "model_location": done.model_location, **result}


def top_features(result: dict[str, Any], count: int) -> list[FeatureImportance]:
    return [
        FeatureImportance(feature=f["feature"], importance=f["importance"], p_value=f["p_value"],
                          ci=tuple(f["ci"]), description=f["description"])
        for f in result["features"][:count]
    ]


def register(runtime: ServiceRuntime, settings: ExplainerSettings) -> None:
    """Subscribe this service's handlers on the runtime's bus."""
    config = settings.explain_config()
    store = runtime.store
    bus = runtime.bus

    async def on_training_done(event: Event[TrainingDone]) -> None:
        done = event.payload
        try:
            run_id = check_id(done.run_id)
        except UnsafePath as exc:
            raise PermanentError(f"training.done with an invalid run id: {exc}") from None
        location = explanation_path(run_id)
        if await asyncio.to_thread(store.exists, location):
            log.info("run %s is already explained; announcing the stored result again", run_id)
            result = await asyncio.to_thread(store.read_json, location)
        else:
            try:
                result = await asyncio.to_thread(explain_run, store, done, config)
            except Exception as exc:  # noqa: BLE001 - the same inputs would fail the same way on a retry
                reason = str(exc) if isinstance(exc, ExplanationError) else f"{type(exc).__name__}: {exc}"
                log.error("explaining run %s failed: %s", run_id, reason, exc_info=not isinstance(exc, ExplanationError))
                await bus.publish(Topic.EXPLANATION_FAILED, ExplanationFailed(run_id=run_id, reason=reason[:2000]),
                                  correlation_id=run_id)
                return
            await asyncio.to_thread(store.write_json, location, result)
            log.info("run %s explained in %.1fs", run_id, result["timings"]["total_s"])
        await bus.publish(
            Topic.EXPLANATION_DONE,
            ExplanationDone(run_id=run_id, location=location, top_features=top_features(result, config.top_k)),
            correlation_id=run_id,
        )

    bus.subscribe(Topic.TRAINING_DONE, on_training_done)
