"""What the gateway's JSON routes answer, as pydantic models: the OpenAPI schema, its examples, and a filter.

A route's ``response_model`` documents its 2xx body (with a realistic example, ``success(...)``) and,
for a route that returns a dict, is what FastAPI validates and serializes that dict through. It
filters: a key a route writes must be declared here, or it is dropped. So:

- every key the routes write is a field, both spellings where they write both (``f1Score`` beside
  ``f1_score``); keys written only in some states (a finished run's ``best_epoch``, a failed run's
  ``error``) are optional fields, and those routes set ``response_model_exclude_unset=True`` so an
  absent key stays absent (never a ``null`` it did not send);
- numbers keep their JSON type: ``float`` where the route writes floats, ``int`` where it writes
  integers, ``Number`` where it may write either (pydantic would turn 3 into 3.0 for a ``float``);
- open-ended keys are typed dicts (the training metrics, whose set is ``ModelMetrics``'s in both
  spellings; a service's liveness by name), and ``SystemHealthView`` keeps the monitor's own keys beside
  the declared ones (``extra="allow"``).

The models of the routes that were typed first stay beside their routes (``TrainAccepted``,
``PredictResponse``, ...); the others are here, by domain. ``tests/test_openapi_routes.py`` walks the
schema (a model and an example on every operation) and checks the bodies the routes build against
these models, so a key added to a body without its field fails there, not silently in the frontend.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, create_model

from ctrops_common.events import AucComparison, BatchPlan, ModelResult, PreviewRow, PromotionCheck, TrainingConfig

# An int or a float, kept as sent (a plain ``float`` field would write 3 as 3.0).
Number = Annotated[int | float, WithJsonSchema({"type": "number"})]
Metrics = dict[str, float | None]
RUN_ID = "5f0c8e2a9b7d4c1e8a6f3b2d1c0e9f8a"
FILE_ID = "a3d9e1f07c8b4e2d9f6a1b3c5d7e9f01"


def success(example: Any, description: str = "Successful Response", status: int = 200) -> dict[int | str, Any]:
    """The ``responses`` entry of a JSON success answer with its example (the model comes from response_model)."""
    return {status: {"description": description, "content": {"application/json": {"example": example}}}}


def written_as(model: type[BaseModel], name: str, *, nullable_floats: bool = False) -> type[BaseModel]:
    """A model of what ``model.model_dump(mode="json")`` writes: the same fields under their own names
    (no aliases: ``TrainingConfig`` reads camelCase but is dumped snake_case), every one present.
    ``nullable_floats``: the route passes the floats through ``finite`` (NaN becomes null)."""
    fields: dict[str, Any] = {}
    for field_name, info in model.model_fields.items():
        annotation = info.annotation
        if nullable_floats and annotation is float:
            annotation = float | None
        fields[field_name] = (annotation, Field(description=info.description))
    return create_model(name, __doc__=f"{model.__name__} as the route writes it (its own field names).",
                        **fields)


# -- health ------------------------------------------------------------------------------------------


class ServiceLiveness(BaseModel):
    status: Literal["up", "down"] = Field(description="up: an instance sent a heartbeat within "
                                                      "CTROPS_SERVICE_TIMEOUT_S")
    instances: int = Field(description="Instances with a fresh heartbeat")
    last_seen: str | None = Field(description="The newest heartbeat of any instance (ISO 8601), null: never")


class BrokerHealth(BaseModel):
    reachable: bool = Field(description="The broker answered a TCP probe (at most one a second)")
    bootstrap_servers: str
    consuming: bool = Field(description="The gateway's consumer has joined its group")
    restarts_seen: int = Field(description="Broker restarts this gateway lived through")


class HealthReport(BaseModel):
    status: Literal["healthy", "degraded"]
    down: list[str] = Field(description='What is down: "broker" and/or each service whose heartbeats stopped')
    services: dict[str, ServiceLiveness] = Field(description="Liveness per service, by name")
    broker: BrokerHealth
    timestamp: str = Field(description="When this answer was made (ISO 8601, UTC)")


HEALTH_EXAMPLE = {
    "status": "healthy",
    "down": [],
    "services": {name: {"status": "up", "instances": 1, "last_seen": "2026-03-14T05:12:09.481+00:00"}
                 for name in ("ingest", "trainer", "explainer", "reporter", "monitor", "scorer", "gateway")},
    "broker": {"reachable": True, "bootstrap_servers": "localhost:9092", "consuming": True, "restarts_seen": 0},
    "timestamp": "2026-03-14T05:12:10.027+00:00",
}


# -- upload ------------------------------------------------------------------------------------------


class UploadValidation(BaseModel):
    isValid: bool = Field(description="False: the file cannot be trained on (`errors` say why)")  # noqa: N815
    errors: list[str]
    warnings: list[str]


class UploadInfo(BaseModel):
    totalRows: int  # noqa: N815
    totalColumns: int  # noqa: N815
    missingValues: int  # noqa: N815
    missingPercentage: float = Field(description="Percent of cells")  # noqa: N815
    duplicateRows: int  # noqa: N815
    clickedOne: int  # noqa: N815
    clickedZero: int  # noqa: N815
    ctr: float = Field(description="Click rate in percent, e.g. 1.92")


class UploadResult(BaseModel):
    file_id: str = Field(description="Send it to POST /api/train")
    filename: str
    rows: int
    columns: list[str] = Field(description="Column names, in file order")
    validation: UploadValidation
    info: UploadInfo
    preview: list[PreviewRow] = Field(
        description="The first 10 rows, keyed by column: a number where the cell is one, else its text; "
                    "null when empty")
    column_descriptions: dict[str, str] = Field(description="Column -> Korean label (the feature-name mapping)")


UPLOAD_EXAMPLE = {
    "file_id": FILE_ID,
    "filename": "train_sample.csv",
    "rows": 20000,
    "columns": ["gender", "age_group", "inventory_id", "day_of_week", "hour", "seq", "l_feat_1", "clicked"],
    "validation": {"isValid": True, "errors": [], "warnings": ["l_feat_1: 12 values that are not numbers were "
                                                               "treated as missing"]},
    "info": {"totalRows": 20000, "totalColumns": 8, "missingValues": 12, "missingPercentage": 0.01,
             "duplicateRows": 0, "clickedOne": 384, "clickedZero": 19616, "ctr": 1.92},
    "preview": [{"gender": 1, "age_group": 5, "inventory_id": 36, "day_of_week": 3, "hour": 14,
                 "seq": "12,57,9", "l_feat_1": 0.31, "clicked": 0}],
    "column_descriptions": {"gender": "성별", "age_group": "연령대", "inventory_id": "지면 ID", "day_of_week": "요일",
                            "hour": "시간대", "seq": "행동 시퀀스", "l_feat_1": "지면 속성 1", "clicked": "클릭 여부"},
}


# -- training ------------------------------------------------------------------------------------------


TrainingConfigView = written_as(TrainingConfig, "TrainingConfigView")
ComparisonView = written_as(AucComparison, "AucComparisonView", nullable_floats=True)
EmptyObject = Annotated[dict[str, Any], Field(max_length=0, description="No config is known for the run")]


class RetryInfo(BaseModel):
    cause: Literal["died", "interrupted", "lease_expired"] | None
    reason: str | None = Field(description="From the trainer, in English")
    reason_ko: str = Field(description="The cause in Korean, for the client")


class EpochEntry(BaseModel):
    """One finished epoch: its number and its metrics (both spellings, as in ``metrics``)."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, float | None] = Field(init=False)  # type: ignore[assignment]

    epoch: int = Field(description="1-based")


