"""The explainer as a real process on the real broker: training.done in, explanation out, once."""

from __future__ import annotations

import json
import shutil

from ctrops_common.bus import Bus
from ctrops_common.dataset import explanation_path, parquet_path
from ctrops_common.documents import Explanation
from ctrops_common.events import ModelMetrics, Topic, TrainingConfig, TrainingDone, new_id
from ctrops_common.settings import CommonSettings
from ctrops_common.storage import FileStore
from ctrops_common.testing import read_events

# Small but complete: every stage runs, in seconds.
SMALL_ENV = {
    "CTROPS_EXPLAINER_SAMPLE_ROWS": "24",
    "CTROPS_EXPLAINER_LIME_SAMPLES": "400",
    "CTROPS_EXPLAINER_BACKGROUND_ROWS": "400",
    "CTROPS_EXPLAINER_SEQ_BANK_SIZE": "64",
    "CTROPS_EXPLAINER_BOOTSTRAP": "200",
    "CTROPS_EXPLAINER_PERMUTATION_REPEATS": "1",
    "CTROPS_EXPLAINER_EVAL_ROWS": "1500",
    "CTROPS_EXPLAINER_CORRELATION_ROWS": "3000",
    "CTROPS_EXPLAINER_CORRELATION_TOP_K": "8",
    "CTROPS_EXPLAINER_TORCH_THREADS": "1",
}


def training_done(run_id: str, file_id: str) -> TrainingDone:
    return TrainingDone(
        run_id=run_id, file_id=file_id, model_location=f"runs/{run_id}/model/",
        metrics=ModelMetrics(train_loss=0.5, val_loss=0.5, train_accuracy=0.7, val_accuracy=0.7),
        best_epoch=1, epochs_run=1, duration_s=1.0, experiment_name="test", config=TrainingConfig(),
    )


def place_run(data_dir, planted_model) -> tuple[str, str]:
    """Put the planted model and its data where the trainer and ingest would have."""
    store = FileStore(data_dir)
    run_id, file_id = new_id(), new_id()
    target = store.path(parquet_path(file_id))
    target.parent.mkdir(parents=True)
    shutil.copy(planted_model.parquet, target)
    shutil.copytree(planted_model.model_folder, store.path(f"runs/{run_id}/model"))
    return run_id, file_id


async def test_training_done_is_explained_stored_and_announced_once(start_service, data_dir, planted_model):
    run_id, file_id = place_run(data_dir, planted_model)
    explainer = start_service("explainer", SMALL_ENV)
    bus = Bus(CommonSettings(), "test")
    await bus.start()
    try:
        await bus.publish(Topic.TRAINING_DONE, training_done(run_id, file_id), correlation_id=run_id)
        [done] = await read_events(Topic.EXPLANATION_DONE, predicate=lambda e: e.payload.run_id == run_id,
                                   timeout_s=120)
        stored = data_dir / explanation_path(run_id)
        assert stored.exists(), explainer.log()[-3000:]
        first_bytes, first_mtime = stored.read_bytes(), stored.stat().st_mtime_ns

        # The same training.done again (a new event, e.g. re-sent by an operator): no second explanation.
        await bus.publish(Topic.TRAINING_DONE, training_done(run_id, file_id), correlation_id=run_id)
        announced = await read_events(Topic.EXPLANATION_DONE, count=2, predicate=lambda e: e.payload.run_id == run_id,
                                      timeout_s=60)
    finally:
        await bus.stop()
    assert done.correlation_id == run_id and done.producer == "explainer"
    assert done.payload.location == explanation_path(run_id)
    assert stored.read_bytes() == first_bytes and stored.stat().st_mtime_ns == first_mtime
    assert announced[1].payload.top_features == done.payload.top_features

    result = Explanation.model_validate_json(first_bytes)  # the file is the typed document
    assert result.run_id == run_id and result.file_id == file_id
    assert [f.feature for f in done.payload.top_features] == [f.feature for f in result.features[:8]]
    assert result.sample.rows == 24 and result.sample.clicked_rows == 12
    assert len(result.correlation.features) == 8
    assert result.method.config["lime_samples"] == 400
    raw = json.loads(first_bytes)  # the spellings readers of the file rely on are still there
    assert all(f["pValue"] == f["p_value"] for f in raw["features"])
    assert "run " + run_id + " explained" in explainer.log()
    assert not list(stored.parent.glob("*.part"))  # nothing half-written left beside it


async def test_a_run_without_a_model_fails_with_a_reason(start_service, data_dir):
    start_service("explainer", SMALL_ENV)
    run_id, file_id = new_id(), new_id()
    bus = Bus(CommonSettings(), "test")
    await bus.start()
    try:
        await bus.publish(Topic.TRAINING_DONE, training_done(run_id, file_id), correlation_id=run_id)
        [failed] = await read_events(Topic.EXPLANATION_FAILED, predicate=lambda e: e.payload.run_id == run_id,
                                     timeout_s=60)
    finally:
        await bus.stop()
    assert "no saved model" in failed.payload.reason and f"runs/{run_id}/model" in failed.payload.reason
    assert not (data_dir / explanation_path(run_id)).exists()
