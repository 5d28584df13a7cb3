"""Feature importance and correlation routes: what the gateway answers from its read model and the file
store on the in-memory bus (marker inmemory); the flow through a real explainer process on the real broker."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import torch

from ctrops_common.datagen import generate
from ctrops_common.dataset import column_description, explanation_path, parquet_path
from ctrops_common.documents import write_document
from ctrops_common.events import (
    ModelMetrics,
    ExplanationDone,
    Topic,
    TrainingConfig,
    TrainingDone,
    TrainingFailed,
    TrainingRequested,
    new_id,
)
from ctrops_common.ml import Preprocess, TabularSeqModel, save_model
from ctrops_common.sample_documents import explanation_document
from ctrops_common.storage import FileStore
from ctrops_common.testing import publish_events as publish, wait_for

EXPLAINER_ENV = {
    "CTROPS_EXPLAINER_SAMPLE_ROWS": "16",
    "CTROPS_EXPLAINER_LIME_SAMPLES": "300",
    "CTROPS_EXPLAINER_BACKGROUND_ROWS": "300",
    "CTROPS_EXPLAINER_SEQ_BANK_SIZE": "32",
    "CTROPS_EXPLAINER_BOOTSTRAP": "100",
    "CTROPS_EXPLAINER_PERMUTATION_REPEATS": "1",
    "CTROPS_EXPLAINER_EVAL_ROWS": "600",
    "CTROPS_EXPLAINER_TORCH_THREADS": "1",
}
ROUTES = ("/api/report/feature-importance/{}", "/api/features/{}", "/api/report/correlation/{}")


def stored_run(data_dir: Path, with_model: bool = True) -> tuple[str, str]:
    """A file in the training layout and (optionally) a saved model, as ingest and the trainer leave them."""
    store = FileStore(data_dir)
    run_id, file_id = new_id(), new_id()
    csv = data_dir / "gen.csv"
    generate(csv, 1200, seed=3, ctr=0.1)
    table = pacsv.read_csv(csv, convert_options=pacsv.ConvertOptions(column_types={"seq": pa.string()}))
    columns = [pc.cast(pc.split_pattern(table.column(n), ","), pa.list_(pa.int32())) if n == "seq"
               else table.column(n).cast(pa.int8() if n == "clicked" else pa.float64()) for n in table.column_names]
    target = store.path(parquet_path(file_id))
    target.parent.mkdir(parents=True)
    pq.write_table(pa.table(columns, names=table.column_names), target)
    if with_model:
        features = [n for n in table.column_names if n not in ("seq", "clicked")]
        torch.manual_seed(0)
        model = TabularSeqModel(len(features), 4, [8], 0.0)  # untrained: the routes only carry numbers
        save_model(store.path(f"runs/{run_id}/model"), model.eval(),
                   Preprocess(features, [0.0] * len(features), 16, 500.0, 4, [8], 0.0, 0.1, 0.1))
    return run_id, file_id


def training_done(run_id: str, file_id: str) -> TrainingDone:
    return TrainingDone(
        run_id=run_id, file_id=file_id, model_location=f"runs/{run_id}/model/",
        metrics=ModelMetrics(train_loss=0.5, val_loss=0.5, train_accuracy=0.7, val_accuracy=0.7),
        best_epoch=1, epochs_run=1, duration_s=1.0, experiment_name="test", config=TrainingConfig(),
    )


@pytest.mark.inmemory
def test_unknown_and_malformed_run_ids_are_404(memory_gateway):
    gateway_client = memory_gateway.client
    for run_id in (new_id(), "demo-run", "mock-run-1700000000000", "run-abc12345", "latest", "..%2f..%2fetc"):
        for route in ROUTES:
            response = gateway_client.get(route.format(run_id))
            assert response.status_code == 404, (route, run_id, response.text)
            assert response.json()["detail"]


def test_routes_say_not_ready_until_the_explainer_is_done_then_serve_it(gateway_client, start_service, data_dir):
    run_id, file_id = stored_run(data_dir)
    url = f"/api/report/feature-importance/{run_id}"

    publish((Topic.TRAINING_REQUESTED, TrainingRequested(run_id=run_id, file_id=file_id,
                                                         parquet_location=parquet_path(file_id),
                                                         config=TrainingConfig())))
    training = wait_for(lambda: gateway_client.get(url), lambda r: r.status_code != 404)
    assert training.status_code == 409 and training.json()["status"] == "training"
    assert "still training" in training.json()["detail"] and int(training.headers["retry-after"]) > 0

    publish((Topic.TRAINING_DONE, training_done(run_id, file_id)))  # no explainer running yet
    explaining = wait_for(lambda: gateway_client.get(url), lambda r: r.json().get("status") == "explaining")
    assert explaining.status_code == 409 and "retry-after" in explaining.headers
    latest = gateway_client.get("/api/report/correlation/latest")
    assert latest.status_code == 409 and run_id in latest.json()["detail"]

    start_service("explainer", EXPLAINER_ENV)
    ready = wait_for(lambda: gateway_client.get(url), lambda r: r.status_code == 200, timeout_s=120)
    items = ready.json()
    assert isinstance(items, list) and len(items) == 119 - 2 + 1  # every feature column, plus seq
    assert all(set(item) == {"feature", "importance", "pValue", "ci", "description"} for item in items)
    assert [i["importance"] for i in items] == sorted((i["importance"] for i in items), reverse=True)
    assert items[0]["importance"] == 1.0
    assert all(0 <= i["pValue"] <= 1 and len(i["ci"]) == 2 and i["ci"][0] <= i["ci"][1] for i in items)
    assert {i["feature"]: i["description"] for i in items}["hour"] == "시간대"
    assert gateway_client.get(f"/api/features/{run_id}").json() == items
    assert gateway_client.get("/api/features/latest").json() == items

    correlation = gateway_client.get(f"/api/report/correlation/{run_id}").json()
    matrix = np.array(correlation["matrix"])
    assert len(correlation["features"]) == 10 and matrix.shape == (10, 10)
    assert np.allclose(matrix, matrix.T) and np.allclose(np.diag(matrix), 1) and np.isfinite(matrix).all()
    top = [i["feature"] for i in items[:10]]
    assert correlation["features"] == ["seq_length" if f == "seq" else f for f in top]


def test_failed_training_and_failed_explanation_answer_with_their_reason(gateway_client, start_service, data_dir):
    no_model_run, file_id = stored_run(data_dir, with_model=False)
    failed_run = new_id()
    start_service("explainer", EXPLAINER_ENV)
    publish((Topic.TRAINING_FAILED, TrainingFailed(run_id=failed_run, reason="out of memory at epoch 3")),
            (Topic.TRAINING_DONE, training_done(no_model_run, file_id)))

    response = wait_for(lambda: gateway_client.get(f"/api/features/{failed_run}"), lambda r: r.status_code != 404)
    assert response.status_code == 409 and response.json()["status"] == "training_failed"
    assert "out of memory at epoch 3" in response.json()["detail"] and "retry-after" not in response.headers

    url = f"/api/report/correlation/{no_model_run}"
    response = wait_for(lambda: gateway_client.get(url), lambda r: r.json().get("status") == "failed", timeout_s=60)
    assert response.status_code == 409 and "no saved model" in response.json()["detail"]


@pytest.mark.inmemory
def test_an_announced_explanation_missing_from_the_store_is_503_not_a_wait(memory_gateway):
    gateway_client = memory_gateway.client
    run_id = new_id()
    memory_gateway.publish((Topic.EXPLANATION_DONE, ExplanationDone(
        run_id=run_id, location=f"runs/{run_id}/explanation.json", top_features=[])))
    response = gateway_client.get(f"/api/features/{run_id}")
    assert response.status_code == 503 and "CTROPS_DATA_DIR" in response.json()["detail"]


@pytest.mark.inmemory
def test_the_stored_explanation_document_is_served_and_a_file_that_is_not_one_is_503(memory_gateway, data_dir):
    gateway_client = memory_gateway.client
    store = FileStore(data_dir)
    run_id = new_id()
    features = [{"feature": "hour", "importance": 0.4, "p_value": 0.02, "ci": [0.3, 0.5], "description": "옛 이름"},
                {"feature": "history_a_1", "importance": 1.0, "p_value": 0.001, "ci": [0.8, 1.0],
                 "description": "과거 인기도 1"}]
    write_document(store, explanation_path(run_id),
                   explanation_document(run_id, new_id(), features, matrix=[[1.0, 0.3], [0.3, 1.0]]))
    items = gateway_client.get(f"/api/features/{run_id}")
    assert items.status_code == 200, items.text
    # By importance; pValue is the adjusted p; the description is the mapping in effect, not the file's.
    assert items.json() == [
        {"feature": "history_a_1", "importance": 1.0, "pValue": 0.001, "ci": [0.8, 1.0],
         "description": column_description("history_a_1")},
        {"feature": "hour", "importance": 0.4, "pValue": 0.02, "ci": [0.3, 0.5], "description": "시간대"},
    ]
    correlation = gateway_client.get(f"/api/report/correlation/{run_id}")
    assert correlation.status_code == 200, correlation.text
    assert correlation.json() == {"features": ["hour", "history_a_1"], "matrix": [[1.0, 0.3], [0.3, 1.0]],
                                  "descriptions": ["시간대", column_description("history_a_1")]}

    for stored in ('{"features": [], "correlation": {"features": [], "matrix": []}}', "{not json"):
        store.write_bytes(explanation_path(run_id), stored.encode())
        for path in (f"/api/features/{run_id}", f"/api/report/correlation/{run_id}"):
            response = gateway_client.get(path)
            assert response.status_code == 503 and response.json()["status"] == "unavailable", response.text
            assert run_id in response.json()["detail"] and "explain the run again" in response.json()["detail"]


@pytest.mark.inmemory
def test_openapi_documents_the_definitions(memory_gateway):
    gateway_client = memory_gateway.client
    spec = gateway_client.get("/openapi.json").json()
    importance = spec["paths"]["/api/report/feature-importance/{run_id}"]["get"]
    description = importance["description"]
    assert "Benjamini-Hochberg" in description and "permutation test" in description
    assert "TreeSHAP" in description and "bootstrap" in description
    assert {"404", "409", "503"} <= set(importance["responses"])
    assert "Pearson" in spec["paths"]["/api/report/correlation/{run_id}"]["get"]["description"]
    assert "/api/features/{run_id}" in spec["paths"]