class ModelEntry(ModelResult):
    """One model of a finished run (LSTM+MLP or LightGBM) and its validation metrics."""

    metrics: Metrics = Field(description="Validation metrics, both spellings (as in the status' `metrics`)")


RunStatus = Literal["training", "completed", "failed"]
METRICS_HELP = ("Every metric (fractions), JSON-safe, in both spellings: the contract's four (`train_loss`, "
                "`val_loss`, `train_accuracy`, `val_accuracy`, 0 until the first epoch finishes) with their "
                "camelCase twins, plus the richer ones (auc, ap, logloss, f1 also as f1_score/f1Score, ...). "
                "The set is `ModelMetrics`'s.")


class TrainingStatus(BaseModel):
    """A run as the read model knows it. Always: the first block. A finished run adds its result (from
    `best_epoch` on, and its models from `champion` on, for runs trained with the challenger); a failed
    run `error`, `cancelled`, `failed_at`; a run still training `cancel_requested`."""

    run_id: str
    status: RunStatus
    current_epoch: int
    total_epochs: int
    metrics: Metrics = Field(description=METRICS_HELP)
    file_id: str | None
    created_at: str | None = Field(description="ISO 8601")
    attempt: int = Field(description="The trainer's attempt (a run is retried when its trainer died)")
    max_attempts: int | None
    retry: RetryInfo | None = Field(description="Why the latest attempt is a retry (null for the first)")
    experiment_name: str | None
    config: TrainingConfigView | EmptyObject  # type: ignore[valid-type]
    history: list[EpochEntry] = Field(description="One entry per finished epoch of the latest attempt")
    replaces: str | None = Field(None, description="A retrain: the run it replaces")
    batch: BatchPlan | None = Field(None, description="The batch size the LSTM used beside the one asked for")
    # a finished run
    best_epoch: int | None = None
    epochs_run: int | None = None
    duration_s: float | None = None
    model_location: str | None = None
    mlflow_run_id: str | None = None
    completed_at: str | None = None
    promoted: bool | None = Field(None, description="Its champion became the platform's champion")
    promotion: PromotionCheck | None = Field(None, description="A retrain's DeLong comparison with the run "
                                                               "it replaces")
    champion: Literal["lstm", "gbdt"] | None = None
    champion_label: str | None = None
    championLabel: str | None = None  # noqa: N815
    models: list[ModelEntry] | None = None
    comparison: ComparisonView | None = Field(  # type: ignore[valid-type]
        None, description="Paired DeLong test of the two models' AUCs")
    model_uri: str | None = None
    registered_model: str | None = None
    registered_version: int | None = None
    # a failed run
    error: str | None = None
    cancelled: bool | None = None
    failed_at: str | None = None
    # a run still training
    cancel_requested: bool | None = None


def _metrics_example(loss: float, accuracy: float, auc: float) -> dict[str, float]:
    out = {"train_loss": round(loss * 0.95, 4), "val_loss": loss, "train_accuracy": round(accuracy - 0.004, 4),
           "val_accuracy": accuracy}
    out.update(trainLoss=out["train_loss"], valLoss=loss, trainAccuracy=out["train_accuracy"], valAccuracy=accuracy,
               auc=auc, ap=0.071, logloss=loss, f1=0.1389, f1_score=0.1389, f1Score=0.1389)
    return out


