"""Sample inputs for the reporter's tests: a run's events, its explanation.json and profile.json.

The numbers are those of a plausible small run; tests assert that these exact numbers
(not others) reach the report, the prompt and the PDF.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from ctrops_common.dataset import column_description, explanation_path, profile_path
from ctrops_common.documents import Explanation, Profile, write_document
from ctrops_common.events import ExplanationDone, TrainingDone, new_id
from ctrops_common.storage import FileStore

METRICS = {
    "train_loss": 0.5213, "val_loss": 0.0921, "train_accuracy": 0.7402, "val_accuracy": 0.9791,
    "auc": 0.7386, "ap": 0.0874, "logloss": 0.0921, "calibration": 1.0731, "score": 0.4813,
    "precision": 0.0812, "recall": 0.3478, "f1": 0.1317, "threshold": 0.0612,
}
TOP_FEATURES = [
    {"feature": "history_a_1", "importance": 1.0, "p_value": 0.0009, "ci": [0.83, 1.0], "description": "과거 인기도 1"},
    {"feature": "hour", "importance": 0.6243, "p_value": 0.004, "ci": [0.51, 0.74], "description": "시간대"},
    {"feature": "l_feat_14", "importance": 0.4127, "p_value": 0.012, "ci": [0.30, 0.52],
     "description": "광고 속성 14 (광고 세트)"},
    {"feature": "age_group", "importance": 0.2881, "p_value": 0.031, "ci": [0.17, 0.40], "description": "연령대"},
    {"feature": "feat_a_3", "importance": 0.1502, "p_value": 0.21, "ci": [0.02, 0.28], "description": "정보영역 A-3"},
    {"feature": "seq", "importance": 0.0904, "p_value": 0.34, "ci": [0.0, 0.19], "description": "행동 시퀀스"},
]
CURVE = [
    {"train_loss": 0.61, "val_loss": 0.110, "train_accuracy": 0.69, "val_accuracy": 0.971, "auc": 0.701, "ap": 0.061},
    {"train_loss": 0.55, "val_loss": 0.098, "train_accuracy": 0.72, "val_accuracy": 0.976, "auc": 0.727, "ap": 0.079},
    {**METRICS},
]


def make_profile(seed: int = 7) -> dict[str, Any]:
    """profile.json as ingest writes it: segment tables with rows, clicks, ctr (percent)."""
    rng = random.Random(seed)
    hours = []
    for hour in range(24):
        rows = 2500
        rate = 0.035 if hour in (20, 21, 22) else 0.016
        clicks = sum(rng.random() < rate for _ in range(rows))
        hours.append({"value": float(hour), "rows": rows, "clicks": clicks, "ctr": 100 * clicks / rows})
    groups = []
    for age in (4.0, 5.0, 6.0, 7.0, 8.0):
        for gender in (1.0, 2.0):
            rows = 6000
            rate = 0.031 if (age, gender) == (5.0, 2.0) else 0.017
            clicks = sum(rng.random() < rate for _ in range(rows))
            groups.append({"age_group": age, "gender": gender, "rows": rows, "clicks": clicks, "ctr": 100 * clicks / rows})
    inventory = [{"value": v, "rows": 12000, "clicks": c, "ctr": 100 * c / 12000}
                 for v, c in ((36.0, 312), (2.0, 190), (88.0, 150), (17.0, 205), (43.0, 290))]
    return {"columns": {}, "seq": {}, "segments": {
        "hour": hours, "day_of_week": [], "inventory_id": inventory, "age_group_gender": groups}}


# What explanation.json adds per feature (the explainer's held-out test and direction of effect).
EVIDENCE = {
    "history_a_1": {"p_value_raw": 0.0001, "auc_drop": 0.0412, "auc_drop_ci": [0.031, 0.052],
                    "direction": "higher values raise clicks", "direction_ko": "값이 클수록 클릭 증가",
                    "effect": {"kind": "monotone", "sign": 1, "rho": 0.41, "ctr_top_quartile": 0.034,
                               "ctr_bottom_quartile": 0.009}},
    "hour": {"p_value_raw": 0.0004, "auc_drop": 0.018, "auc_drop_ci": [0.011, 0.025],
             "direction": "values 21, 20, 22 raise clicks", "direction_ko": "값 21, 20, 22에서 클릭 증가",
             "effect": {"kind": "values", "values": [21.0, 20.0, 22.0], "ctr_named": 0.0331, "ctr_rest": 0.0162}},
    "l_feat_14": {"p_value_raw": 0.003, "auc_drop": 0.009, "auc_drop_ci": [0.004, 0.014],
                  "direction": "values 3, 7 raise clicks", "direction_ko": "값 3, 7에서 클릭 증가",
                  "effect": {"kind": "values", "values": [3.0, 7.0], "ctr_named": 0.027, "ctr_rest": 0.017}},
    "age_group": {"p_value_raw": 0.012, "auc_drop": 0.004, "auc_drop_ci": [0.0008, 0.0072],
                  "direction": "values 5 raise clicks", "direction_ko": "값 5에서 클릭 증가",
                  "effect": {"kind": "values", "values": [5.0], "ctr_named": 0.026, "ctr_rest": 0.017}},
    "feat_a_3": {"p_value_raw": 0.07, "auc_drop": 0.0011, "auc_drop_ci": [-0.0005, 0.0027],
                 "direction": "no single direction", "direction_ko": "일정한 방향 없음",
                 "effect": {"kind": "mixed", "sign": 0, "rho": 0.02}},
    "seq": {"p_value_raw": 0.15, "auc_drop": 0.0006, "auc_drop_ci": [-0.001, 0.002],
            "direction": "depends on which actions the user took recently",
            "direction_ko": "최근 행동 시퀀스의 내용에 따라 다름", "effect": {"kind": "sequence"}},
}
# The rest of the 118 columns, as a real explanation lists them: little importance, nothing significant,
# except inventory_id (significant though little used, so it is shown beyond the top 15).
FILLERS = ([f"history_b_{i}" for i in range(1, 13)] + [f"feat_e_{i}" for i in range(1, 7)] + ["gender"])


def explanation_features() -> list[dict[str, Any]]:
    features = [{**f, "pValue": f["p_value"], **EVIDENCE[f["feature"]]} for f in TOP_FEATURES]
    for k, name in enumerate(FILLERS):
        importance = round(0.08 - 0.004 * k, 4)
        features.append({"feature": name, "importance": importance, "p_value": 0.62, "pValue": 0.62,
                         "p_value_raw": 0.41, "ci": [max(0.0, importance - 0.03), importance + 0.03],
                         "auc_drop": 0.0001, "auc_drop_ci": [-0.0009, 0.0011], "direction_ko": "두드러지는 값 없음",
                         "direction": "no value stands out", "effect": {"kind": "none"}})
    features.append({"feature": "inventory_id", "importance": 0.004, "p_value": 0.018, "pValue": 0.018,
                     "p_value_raw": 0.005, "ci": [0.0, 0.01], "auc_drop": 0.0031, "auc_drop_ci": [0.0009, 0.0053],
                     "direction": "values 36, 43 raise clicks", "direction_ko": "값 36, 43에서 클릭 증가",
                     "effect": {"kind": "values", "values": [36.0, 43.0], "ctr_named": 0.025, "ctr_rest": 0.015}})
    return features


EFFECT_TEXT = {"none": ("no value stands out", "두드러지는 값 없음"),
               "sequence": ("depends on which actions the user took recently", "최근 행동 시퀀스의 내용에 따라 다름")}


def _explained(f: dict[str, Any]) -> dict[str, Any]:
    """A feature as the explainer writes it: the sample's numbers plus the fields the report does not read."""
    effect = f["effect"]
    text, text_ko = EFFECT_TEXT.get(effect["kind"], (f["direction"], f["direction_ko"]))
    if effect["kind"] == "mixed":
        effect = {"ctr_top_quartile": 0.018, "ctr_bottom_quartile": 0.017, **effect}
    return {"description": column_description(f["feature"]), **f, "significant": f["p_value"] < 0.05,
            "effect": {"text": text, "text_ko": text_ko, **effect}, "auc_drop_se": 0.002,
            "p_value_bootstrap": f["p_value_raw"], "mean_abs_attribution": f["importance"] / 10,
            "mean_attribution": 0.0}


