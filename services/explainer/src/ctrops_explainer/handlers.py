"""Which events the explainer service consumes and publishes.

``training.done`` -> explain the run's champion on its data (in a worker thread) -> store
``runs/<run_id>/explanation.json`` atomically -> ``explanation.done`` (its top features).
A failure that retrying cannot fix (no model, unreadable data, ...) -> ``explanation.failed``
with the reason. A run already explained is not explained again: a redelivered or
repeated ``training.done`` re-announces the stored result.

The model explained is the one ``training.done`` names: ``model_uri`` (the champion's
registered version, ``models:/<name>/<version>``) loaded through the MLflow tracking store
when the trainer registered one; otherwise (tracking off or failed, runs from before the
registry) the folder ``model_location`` in the file store. The explanation records which:
``model_uri`` (None for a folder), ``model_version``, ``model_kind``, ``model_location``.

A start imports none of the numerical stack: the first run to explain imports torch, SciPy and
LIME (``config.py`` says why), and MLflow when it loads a registered model. That first run is
a few seconds longer; a start costs about 1 s of CPU instead of 4-5.
"""

from __future__ import annotations

import asyncio
import logging
import os

from pydantic import ValidationError

from ctrops_common.bus import PermanentError
from ctrops_common.dataset import explanation_path, parquet_path
from ctrops_common.documents import Explanation, read_document, write_document
from ctrops_common.events import (
    Event,
    ExplanationDone,
    ExplanationFailed,
    FeatureImportance,
    Topic,
    TrainingDone,
)
from ctrops_common.model_loading import LoadedModel, load_ctr_model, load_ctr_model_uri
from ctrops_common.service import ServiceRuntime
from ctrops_common.storage import FileStore, UnsafePath, check_id

from .config import ExplainConfig, SplitSpec
from .settings import ExplainerSettings

log = logging.getLogger(__name__)

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no progress bars in service logs


class ExplanationError(Exception):
    """The run cannot be explained; the message says why, for a person."""


def explain_run(store: FileStore, done: TrainingDone, config: ExplainConfig,
                tracking_uri: str | None = None) -> Explanation:
    """Load the model ``done`` names and the run's data, and explain them (blocking: call in a thread)."""
    from .pipeline import explain  # the numerical stack, imported by the first run (config.py says why)

    try:
        data_file = store.path(parquet_path(check_id(done.file_id)))
    except UnsafePath as exc:
        raise ExplanationError(f"refusing an unsafe store location: {exc}") from None
    loaded, note = load_explained_model(store, done, tracking_uri)
    if not data_file.exists():
        raise ExplanationError(f"the training data of file {done.file_id} is missing ({parquet_path(done.file_id)})")
    # The trainer's validation rows: the features are tested on rows the model was not fitted on.
    split = SplitSpec(validation_split=done.config.validation_split, seed=done.config.seed)
    result = explain(loaded, data_file, config, split=split)
    return Explanation.model_validate({
        "run_id": done.run_id, "file_id": done.file_id, "model_location": done.model_location,
        "model_uri": loaded.uri, "model_version": loaded.version, "model_note": note,
        **result,
    })


def load_explained_model(store: FileStore, done: TrainingDone, tracking_uri: str | None
                         ) -> tuple[LoadedModel, str | None]:
    """The registered model when ``done.model_uri`` is set, else (or if MLflow fails) the store's folder.
    The note says why a registered model was not used."""
    note = None
    if done.model_uri:
        try:
            return load_ctr_model_uri(done.model_uri, tracking_uri), None
        except Exception as exc:  # noqa: BLE001 - the folder holds the same model; say why it was used
            note = f"{done.model_uri} could not be loaded through MLflow ({type(exc).__name__}: {exc}); " \
                   f"explained the file store's copy at {done.model_location}"
            log.warning("run %s: %s", done.run_id, note)
    try:
        model_folder = store.path(done.model_location.rstrip("/"))
    except UnsafePath as exc:
        raise ExplanationError(f"refusing an unsafe store location: {exc}") from None
    if not (model_folder / "preprocess.json").exists():
        raise ExplanationError(f"no saved model at {done.model_location} (preprocess.json and the model file "
                               "expected)" + (f"; {note}" if note else ""))
    try:
        return load_ctr_model(model_folder), note
    except Exception as exc:  # noqa: BLE001 - a corrupt or incompatible model is the run's problem, not ours
        raise ExplanationError(f"the saved model cannot be loaded: {type(exc).__name__}: {exc}") from None


def top_features(result: Explanation, count: int) -> list[FeatureImportance]:
    return [
        FeatureImportance(feature=f.feature, importance=f.importance, p_value=f.p_value, ci=f.ci,
                          description=f.description)
        for f in result.features[:count]
    ]


def register(runtime: ServiceRuntime, settings: ExplainerSettings) -> None:
    """Subscribe this service's handlers on the runtime's bus."""
    config = settings.explain_config()
    tracking_uri = settings.tracking_uri()
    store = runtime.store
    bus = runtime.bus

    async def on_training_done(event: Event[TrainingDone]) -> None:
        done = event.payload
        try:
            run_id = check_id(done.run_id)
        except UnsafePath as exc:
            raise PermanentError(f"training.done with an invalid run id: {exc}") from None
        location = explanation_path(run_id)
        result: Explanation | None = None
        if await asyncio.to_thread(store.exists, location):
            try:
                result = await asyncio.to_thread(read_document, store, location, Explanation)
                log.info("run %s is already explained; announcing the stored result again", run_id)
            except ValidationError as exc:  # written by an older explainer: explain it again
                log.warning("run %s: the stored explanation does not match the schema (%d errors); explaining "
                            "the run again", run_id, exc.error_count())
        if result is None:
            try:
                result = await asyncio.to_thread(explain_run, store, done, config, tracking_uri)
            except Exception as exc:  # noqa: BLE001 - the same inputs would fail the same way on a retry
                reason = str(exc) if isinstance(exc, ExplanationError) else f"{type(exc).__name__}: {exc}"
                log.error("explaining run %s failed: %s", run_id, reason, exc_info=not isinstance(exc, ExplanationError))
                await bus.publish(Topic.EXPLANATION_FAILED, ExplanationFailed(run_id=run_id, reason=reason[:2000]),
                                  correlation_id=run_id)
                return
            await asyncio.to_thread(write_document, store, location, result)
            log.info("run %s explained in %.1fs (%s model %s)", run_id, result.timings["total_s"],
                     result.model_kind, result.model_uri or result.model_location)
        await bus.publish(
            Topic.EXPLANATION_DONE,
            ExplanationDone(run_id=run_id, location=location, top_features=top_features(result, config.top_k)),
            correlation_id=run_id,
        )

    bus.subscribe(Topic.TRAINING_DONE, on_training_done)