_CONFIG_EXAMPLE = {"experiment_name": "CTR_Experiment_20260314", "epochs": 2, "batch_size": 4096,
                   "learning_rate": 0.001, "lstm_hidden": 64, "mlp_hidden": [256, 128], "dropout": 0.2,
                   "downsampling": True, "validation_split": 0.2, "seed": 42, "max_seq_len": 128,
                   "early_stopping_patience": 3, "seq_encoding": "embedding", "notifications": []}
TRAINING_STATUS_EXAMPLE = {
    "run_id": RUN_ID, "status": "completed", "current_epoch": 2, "total_epochs": 2,
    "metrics": _metrics_example(0.0874, 0.9807, 0.7412), "file_id": FILE_ID,
    "created_at": "2026-03-14T05:02:11.204+00:00", "attempt": 1, "max_attempts": 3, "retry": None,
    "experiment_name": "CTR_Experiment_20260314", "config": _CONFIG_EXAMPLE,
    "history": [{"epoch": 1, **_metrics_example(0.0931, 0.9803, 0.7120)},
                {"epoch": 2, **_metrics_example(0.0874, 0.9807, 0.7412)}],
    "best_epoch": 2, "epochs_run": 2, "duration_s": 41.7, "model_location": f"runs/{RUN_ID}/model/gbdt",
    "mlflow_run_id": "9c1f2e3d4b5a69788796a5b4c3d2e1f0", "completed_at": "2026-03-14T05:02:55.918+00:00",
    "promoted": True, "promotion": None, "champion": "gbdt", "champion_label": "LightGBM",
    "models": [
        {"kind": "lstm", "label": "LSTM+MLP", "model_location": f"runs/{RUN_ID}/model/lstm", "auc_ci_low": 0.681,
         "auc_ci_high": 0.743, "val_rows": 4000, "val_clicks": 77, "best_iteration": 2, "iterations_run": 2,
         "duration_s": 30.2, "model_uri": None, "metrics": _metrics_example(0.0874, 0.9807, 0.7120)},
        {"kind": "gbdt", "label": "LightGBM", "model_location": f"runs/{RUN_ID}/model/gbdt", "auc_ci_low": 0.712,
         "auc_ci_high": 0.770, "val_rows": 4000, "val_clicks": 77, "best_iteration": 87, "iterations_run": 137,
         "duration_s": 9.8, "model_uri": None, "metrics": _metrics_example(0.0861, 0.9807, 0.7412)},
    ],
    "comparison": {"method": "DeLong paired", "auc_lstm": 0.712, "auc_gbdt": 0.7412, "difference": 0.0292,
                   "ci_low": -0.004, "ci_high": 0.0624, "p_value": 0.087, "val_rows": 4000, "val_clicks": 77},
    "championLabel": "LightGBM",
}


class RunSummary(BaseModel):
    run_id: str
    created_at: str | None = Field(description="ISO 8601")
    status: RunStatus
    accuracy: float | None = Field(description="Validation accuracy (fraction) of the kept or latest epoch")
    file_id: str | None
    auc: float | None
    current_epoch: int
    total_epochs: int
    attempt: int
    experiment_name: str | None
    champion: Literal["lstm", "gbdt"] | None = Field(description="The finished run's better model")


RUNS_EXAMPLE = [
    {"run_id": RUN_ID, "created_at": "2026-03-14T05:02:11.204+00:00", "status": "completed", "accuracy": 0.9807,
     "file_id": FILE_ID, "auc": 0.7412, "current_epoch": 2, "total_epochs": 2, "attempt": 1,
     "experiment_name": "CTR_Experiment_20260314", "champion": "gbdt"},
    {"run_id": "0d4c2b1a99887766554433221100ffee", "created_at": "2026-03-14T05:06:40.017+00:00",
     "status": "training", "accuracy": 0.9801, "file_id": FILE_ID, "auc": 0.6934, "current_epoch": 1,
     "total_epochs": 10, "attempt": 1, "experiment_name": "CTR_Experiment_20260314", "champion": None},
]


class CancelAccepted(BaseModel):
    run_id: str
    status: Literal["cancelling"] = Field(description="The trainer stops the run; it then ends as failed with "
                                                      "`cancelled: true`")


CANCEL_EXAMPLE = {"run_id": RUN_ID, "status": "cancelling"}


# -- reports -----------------------------------------------------------------------------------------------


class PdfGenerated(BaseModel):
    pdf_url: str = Field(description="GET it for the PDF")
    pdfUrl: str  # noqa: N815
    status: Literal["generated"]
    run_id: str = Field(description="The run (an alias resolved)")
    request_id: str
    model_used: str = Field(description="The language model that wrote the narrative, or `deterministic`")


PDF_GENERATED_EXAMPLE = {"pdf_url": f"/api/report/pdf/{RUN_ID}", "pdfUrl": f"/api/report/pdf/{RUN_ID}",
                         "status": "generated", "run_id": RUN_ID, "request_id": "7e6d5c4b3a2918273645546372819aab",
                         "model_used": "deterministic"}


# -- dashboards: engineers ----------------------------------------------------------------------------------