def make_explanation(run_id: str, file_id: str) -> Explanation:
    """explanation.json as the explainer writes it (``Explanation``), with the sample's numbers."""
    names = [f["feature"] for f in TOP_FEATURES]
    matrix = [[1.0 if i == j else round(0.35 / (1 + abs(i - j)) * (-1) ** (i + j), 3) for j in range(len(names))]
              for i in range(len(names))]
    matrix[0][4] = matrix[4][0] = 0.41  # history_a_1 and feat_a_3
    features = [_explained(f) for f in explanation_features()]
    pairs = [(("history_a_1", "history_a_2"), 0.82), (("history_a_1", "feat_a_3"), 0.41), (("hour", "feat_e_2"), -0.33)]
    by_drop = sorted(features, key=lambda f: -f["auc_drop"])
    return Explanation(
        run_id=run_id, file_id=file_id, model_location=f"runs/{run_id}/model/lstm", version=2,
        created_at="2026-03-01T09:00:00+00:00", model_kind="lstm", attribution="lime",
        features=features, significant_features=[f["feature"] for f in features if f["significant"]],
        permutation={
            "metric": "roc_auc", "rows": 12000, "clicks": 240, "repeats": 2, "bootstrap": 500, "baseline": 0.7386,
            "features": [{"feature": f["feature"], "mean_drop": f["auc_drop"], "se": f["auc_drop_se"], "std_drop": 0.001,
                          "ci": f["auc_drop_ci"], "p_value": f["p_value"], "p_value_raw": f["p_value_raw"],
                          "importance": f["auc_drop"] / by_drop[0]["auc_drop"]} for f in by_drop],
            "significant_features": [f["feature"] for f in by_drop if f["significant"]],
            "top10_overlap_with_attribution": 0.8, "top10_overlap_with_lime": 0.8, "spearman_with_attribution": 0.7,
            "significant_in_attribution_top10": 4,
        },
        correlation={
            "features": names, "descriptions": [column_description(n) for n in names], "matrix": matrix,
            "rows": 60000, "threshold": 0.3,
            "pairs": [{"features": pair, "r": r, "descriptions": [column_description(n) for n in pair]}
                      for pair, r in pairs],
            "pairs_note": "3 pair(s) of the 118 features have |r| >= 0.3",
            "max_abs_off_diagonal": 0.82, "method": "Pearson, pairwise-complete rows",
        },
        sample={"rows": 100, "clicked_rows": 50, "validation_rows": 12000, "validation_clicks": 240,
                "evaluation_rows": 12000, "evaluation_clicks": 240, "permutation_rows": 12000,
                "permutation_clicks": 240, "data_rows": 60000, "missing_columns": [], "validation_split": 0.2,
                "split_seed": 42},
        method={"config": {"sample_rows": 100, "click_share": 0.5}, "attribution": "lime",
                "test": "held-out permutation test", "null": "no signal", "correction": "Benjamini-Hochberg",
                "interval": "bootstrap", "definitions": {}},
        timings={"total_s": 12.5},
    )


