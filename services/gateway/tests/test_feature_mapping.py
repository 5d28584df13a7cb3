"""The feature-name mapping routes: the shipped names, a user's upload (CSV with or without BOM,
JSON, multipart) stored as the typed model, bad uploads refused with a message naming the line,
and the uploaded names in the report, its PDF and the importance route (real reporter process).

The routes alone need no broker: those tests run the gateway on the in-memory bus (marked inmemory);
the one with the reporter stays on the real broker."""

from __future__ import annotations

import codecs
import io
import time
from pathlib import Path

import pytest
from pypdf import PdfReader

from ctrops_common.dataset import explanation_path, profile_path
from ctrops_common.documents import write_document
from ctrops_common.events import ModelMetrics, ExplanationDone, Topic, TrainingDone, new_id
from ctrops_common.feature_names import FEATURE_MAPPING_PATH, FeatureNameMapping, stored_override
from ctrops_common.sample_documents import explanation_document, profile_document
from ctrops_common.storage import FileStore
from ctrops_common.testing import publish_events as publish

ROUTE = "/api/feature-mapping"
CSV = "text/csv; charset=utf-8"


def _entry(body: dict, column: str) -> dict:
    return next(e for e in body["entries"] if e["column"] == column)


@pytest.mark.inmemory
def test_shipped_names_then_a_users_mapping_overlays_them(memory_gateway, data_dir: Path):
    gateway_client = memory_gateway.client
    store = FileStore(data_dir)
    shipped = gateway_client.get(ROUTE)
    assert shipped.status_code == 200, shipped.text
    body = shipped.json()
    assert body["override"] is False and body["user_entries"] == 0 and len(body["entries"]) >= 119
    assert _entry(body, "hour") == {"column": "hour", "name": "시간대", "group": "지면·시간",
                                    "description": "노출 시각 (0~23시)", "source": "shipped"}
    assert _entry(body, "feat_a_3")["name"] == "정보영역 A-3"

    csv = "column,name,group,description\r\nfeat_a_3,앱 사용 빈도,정보영역,하루 평균 앱 실행 수\r\nmy_col,내 변수,,\r\n"
    put = gateway_client.put(ROUTE, content=codecs.BOM_UTF8 + csv.encode(), headers={"content-type": CSV})
    assert put.status_code == 200, put.text
    body = put.json()
    assert body["override"] is True and body["user_entries"] == 2 and body["updated_at"]
    assert _entry(body, "feat_a_3") == {"column": "feat_a_3", "name": "앱 사용 빈도", "group": "정보영역",
                                        "description": "하루 평균 앱 실행 수", "source": "user"}
    assert _entry(body, "my_col")["source"] == "user" and _entry(body, "hour")["source"] == "shipped"
    assert gateway_client.get(ROUTE).json() == body
    stored = stored_override(store)  # the typed model, as the other services read it
    assert isinstance(stored, FeatureNameMapping) and stored.name_of("feat_a_3") == "앱 사용 빈도"
    assert FeatureNameMapping.model_validate_json(store.path(FEATURE_MAPPING_PATH).read_bytes()) == stored

    # JSON replaces the whole upload: feat_a_3 is shipped again.
    put = gateway_client.put(ROUTE, json={"entries": [{"column": "hour", "name": "노출 시각"}]})
    assert put.status_code == 200, put.text
    assert _entry(put.json(), "hour")["name"] == "노출 시각" and _entry(put.json(), "feat_a_3")["source"] == "shipped"

    # A file in a form (as a browser sends it), CP949 as Excel saves it.
    files = {"file": ("names.csv", "column,name\nseq,최근 행동\n".encode("cp949"), "text/csv")}
    put = gateway_client.put(ROUTE, files=files)
    assert put.status_code == 200, put.text
    assert _entry(put.json(), "seq")["name"] == "최근 행동" and _entry(put.json(), "hour")["name"] == "시간대"
    files = {"file": ("names.json", b'[{"column": "gender", "name": "\xec\x84\xb1"}]', "application/octet-stream")}
    assert _entry(gateway_client.put(ROUTE, files=files).json(), "gender")["name"] == "성"

    removed = gateway_client.delete(ROUTE)
    assert removed.status_code == 200 and removed.json()["override"] is False
    assert not store.exists(FEATURE_MAPPING_PATH) and _entry(removed.json(), "gender")["name"] == "성별"


@pytest.mark.inmemory
def test_bad_uploads_are_refused_with_a_message_naming_the_line_and_nothing_is_stored(memory_gateway):
    gateway_client = memory_gateway.client
    cases = [
        (b"column,name\nhour,A\nage_group,B\nhour,C\n", CSV, 422, "line 4: duplicate column 'hour' (first on line 2)"),
        (b"column,name\nhour,\n", CSV, 422, "line 2 (column 'hour'): the name is empty"),
        (b"feature_id;label\nhour;A\n", CSV, 422, "unknown format: header (line 1)"),
        (b"column,name\nhour,A,extra\n", CSV, 422, "line 2: 3 cells but the header has 2"),
        (b'[{"column": "hour", "name": "A"}, {"column": "hour", "name": "B"}]', "application/json", 422,
         "entry 2: duplicate column 'hour' (first in entry 1)"),
        (b'{"mapping": []}', "application/json", 422, "unknown format"),
        (b"<names/>", "application/xml", 415, "unknown format (Content-Type 'application/xml')"),
        (b"", CSV, 400, "the mapping is empty"),
    ]
    for data, content_type, status, message in cases:
        response = gateway_client.put(ROUTE, content=data, headers={"content-type": content_type})
        assert response.status_code == status, (message, response.status_code, response.text)
        assert response.headers["content-type"].startswith("application/json")
        assert message in response.json()["detail"], (message, response.json()["detail"])
    response = gateway_client.put(ROUTE, files={"other": ("x.csv", b"column,name\nhour,A\n", "text/csv")})
    assert response.status_code == 400 and "no file part named 'file'" in response.json()["detail"]
    assert gateway_client.get(ROUTE).json()["override"] is False