class CurrentMetrics(BaseModel):
    accuracy: float | None = Field(description="Fractions, at the run's threshold; 0 before any run")
    precision: float | None
    recall: float | None
    f1Score: float | None  # noqa: N815
    f1_score: float | None
    responseTime: float = Field(description="ms: the scorer's serving p95, else the API's")  # noqa: N815
    response_time: float
    responseTimeSource: str = Field(description="scorer, monitor or gateway")  # noqa: N815
    apiResponseTime: float = Field(description="The API's p95 (ms)")  # noqa: N815
    auc: float | None
    ap: float | None
    logloss: float | None
    calibration: float | None
    runId: str | None  # noqa: N815
    note: str


class SystemHealthView(BaseModel):
    """0..100 in both spellings, from the monitor's latest snapshot (its ``SystemHealth``, `source` monitor)
    or, without a fresh one, the gateway's own estimate (`source` gateway, with a `note`). Keys the
    snapshot adds later pass through unchanged (``extra="allow"``)."""

    model_config = ConfigDict(extra="allow")

    status: str = Field(description="healthy, degraded or critical")
    cpu_usage: float
    cpuUsage: float  # noqa: N815
    memory_usage: float
    memoryUsage: float  # noqa: N815
    api_success_rate: float
    apiSuccessRate: float  # noqa: N815
    error_rate: float
    errorRate: float  # noqa: N815
    source: str | None = Field(None, description="monitor (a fresh snapshot) or gateway (its own estimate)")
    services: dict[str, dict[str, Any]] | None = Field(None, description="Per service, by name")
    active_alerts: list[Any] | None = None
    response_time_ms: float | None = Field(None, description="monitor: the API's p95 (worst replica)")
    requests_in_window: int | None = None
    errors_in_window: int | None = None
    generated_at: str | None = None
    as_of: str | None = Field(None, description="monitor: when the snapshot was published")
    note: str | None = Field(None, description="gateway: why the monitor's snapshot is not used")


class PerformanceData(BaseModel):
    """The chart: `source` monitoring (the deployed model's periods) or training (the latest run's epochs).
    The keys from `bucket` on are the monitoring periods' only."""

    source: Literal["monitoring", "training"]
    runId: str | None  # noqa: N815
    labels: list[str]
    months: list[str] = Field(description="The same labels (the guide's name for the x axis)")
    accuracy: list[float | None]
    valAccuracy: list[float | None]  # noqa: N815
    loss: list[float | None]
    valLoss: list[float | None]  # noqa: N815
    f1Score: list[float | None]  # noqa: N815
    valF1Score: list[float | None]  # noqa: N815
    auc: list[float | None]
    ap: list[float | None]
    bucket: str | None = None
    aucCiLow: list[float | None] | None = None  # noqa: N815
    aucCiHigh: list[float | None] | None = None  # noqa: N815
    valAuc: list[float | None] | None = None  # noqa: N815
    estimatedAuc: list[float | None] | None = None  # noqa: N815
    tossScore: list[float | None] | None = None  # noqa: N815
    calibration: list[float | None] | None = None
    calibrationCiLow: list[float | None] | None = None  # noqa: N815
    calibrationCiHigh: list[float | None] | None = None  # noqa: N815
    predictedClicks: list[float | None] | None = None  # noqa: N815
    actualClicks: list[int | None] | None = None  # noqa: N815
    meanProbability: list[float | None] | None = None  # noqa: N815
    predictionPsi: list[float | None] | None = None  # noqa: N815
    driftedFeatures: list[list[str]] | None = None  # noqa: N815
    rows: list[int] | None = None
    labelled: list[bool] | None = None
    runIds: list[str] | None = None  # noqa: N815
    modelKinds: list[str] | None = None  # noqa: N815
    periodIds: list[str] | None = None  # noqa: N815
    series: dict[str, str] | None = Field(None, description="What each series means")


class LatestRun(BaseModel):
    """The newest finished run (`status` none and zeros before any)."""

    runId: str | None  # noqa: N815
    trainingTime: float = Field(description="Minutes")  # noqa: N815
    epochs: int
    batchSize: int  # noqa: N815
    learningRate: float | None  # noqa: N815
    optimizer: str
    finalLoss: float  # noqa: N815
    bestAccuracy: float = Field(description="Percent")  # noqa: N815
    status: Literal["none", "completed"]
    experimentName: str | None = None  # noqa: N815
    bestEpoch: int | None = None  # noqa: N815
    auc: float | None = None
    ap: float | None = None
    finishedAt: str | None = None  # noqa: N815
    champion: Literal["lstm", "gbdt"] | None = None
    model: str | None = Field(None, description="The champion's label")
    batchSizeUsed: int | None = None  # noqa: N815


class ErrorLog(BaseModel):
    level: str = Field(description="ERROR, WARNING or CRITICAL")
    message: str
    timestamp: str
    stack: str
    service: str
    run_id: str | None


class Bottleneck(BaseModel):
    component: str
    kind: Literal["api", "pipeline"]
    avgTime: float = Field(description="ms")  # noqa: N815
    maxTime: float = Field(description="ms")  # noqa: N815
    percentage: float
    status: Literal["good", "warning", "critical"]
    recommendation: str
    requests: int | None = None
    errors: int | None = None


class ModelAlert(BaseModel):
    kind: str
    severity: str
    message: str
    period: str | None
    feature: str | None
    alertId: str  # noqa: N815