class SampleRun:
    METRICS = METRICS
    TOP_FEATURES = TOP_FEATURES
    CURVE = CURVE

    def __init__(self, root: Path, *, with_profile: bool = True, metrics: dict[str, Any] | None = None,
                 models: list[dict[str, Any]] | None = None, champion: str = "lstm",
                 comparison: dict[str, Any] | None = None, profile: dict[str, Any] | None = None) -> None:
        """``metrics``: the champion's (default METRICS); ``models``: ModelResult payloads (default none, as older runs)."""
        self.metrics = METRICS if metrics is None else metrics
        self.models, self.champion, self.comparison = models or [], champion, comparison
        self.store = FileStore(root)
        self.run_id, self.file_id = new_id(), new_id()
        self.explanation_location = explanation_path(self.run_id)
        self.explanation = make_explanation(self.run_id, self.file_id)
        write_document(self.store, self.explanation_location, self.explanation)
        self.profile = Profile.model_validate(make_profile() if profile is None else profile)
        if with_profile:
            write_document(self.store, profile_path(self.file_id), self.profile)

    @property
    def training_done(self) -> TrainingDone:
        return TrainingDone.model_validate({
            "run_id": self.run_id, "file_id": self.file_id, "model_location": f"runs/{self.run_id}/model",
            "metrics": self.metrics, "best_epoch": 3, "epochs_run": 3, "duration_s": 41.5,
            "experiment_name": "CTR_Experiment_report_test", "mlflow_run_id": None,
            "config": {"epochs": 3, "batch_size": 1024, "learning_rate": 0.001, "lstm_hidden": 16,
                       "mlp_hidden": [32, 16], "dropout": 0.2, "downsampling": True, "validation_split": 0.2},
            "champion": self.champion, "models": self.models, "comparison": self.comparison,
        })

    @property
    def explanation_done(self) -> ExplanationDone:
        return ExplanationDone(run_id=self.run_id, location=self.explanation_location, top_features=TOP_FEATURES)

    @property
    def curve(self) -> list[dict[str, Any]]:
        return [{"epoch": i + 1, **m} for i, m in enumerate(CURVE)]