def _completed_run(data_dir: str) -> tuple[str, TrainingDone, ExplanationDone]:
    store = FileStore(Path(data_dir))
    run_id, file_id = new_id(), new_id()
    features = [
        {"feature": "hour", "importance": 1.0, "p_value": 0.001, "ci": [0.8, 1.0],
         "description": "시간대", "auc_drop": 0.02, "auc_drop_ci": [0.012, 0.028],
         "direction": "values 21 raise clicks", "direction_ko": "값 21에서 클릭 증가",
         "effect": {"kind": "values", "values": [21.0], "text": "values 21 raise clicks", "text_ko": "값 21에서 클릭 증가"}},
        {"feature": "feat_a_3", "importance": 0.4, "p_value": 0.02, "ci": [0.2, 0.6],
         "description": "정보영역 A-3", "auc_drop": 0.004, "auc_drop_ci": [0.001, 0.007],
         "direction": "higher values raise clicks", "direction_ko": "값이 클수록 클릭 증가",
         "effect": {"kind": "monotone", "sign": 1, "rho": 0.3, "text": "higher values raise clicks",
                    "text_ko": "값이 클수록 클릭 증가"}},
    ]
    write_document(store, explanation_path(run_id), explanation_document(
        run_id, file_id, features, matrix=[[1.0, 0.45], [0.45, 1.0]], pairs=[(("hour", "feat_a_3"), 0.45)]))
    hours = [{"value": h, "rows": 1000, "clicks": 40 if h == 21 else 18} for h in range(24)]
    write_document(store, profile_path(file_id), profile_document(hour=hours))
    metrics = {"val_loss": 0.09, "val_accuracy": 0.979, "auc": 0.74, "ap": 0.087, "logloss": 0.09,
               "calibration": 1.07, "score": 0.48, "precision": 0.081, "recall": 0.35, "f1": 0.13, "threshold": 0.06}
    done = TrainingDone(run_id=run_id, file_id=file_id, model_location=f"runs/{run_id}/model",
                        metrics=ModelMetrics(**metrics), best_epoch=2, epochs_run=2, duration_s=12.0,
                        experiment_name="CTR_Experiment_feature_names", config={"epochs": 2, "validation_split": 0.2})
    explained = ExplanationDone(run_id=run_id, location=explanation_path(run_id),
                                top_features=[{k: f[k] for k in ("feature", "importance", "p_value", "ci", "description")}
                                              for f in features])
    return run_id, done, explained


def _pdf_text(content: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


def test_the_report_pdf_and_importance_use_the_uploaded_names(start_service, gateway_client, platform_env):
    start_service("reporter", {"CTROPS_OPENAI_API_KEY": ""})
    put = gateway_client.put(ROUTE, content="column,name,group\nfeat_a_3,앱 실행 빈도,앱 사용\n".encode(),
                             headers={"content-type": CSV})
    assert put.status_code == 200, put.text
    views = gateway_client.app.state.gateway.views
    run_id, done, explained = _completed_run(platform_env["data_dir"])
    publish((Topic.TRAINING_DONE, done), (Topic.EXPLANATION_DONE, explained))
    deadline = time.monotonic() + 60
    while views.latest(Topic.EXPLANATION_DONE, run_id) is None:
        assert time.monotonic() < deadline, "explanation not recorded"
        time.sleep(0.2)

    importance = gateway_client.get(f"/api/report/feature-importance/{run_id}").json()
    assert {f["feature"]: f["description"] for f in importance} == {"hour": "시간대", "feat_a_3": "앱 실행 빈도"}
    correlation = gateway_client.get(f"/api/report/correlation/{run_id}").json()
    assert correlation["descriptions"] == ["시간대", "앱 실행 빈도"]

    report = gateway_client.get(f"/api/report/ai/{run_id}")
    assert report.status_code == 200, report.text
    features = {f["name"]: f for f in report.json()["topFeatures"]}
    assert features["feat_a_3"]["description"] == "앱 실행 빈도" and features["feat_a_3"]["group"] == "앱 사용"
    pdf = gateway_client.get(f"/api/report/pdf/{run_id}")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")
    text = _pdf_text(pdf.content)
    assert "앱 실행 빈도" in text and "정보영역 A-3" not in text
    assert "21시에 클릭 증가" in text  # the driver's direction, in Korean

    # A later upload: regenerating the run's PDF rewrites the report with the newer names.
    gateway_client.put(ROUTE, json=[{"column": "feat_a_3", "name": "앱 실행 횟수"}])
    generated = gateway_client.post(f"/api/report/generate-pdf/{run_id}")
    assert generated.status_code == 200, generated.text
    text = _pdf_text(gateway_client.get(f"/api/report/pdf/{run_id}").content)
    assert "앱 실행 횟수" in text and "앱 실행 빈도" not in text
    assert gateway_client.get(f"/api/report/ai/{run_id}").json()["topFeatures"][1]["description"] == "앱 실행 횟수"