class PerformanceAlert(BaseModel):
    show: bool
    message: str
    severity: str = Field(description="high, medium, or low when nothing is open")
    count: int = Field(description="Open alerts of any kind")
    kind: str | None = None
    alertId: str | None = None  # noqa: N815
    since: str | None = None
    period: str | None = None
    feature: str | None = None
    runId: str | None = None  # noqa: N815
    modelKind: str | None = None  # noqa: N815
    modelAlerts: list[ModelAlert] | None = None  # noqa: N815


class SiDashboard(BaseModel):
    currentMetrics: CurrentMetrics  # noqa: N815
    systemHealth: SystemHealthView  # noqa: N815
    performanceData: PerformanceData  # noqa: N815
    latestRun: LatestRun  # noqa: N815
    errorLogs: list[ErrorLog]  # noqa: N815
    bottleneckAnalysis: list[Bottleneck]  # noqa: N815
    performanceAlert: PerformanceAlert  # noqa: N815


SI_EXAMPLE = {
    "currentMetrics": {"accuracy": 0.9807, "precision": 0.1625, "recall": 0.1212, "f1Score": 0.1389,
                       "f1_score": 0.1389, "responseTime": 18.4, "response_time": 18.4,
                       "responseTimeSource": "scorer", "apiResponseTime": 42.7, "auc": 0.7412, "ap": 0.071,
                       "logloss": 0.0861, "calibration": 1.03, "runId": RUN_ID,
                       "note": "accuracy/precision/recall/f1 are at the stated decision threshold; judge the "
                               "model by auc and ap"},
    "systemHealth": {"status": "healthy", "cpu_usage": 23.5, "cpuUsage": 23.5, "memory_usage": 41.2,
                     "memoryUsage": 41.2, "api_success_rate": 99.8, "apiSuccessRate": 99.8, "error_rate": 0.2,
                     "errorRate": 0.2, "response_time_ms": 42.7, "requests_in_window": 512, "errors_in_window": 0,
                     "services": {"scorer": {"status": "up", "instances": 1,
                                             "last_seen": "2026-03-14T05:11:58.020+00:00", "cpu_percent": 3.1,
                                             "rss_bytes": 412000000, "in_flight": 0}},
                     "active_alerts": [], "generated_at": "2026-03-14T05:12:00.101+00:00", "source": "monitor",
                     "as_of": "2026-03-14T05:12:00.113+00:00"},
    "performanceData": {"source": "training", "runId": RUN_ID, "labels": ["Epoch 1", "Epoch 2"],
                        "months": ["Epoch 1", "Epoch 2"], "accuracy": [0.9799, 0.9803],
                        "valAccuracy": [0.9803, 0.9807], "loss": [0.0884, 0.0830], "valLoss": [0.0931, 0.0874],
                        "f1Score": [0.1111, 0.1389], "valF1Score": [0.1111, 0.1389], "auc": [0.712, 0.7412],
                        "ap": [0.061, 0.071]},
    "latestRun": {"runId": RUN_ID, "experimentName": "CTR_Experiment_20260314", "trainingTime": 0.7, "epochs": 2,
                  "bestEpoch": 2, "batchSize": 4096, "learningRate": 0.001, "optimizer": "Adam",
                  "finalLoss": 0.0861, "bestAccuracy": 98.07, "auc": 0.7412, "ap": 0.071,
                  "finishedAt": "2026-03-14T05:02:55.918+00:00", "status": "completed", "champion": "gbdt",
                  "model": "LightGBM", "batchSizeUsed": 1024},
    "errorLogs": [{"level": "WARNING", "message": "[scorer] model of run 5f0c... loaded in 2.4 s",
                   "timestamp": "2026-03-14T05:03:10.550+00:00", "stack": "", "service": "scorer",
                   "run_id": RUN_ID}],
    "bottleneckAnalysis": [
        {"component": "API /api/upload", "kind": "api", "avgTime": 812.3, "maxTime": 1520.9, "percentage": 61.4,
         "requests": 3, "errors": 0, "status": "critical",
         "recommendation": "대용량 업로드: 네트워크 대역폭과 ingest 처리량을 확인하세요. Large uploads: check bandwidth "
                           "and ingest throughput."},
        {"component": "모델 학습 (trainer)", "kind": "pipeline", "avgTime": 41700.0, "maxTime": 41700.0,
         "percentage": 78.2, "status": "warning",
         "recommendation": "파이프라인 시간의 대부분입니다: epochs/배치 크기 조정, early stopping, trainer 확장을 "
                           "고려하세요. Dominant stage: tune epochs/batch size, use early stopping or more trainers."},
    ],
    "performanceAlert": {"show": False, "message": "", "severity": "low", "count": 0},
}


# -- dashboards: marketers ----------------------------------------------------------------------------------


class TopSegment(BaseModel):
    dimension: str
    title: str
    label: str
    ctr: float = Field(description="Percent")
    ctrLow: float | None  # noqa: N815
    ctrHigh: float | None  # noqa: N815
    lift: float
    rows: int
    pAdjusted: float | None  # noqa: N815
    baseCtr: float  # noqa: N815


class MoneyAssumptions(BaseModel):
    monthlyImpressions: int  # noqa: N815
    cpmKrw: float  # noqa: N815
    cpcKrw: float  # noqa: N815
    conversionRate: float  # noqa: N815
    conversionValueKrw: float  # noqa: N815
    targetedShare: float  # noqa: N815
    effectiveTargetedShare: float | None  # noqa: N815