@pytest.fixture
def sample_factory(tmp_path: Path):
    """Build sample runs in one store: ``sample_factory(with_profile=False)``."""
    return lambda **kwargs: SampleRun(tmp_path / "store", **kwargs)


@pytest.fixture
def sample_run(sample_factory) -> SampleRun:
    return sample_factory()


@pytest.fixture
def platform_sample(platform_env) -> SampleRun:
    """A sample run in the store the test's service processes use."""
    return SampleRun(Path(platform_env["data_dir"]))


# --- a fake OpenAI-compatible server (a real HTTP server on localhost) ---------------------


class FakeLlm:
    """Answers POST /v1/chat/completions like an OpenAI-compatible server and records each request.

    ``mode``: "good" (a valid structured answer), "malformed" (not the asked JSON),
    "slow" (answers after ``delay_s``, past the client's timeout), "money" (valid JSON that
    claims a won figure, as an LLM might whatever the facts say).
    """

    MODEL = "fake-gpt-test"
    GOOD_SUMMARY = "가짜 LLM 요약: AUC와 AP를 근거로 20시대 타겟팅을 권장합니다."

    def __init__(self) -> None:
        import json as _json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.mode = "good"
        self.delay_s = 3.0
        self.requests: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = _json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                fake.requests.append({"path": self.path, "body": body, "auth": self.headers.get("authorization")})
                if fake.mode == "slow":
                    import time as _time
                    _time.sleep(fake.delay_s)
                content = fake.content()
                answer = {
                    "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": fake.MODEL,
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }
                data = _json.dumps(answer).encode()
                try:
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (timeout test)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def content(self) -> str:
        import json as _json

        if self.mode == "malformed":
            return '{"summary": "형식이 틀린 답", "insights": "이건 목록이 아닙니다"}'
        if self.mode == "money":
            return _json.dumps({
                "summary": "모델 타겟팅으로 월 매출이 1,610,553원 늘어납니다.",
                "insights": [{"type": "success", "title": "수익", "message": "ROI +6.7%", "details": [], "action": ""}],
                "actions": [],
            }, ensure_ascii=False)
        return _json.dumps({
            "summary": self.GOOD_SUMMARY,
            "insights": [
                {"type": "success", "title": "LLM 인사이트: 모델 변별력", "message": "AUC 0.7386으로 순위 구분이 됩니다.",
                 "details": ["AP 0.0874"], "action": "타겟팅에 활용하세요."},
                {"type": "warning", "title": "LLM 인사이트: 정확도 주의", "message": "정확도만 보면 안 됩니다.",
                 "details": [], "action": "AUC를 보세요."},
            ],
            "actions": [
                {"id": "model_targeting", "title": "LLM 과제: 모델 타겟팅", "description": "LLM이 쓴 설명",
                 "duration": "3주", "cost": "없음"},
                {"id": "invented_action", "title": "근거 없는 과제", "description": "무시되어야 함",
                 "duration": "1주", "cost": "큼"},
            ],
        }, ensure_ascii=False)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_llm():
    server = FakeLlm()
    yield server
    server.close()