class BusinessMetrics(BaseModel):
    """CTR facts of the data beside the run report's money figures (copied from report.json, null with
    `status` saying why before the report or for a weak model)."""

    status: str = Field(description="no_run, pending, failed, unreadable, no_estimate or estimated")
    statusMessage: str  # noqa: N815
    actualCtr: float = Field(description="Percent")  # noqa: N815
    predictedCtr: float | None  # noqa: N815
    bestHoursCtr: float  # noqa: N815
    ctrLift: float = Field(description="Percent above the overall CTR in the best hours")  # noqa: N815
    modelAuc: float | None  # noqa: N815
    modelAucCi: list[float] | None  # noqa: N815
    verdict: str | None
    verdictKo: str | None  # noqa: N815
    expectedMonthlyClicks: int | None  # noqa: N815
    modelMonthlyClicks: int | None  # noqa: N815
    modelMonthlyClicksRange: list[Number] | None  # noqa: N815
    additionalClicks: int | None  # noqa: N815
    estimatedMonthlyCost: int | None  # noqa: N815
    estimatedMonthlyRevenue: int | None  # noqa: N815
    modelMonthlyRevenue: int | None  # noqa: N815
    estimatedRoas: float | None  # noqa: N815
    additionalRevenue: int | None = Field(description="KRW per month")  # noqa: N815
    additionalRevenueRange: list[Number] | None  # noqa: N815
    roiIncrease: float | None  # noqa: N815
    roiIncreaseRange: list[Number] | None  # noqa: N815
    revenueChangePercent: float | None  # noqa: N815
    revenueChangeRange: list[Number] | None  # noqa: N815
    topSegment: TopSegment | None  # noqa: N815
    currency: str
    isEstimate: bool  # noqa: N815
    source: str
    assumptions: MoneyAssumptions | None
    basis: str


class Insight(BaseModel):
    icon: str
    type: Literal["success", "warning", "info"]
    title: str
    message: str
    details: list[str]
    action: str


class CustomerSegment(BaseModel):
    name: str
    label: str
    segment: str = Field(description="age_group_gender, else inventory_id")
    ctr: float = Field(description="Percent")
    ctrLow: float  # noqa: N815
    ctrHigh: float  # noqa: N815
    potential: float = Field(description="0..100: the lower 95% bound against the best segment's")
    lift: float
    rows: int
    clicks: int
    share: float = Field(description="Percent of the rows")
    pAdjusted: float | None = Field(None, description="With a report: its Benjamini-Hochberg adjusted p")  # noqa: N815
    significant: bool | None = None
    isTop: bool | None = Field(None, description="With a report: the report's top segment")  # noqa: N815


class TimeSlot(BaseModel):
    period: str = Field(description="HH:00-HH:00")
    hour: int
    ctr: float = Field(description="Percent")
    ctrLow: float  # noqa: N815
    ctrHigh: float  # noqa: N815
    traffic: int
    trafficShare: float  # noqa: N815
    clicks: int
    isBest: bool  # noqa: N815


class Strategy(BaseModel):
    id: int
    priority: Literal["high", "medium", "low"]
    title: str
    description: str
    impact: float = Field(description="Percent")
    duration: str
    cost: str
    source: str


class SummaryEntry(BaseModel):
    date: str
    timestamp: str
    title: str
    description: str


class DashboardSources(BaseModel):
    profile: bool = Field(description="ingest's highlights.json of the upload (segments, hours) was read")
    report: bool = Field(description="The run has a report.json (usable or not)")
    generatedAt: str  # noqa: N815


class ClientDashboard(BaseModel):
    runId: str | None  # noqa: N815
    fileId: str | None  # noqa: N815
    reportStatus: str  # noqa: N815
    businessMetrics: BusinessMetrics  # noqa: N815
    aiInsights: list[Insight]  # noqa: N815
    customerSegments: list[CustomerSegment]  # noqa: N815
    optimalTimeSlots: list[TimeSlot]  # noqa: N815
    marketingStrategies: list[Strategy]  # noqa: N815
    performanceSummary: list[SummaryEntry]  # noqa: N815
    sources: DashboardSources


CLIENT_EXAMPLE = {
    "runId": RUN_ID, "fileId": FILE_ID, "reportStatus": "ready",
    "businessMetrics": {
        "status": "estimated", "statusMessage": "모델 신뢰도 '사용 가능': 금액은 95% 범위의 추정치입니다.",
        "actualCtr": 1.92, "predictedCtr": 1.978, "bestHoursCtr": 2.611, "ctrLift": 36.0, "modelAuc": 0.7412,
        "modelAucCi": [0.712, 0.77], "verdict": "usable", "verdictKo": "사용 가능",
        "expectedMonthlyClicks": 19200, "modelMonthlyClicks": 21150, "modelMonthlyClicksRange": [20410, 21930],
        "additionalClicks": 1950, "estimatedMonthlyCost": 3000000, "estimatedMonthlyRevenue": 7680000,
        "modelMonthlyRevenue": 8460000, "estimatedRoas": 2.56, "additionalRevenue": 780000,
        "additionalRevenueRange": [484000, 1092000], "roiIncrease": 26.0, "roiIncreaseRange": [16.13, 36.4],
        "revenueChangePercent": 10.16, "revenueChangeRange": [6.3, 14.22],
        "topSegment": {"dimension": "age_group_gender", "title": "연령대 x 성별", "label": "연령대 5 · 성별 1",
                       "ctr": 2.84, "ctrLow": 2.31, "ctrHigh": 3.48, "lift": 1.48, "rows": 3120,
                       "pAdjusted": 0.0031, "baseCtr": 1.92},
        "currency": "KRW", "isEstimate": True, "source": "report",
        "assumptions": {"monthlyImpressions": 1000000, "cpmKrw": 3000.0, "cpcKrw": 156.25, "conversionRate": 0.02,
                        "conversionValueKrw": 20000.0, "targetedShare": 0.3, "effectiveTargetedShare": 0.3},
        "basis": "금액은 이 실행의 리포트(report.json)가 계산한 추정치를 그대로 보여 줍니다. The figures are the run "
                 "report's own estimate, copied, never recomputed here.",
    },
    "aiInsights": [{"icon": "⏰", "type": "info", "title": "CTR 상위 시간대 14:00-15:00",
                    "message": "CTR 2.61% (전체 1.92%의 1.4배)",
                    "details": ["14:00-15:00: CTR 2.61% (95% 2.18-3.12%), 노출 1,532"],
                    "action": "다중검정 보정을 거친 판단과 실행 과제는 리포트에서 확인하세요."}],
    "customerSegments": [{"name": "age_5_gender_1", "label": "연령대 5 · 성별 1", "segment": "age_group_gender",
                          "ctr": 2.84, "ctrLow": 2.31, "ctrHigh": 3.48, "potential": 100.0, "lift": 1.479,
                          "rows": 3120, "clicks": 89, "share": 15.6, "pAdjusted": 0.0031, "significant": True,
                          "isTop": True}],
    "optimalTimeSlots": [{"period": "14:00-15:00", "hour": 14, "ctr": 2.611, "ctrLow": 2.18, "ctrHigh": 3.12,
                          "traffic": 1532, "trafficShare": 7.66, "clicks": 40, "isBest": True}],
    "marketingStrategies": [{"id": 1, "priority": "high", "title": "상위 세그먼트 집중 노출",
                             "description": "연령대 5 · 성별 1 세그먼트에 노출 비중을 늘립니다.", "impact": 10.2,
                             "duration": "2주", "cost": "낮음", "source": "report"}],
    "performanceSummary": [{"date": "2026-03-14", "timestamp": "2026-03-14T05:02:55.918+00:00",
                            "title": "모델 학습 완료",
                            "description": "CTR_Experiment_20260314: 정확도 98.1%, AUC 0.741, 2 epochs"}],
    "sources": {"profile": True, "report": True, "generatedAt": "2026-03-14T14:12:10.027+09:00"},
}


# -- the AI report (documents.ReportDoc, served as the reporter wrote it) ----------------------------------

_REPORT_METRICS = {"accuracy": 0.9807, "precision": 0.1625, "recall": 0.1212, "f1": 0.1389, "f1_score": 0.1389,
                   "auc": 0.7412, "ap": 0.071, "logloss": 0.0861, "calibration": 1.03, "score": 0.4934,
                   "threshold": 0.0473}
REPORT_EXAMPLE = {
    "runId": RUN_ID, "run_id": RUN_ID, "experimentName": "CTR_Experiment_20260314",
    "generatedAt": "2026-03-14T05:03:40+00:00",
    "summary": "LightGBM 모델의 AUC는 0.741 (95% 0.712-0.770)로 '사용 가능' 수준입니다. 시간대와 연령대가 클릭을 가장 잘 "
               "설명합니다.",
    "accuracy": 98.07, "roiIncrease": 26.0, "additionalRevenue": 780000.0, "revenueChangePercent": 10.16,
    "moneyRange": {"additionalRevenueKrw": [484000.0, 1092000.0], "revenueChangePercent": [6.3, 14.22],
                   "roiChangePoints": [16.13, 36.4], "roiModelPercent": [172.1, 192.4],
                   "targetedCtr": [0.0231, 0.0348], "clicksModel": [20410.0, 21930.0], "level": 0.95,
                   "method": "Wilson"},
    "modelStrength": {"verdict": "usable", "verdictKo": "사용 가능", "reasons": ["AUC 0.741: 95% 구간 하한 0.712가 0.7 이상"],
                      "champion": "gbdt", "championLabel": "LightGBM", "auc": 0.7412, "aucCi": [0.712, 0.77],
                      "aucCiMethod": "DeLong", "ap": 0.071, "baseRate": 0.0192, "apLift": 3.7, "valRows": 4000,
                      "valClicks": 77, "valCountsEstimated": False, "accuracy": 0.9807, "majorityBaseline": 0.9808,
                      "models": [{"kind": "gbdt", "label": "LightGBM", "champion": True, "auc": 0.7412,
                                  "auc_ci_low": 0.712, "auc_ci_high": 0.77, "ap": 0.071},
                                 {"kind": "lstm", "label": "LSTM+MLP", "champion": False, "auc": 0.712,
                                  "auc_ci_low": 0.681, "auc_ci_high": 0.743, "ap": 0.061}],
                      "comparison": None},
    "topFeatures": [{"name": "hour", "description": "시간대", "group": "지면·시간", "importance": 1.0, "pValue": 0.001,
                     "pValueRaw": 0.0001, "significant": True, "ci": [0.86, 1.0], "aucDrop": 0.031,
                     "aucDropCi": [0.018, 0.044], "direction": "values", "directionKo": "값에 따라 다름",
                     "effectKo": "14-16시에 클릭률이 가장 높습니다", "color": "#4f46e5"}],
    "drivers": ["hour", "age_group"],
    "correlation": {"threshold": 0.7, "rows": 20000, "maxAbsOffDiagonal": 0.12, "pairs": []},
    "priorityRule": "impact", "featureNamesDigest": "shipped",
    "aiInsights": [{"icon": "💡", "type": "success", "title": "오후 시간대 집중",
                    "message": "14-16시의 CTR이 전체보다 36% 높습니다.",
                    "details": ["14:00-15:00: CTR 2.61% (95% 2.18-3.12%)"], "action": "오후 시간대 입찰가를 올리세요."}],
    "actionPlan": [{"id": "segment_shift", "title": "상위 세그먼트 집중 노출",
                    "description": "연령대 5 · 성별 1 세그먼트에 노출 비중을 늘립니다.", "priority": "high", "impact": 10.2,
                    "duration": "2주", "cost": "낮음", "color": "#ef4444"}],
    "model_used": "deterministic-ko-v1", "narrativeSource": "deterministic", "narrativeFallbackReason": None,
    "metrics": _REPORT_METRICS,
    "training": {"bestEpoch": 2, "epochsRun": 2, "durationS": 41.7, "fileId": FILE_ID},
    "data": {"rows": 20000, "clicks": 384, "ctr": 1.92},
    "assumptions": {"currency": "KRW", "computable": True, "reason": None, "monthlyImpressions": 1000000,
                    "cpmKrw": 3000.0, "cpcKrw": 156.25, "conversionRate": 0.02, "conversionValueKrw": 20000.0,
                    "targetedShare": 0.3, "effectiveTargetedShare": 0.3, "monthlySpendKrw": 3000000.0,
                    "clicksBase": 19200.0, "clicksModel": 21150.0, "revenueBaseKrw": 7680000.0,
                    "revenueModelKrw": 8460000.0, "formulas": {}, "note": ""},
    "segments": {"available": True, "findings": [{
        "dimension": "age_group_gender", "title": "연령대 × 성별 CTR", "base_ctr": 1.92,
        "best": [{"label": "연령대 5 · 성별 1", "rows": 3120, "clicks": 89, "ctr": 2.84, "ctr_low": 2.31,
                  "ctr_high": 3.48, "lift": 1.479, "p_value": 0.00078, "p_adjusted": 0.0031}],
        "worst": [], "segments_considered": 12, "tests_in_family": 40}]},
    "inputsDigest": "3f9a1c7e",
}


# -- performance -------------------------------------------------------------------------------------


class PerformanceView(BaseModel):
    """A run's model numbers and the platform's response time. Besides the declared keys, every
    ``ModelMetrics`` field under each spelling the frontend reads (``val_accuracy``/``valAccuracy``/
    ``accuracy``, ``f1``/``f1_score``/``f1Score``, ``auc``, ``ap``, ``logloss``, ``calibration``, ``score``,
    ``threshold``, losses, ...): a number or null. They are extra keys, so a metric added to
    ``ModelMetrics`` is answered without a change here."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"additionalProperties": {"type": ["number", "null"]}})

    run_id: str
    runId: str  # noqa: N815
    status: Literal["completed", "training"] = Field(description="training: the numbers are the latest finished epoch's")
    accuracy: float = Field(description="Validation accuracy (fraction), 0 when unknown; the other contract numbers too")
    precision: float
    recall: float
    f1_score: float
    f1Score: float  # noqa: N815
    response_time: float = Field(description="ms: platform p95 from the monitor's snapshot, else this gateway's")
    responseTime: float  # noqa: N815
    response_time_source: Literal["monitor", "gateway"]
    evaluated_at: str = Field(description="ISO 8601: when the run finished, or the epoch was reported")
    champion: Literal["lstm", "gbdt"] | None = Field(None, description="Which model the numbers are of")
    model: str | None = None
    best_epoch: int | None = None
    epochs_run: int | None = None
    duration_s: float | None = None
    experiment_name: str | None = None
    epoch: int | None = Field(None, description="A run still training: its latest finished epoch")
    total_epochs: int | None = None
    note: str


PERFORMANCE_EXAMPLE = {
    "run_id": RUN_ID, "runId": RUN_ID, "status": "completed",
    "val_accuracy": 0.9807, "valAccuracy": 0.9807, "accuracy": 0.9807, "precision": 0.1625, "recall": 0.1212,
    "f1": 0.1389, "f1_score": 0.1389, "f1Score": 0.1389, "auc": 0.7386, "ap": 0.0911, "logloss": 0.0871,
    "calibration": 1.02, "score": 0.3312, "threshold": 0.0612, "train_loss": 0.3107, "trainLoss": 0.3107,
    "val_loss": 0.0871, "valLoss": 0.0871, "train_accuracy": 0.71, "trainAccuracy": 0.71,
    "seconds": 41.2, "samples_per_s": 9120.0, "samplesPerS": 9120.0,
    "champion": "gbdt", "model": "LightGBM",
    "response_time": 18.4, "responseTime": 18.4, "response_time_source": "monitor",
    "evaluated_at": "2026-03-14T09:12:44+00:00", "best_epoch": 7, "epochs_run": 10, "duration_s": 412.5,
    "experiment_name": "CTR_Experiment_20260314",
    "note": ("accuracy/precision/recall/f1 are at the stated decision threshold; with ~2% clicks a constant "
             "'no click' model scores ~98% accuracy, so judge the model by auc and ap (and logloss, calibration)."),
}
