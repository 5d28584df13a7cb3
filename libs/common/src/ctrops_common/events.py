"""The event catalogue: topic names, the envelope, and one typed payload per topic.

Producers and consumers share these models, so a message that does not match its
schema fails at the edge (and is dead-lettered) instead of deep inside a handler.
docs/events.md documents who produces and who consumes each topic.
"""

from __future__ import annotations

import functools
import inspect
import os
import unicodedata
import uuid
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any, ClassVar, Generic, Literal, TypeVar, get_args

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.alias_generators import to_camel

from .model_metrics import ModelMetrics, spellings  # ModelMetrics: the events' metrics model, re-exported

SCHEMA_VERSION = 1


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_id() -> str:
    """Opaque id for files, runs, events: 32 lowercase hex characters."""
    return uuid.uuid4().hex


class Topic(StrEnum):
    UPLOAD_RECEIVED = "upload.received"
    FILE_UPLOADED = "file.uploaded"
    FILE_REJECTED = "file.rejected"
    TRAINING_REQUESTED = "training.requested"
    TRAINING_STARTED = "training.started"
    TRAINING_PROGRESS = "training.progress"
    TRAINING_DONE = "training.done"
    TRAINING_FAILED = "training.failed"
    TRAINING_CANCEL_REQUESTED = "training.cancel.requested"
    EXPLANATION_DONE = "explanation.done"
    EXPLANATION_FAILED = "explanation.failed"
    REPORT_REQUESTED = "report.requested"
    REPORT_READY = "report.ready"
    REPORT_FAILED = "report.failed"
    SCORING_REQUESTED = "scoring.requested"
    SCORING_PROGRESS = "scoring.progress"
    SCORING_DONE = "scoring.done"
    SCORING_FAILED = "scoring.failed"
    MONITORING_PERIOD = "monitoring.period"
    MONITOR_SNAPSHOT = "monitor.snapshot"
    MONITOR_ALERT = "monitor.alert"
    SERVICE_HEARTBEAT = "service.heartbeat"
    SERVICE_ERROR = "service.error"
    DEAD_LETTER = "dead.letter"
    PROBE = "bus.probe"
    PROBE_REPLY = "bus.probe.reply"


# Production ignores fields a payload does not declare (a newer producer beside an older consumer);
# the test suite sets CTROPS_STRICT_PAYLOADS=1 (conftest.py), so one of our own payloads carrying a
# field its model lacks is an error there, not a value that silently disappears. Checked in a
# validator rather than by extra="forbid", so the published schema (docs/asyncapi.yaml) is the same.
STRICT_PAYLOADS = os.environ.get("CTROPS_STRICT_PAYLOADS", "") == "1"


@functools.cache
def _accepted_keys(model: type[BaseModel]) -> frozenset[str]:
    """Every key ``model`` reads: field names, aliases and validation-alias choices."""
    keys: set[str] = set()
    for name, info in model.model_fields.items():
        keys.add(name)
        if info.alias:
            keys.add(info.alias)
        alias = info.validation_alias
        for choice in (alias.choices if isinstance(alias, AliasChoices) else [alias] if alias else []):
            keys.add(choice if isinstance(choice, str) else str(choice.path[0]))
    return frozenset(keys)


class Payload(BaseModel):
    model_config = ConfigDict(extra="ignore")
    # A payload that is also an API body (the frontend's training config) stays lenient in tests too.
    lenient: ClassVar[bool] = False

    @model_validator(mode="before")
    @classmethod
    def _undeclared_fields_fail_in_tests(cls, data: Any) -> Any:
        if STRICT_PAYLOADS and not cls.lenient and isinstance(data, dict):
            unknown = set(data) - _accepted_keys(cls)
            if unknown:
                raise ValueError(f"{cls.__name__} does not declare {sorted(unknown)} (CTROPS_STRICT_PAYLOADS=1)")
        return data


# --- files -----------------------------------------------------------------


UploadPurpose = Literal["training", "scoring"]


class UploadReceived(Payload):
    """The gateway stored an upload byte-for-byte; ingest validates it."""

    file_id: str
    filename: str
    location: str  # path relative to the file store root
    size_bytes: int
    # "scoring": a file to score with a trained model (POST /api/predict/{run_id}/batch): the same
    # checks, except that ``clicked`` may be absent (an unlabelled batch) or hold one class only.
    purpose: UploadPurpose = "training"


class Validation(Payload):
    is_valid: bool
    errors: list[str] = []
    warnings: list[str] = []


class DataInfo(Payload):
    total_rows: int
    total_columns: int
    missing_values: int
    missing_percentage: float  # percent
    duplicate_rows: int
    clicked_one: int
    clicked_zero: int
    ctr: float  # percent, e.g. 1.92


# One row of an uploaded CSV's preview, keyed by the file's own column names (the user's, so a
# mapping, not a model): a number where ingest read the cell as one (int when whole), the text
# where the column is text (seq, categorical, time columns), None where the cell is empty.
PreviewValue = str | int | float | None
PreviewRow = dict[str, PreviewValue]


class FileUploaded(Payload):
    file_id: str
    filename: str
    location: str  # the raw CSV as uploaded
    parquet_location: str | None  # columnar copy for training; None when the data is invalid
    encoding: str
    rows: int
    columns: list[str]
    feature_columns: list[str] = []  # numeric features the model may use (not seq, not clicked)
    validation: Validation
    info: DataInfo
    preview: list[PreviewRow]  # the first rows (IngestOptions.preview_rows)
    column_descriptions: dict[str, str]
    profile_location: str | None = None  # per-column statistics and segment tables (JSON)
    purpose: UploadPurpose = "training"
    labelled: bool = True  # the file has a ``clicked`` column (always, for training uploads)
    # A file to score's time column (date/event_date/timestamp/event_time, as written in the header):
    # its rows' days (KST) are the Parquet copy's ``date`` column (date32), first and last ISO days here.
    time_column: str | None = None
    first_date: str | None = None
    last_date: str | None = None


class FileRejected(Payload):
    """Structural problem: the gateway answers ``status_code`` with ``message``."""

    file_id: str
    filename: str
    status_code: int
    message: str


# --- training --------------------------------------------------------------


def _parse_hidden(value: Any) -> list[int]:
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        try:
            value = [int(p) for p in parts]
        except ValueError:
            raise ValueError("mlp_hidden must be comma-separated integers such as '256,128'") from None
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError("mlp_hidden must be a non-empty list of layer sizes such as [256, 128]")
    if not all(isinstance(v, int) and not isinstance(v, bool) or isinstance(v, str) and v.strip().isdigit()
               for v in value):  # int({}) or int(None) would escape as a TypeError (a 500)
        raise ValueError("mlp_hidden must list whole numbers of units such as [256, 128]")
    sizes = [int(v) for v in value]
    if any(s < 1 or s > 4096 for s in sizes) or len(sizes) > 8:
        raise ValueError("mlp_hidden: 1 to 8 layers, each 1..4096 units")
    return sizes


NUMERIC_CONFIG_FIELDS = ("epochs", "batch_size", "learning_rate", "lstm_hidden", "dropout", "validation_split",
                         "seed", "max_seq_len", "early_stopping_patience")


def experiment_name_problem(name: str) -> str | None:
    """Why an experiment name is refused, or None. Names become MLflow experiment names and
    appear in reports and logs: no control characters (NUL, newlines), no path separators."""
    bad = next((c for c in name if unicodedata.category(c) in ("Cc", "Zl", "Zp")), None)
    if bad is not None:
        return f"must not contain control characters (found U+{ord(bad):04X})"
    if "/" in name or "\\" in name or name.strip() in (".", "..") or ".." in name:
        return "must be a plain name such as 'CTR_Experiment_1', without path separators ('/', '\\') or '..'"
    return None


class TrainingConfig(Payload):
    """Training options; accepts camelCase (frontend) and snake_case (guide), ignores unknown keys."""

    model_config = ConfigDict(extra="ignore", alias_generator=to_camel, populate_by_name=True)
    lenient: ClassVar[bool] = True  # the API's body: the frontend may send keys it does not use

    experiment_name: str = Field(default_factory=lambda: f"CTR_Experiment_{utcnow():%Y%m%d}", max_length=200)
    epochs: int = Field(10, ge=1, le=200)
    batch_size: int = Field(4096, ge=16, le=65536)
    learning_rate: float = Field(0.001, gt=0, le=1.0, allow_inf_nan=False)
    lstm_hidden: int = Field(64, ge=1, le=1024)
    mlp_hidden: list[int] = Field(default_factory=lambda: [256, 128])
    dropout: float = Field(0.2, ge=0.0, le=0.9, allow_inf_nan=False)
    downsampling: bool = True
    validation_split: float = Field(0.2, ge=0.05, le=0.5, allow_inf_nan=False)
    seed: int = Field(42, ge=0, le=2**31 - 1)
    max_seq_len: int = Field(128, ge=1, le=4096, description="Most recent seq tokens kept per row.")
    early_stopping_patience: int | None = Field(
        3, ge=1, le=200,
        description="Stop after this many epochs without a better validation AUC (the best epoch is kept); "
                    "null trains every epoch.")
    seq_encoding: Literal["embedding", "scalar"] = Field(
        "embedding",
        description="How seq tokens enter the LSTM: 'embedding' (hashed vocabulary -> learned vectors) or "
                    "'scalar' (the seed notebook's token/scale as one number per step).")
    notifications: list[str] = []

    @field_validator("mlp_hidden", mode="before")
    @classmethod
    def _hidden(cls, v: Any) -> list[int]:
        return _parse_hidden(v)

    @field_validator("experiment_name", mode="before")
    @classmethod
    def _name(cls, v: Any) -> Any:
        if v is None or (isinstance(v, str) and not v.strip()):
            return f"CTR_Experiment_{utcnow():%Y%m%d}"
        if isinstance(v, str):
            problem = experiment_name_problem(v)
            if problem:
                raise ValueError(problem)
        return v

    @field_validator(*NUMERIC_CONFIG_FIELDS, mode="before")
    @classmethod
    def _no_booleans(cls, v: Any) -> Any:
        # JSON true/false are not numbers: pydantic's lax mode would take true as 1.
        if isinstance(v, bool):
            raise ValueError(f"must be a number, not {str(v).lower()}")
        return v

    @field_validator("notifications", mode="before")
    @classmethod
    def _notifications(cls, v: Any) -> list[str]:
        return [str(x) for x in v] if isinstance(v, (list, tuple)) else []


class TrainingRequested(Payload):
    run_id: str
    file_id: str
    parquet_location: str
    config: TrainingConfig
    client_id: str | None = None
    # A retrain (POST /api/train/{run_id}/retrain): the run this one replaces and that run's
    # champion folder in the file store; the new champion is compared with it on the new run's
    # validation rows (paired DeLong) and becomes the champion only when it is not worse.
    replaces: str | None = None
    replaces_model_location: str | None = None


RetryCause = Literal["died", "interrupted", "lease_expired"]


class TrainingStarted(Payload):
    run_id: str
    attempt: int
    worker: str
    max_attempts: int | None = None  # CTROPS_TRAINER_MAX_ATTEMPTS of the trainer that started it
    # Why attempt n > 1 exists: the previous attempt's training process died (``died``), its trainer
    # gave the run back (``interrupted``: stopping, a broker error) or stopped renewing its lease
    # (``lease_expired``: killed, restarted); ``retry_reason`` in words (English, from the trainer).
    retry_cause: RetryCause | None = None
    retry_reason: str | None = None


ModelKind = Literal["lstm", "gbdt"]


class BatchPlan(Payload):
    """The batch size the LSTM trained with, beside the one the config asked for."""

    requested: int
    used: int
    steps_per_epoch: int
    train_rows_per_epoch: int
    reason: str | None = None  # why ``used`` differs from ``requested`` (None when it does not)


class TrainingProgress(Payload):
    run_id: str
    attempt: int = 1
    epoch: int  # 1-based
    total_epochs: int
    metrics: ModelMetrics
    batch: BatchPlan | None = None  # the LSTM's batch size, used vs requested


class ModelResult(Payload):
    """One model of a run (the LSTM+MLP or the gradient-boosting challenger) and its validation numbers."""

    kind: ModelKind
    label: str  # for people: "LSTM+MLP", "LightGBM"
    metrics: ModelMetrics  # validation metrics of the kept model (best epoch / best iteration)
    model_location: str  # folder in the file store (weights + preprocess.json)
    auc_ci_low: float | None = None  # DeLong 95% interval of the validation AUC
    auc_ci_high: float | None = None
    val_rows: int | None = None
    val_clicks: int | None = None
    best_iteration: int  # best epoch of the LSTM, best boosting round of the GBDT
    iterations_run: int
    duration_s: float
    model_uri: str | None = None  # MLflow logged model (models:/m-...), when tracking is on


class AucComparison(Payload):
    """Paired DeLong test of the two models' AUCs on the same validation rows."""

    method: str = "DeLong paired"
    auc_lstm: float
    auc_gbdt: float
    difference: float  # auc_gbdt - auc_lstm
    ci_low: float  # 95% interval of the difference
    ci_high: float
    p_value: float  # two-sided, H0: equal AUCs
    val_rows: int
    val_clicks: int


class PromotionCheck(Payload):
    """A retrain's new champion against the model it replaces, on the new run's validation rows."""

    method: str = "DeLong paired"
    replaced_run_id: str
    auc_new: float
    auc_old: float
    difference: float  # auc_new - auc_old
    ci_low: float  # 95% interval of the difference
    ci_high: float
    p_value: float  # two-sided, H0: equal AUCs
    val_rows: int
    val_clicks: int
    promoted: bool
    reason: str  # why it was (not) promoted, for a person


class TrainingDone(Payload):
    run_id: str
    file_id: str
    model_location: str  # folder of the champion in the file store (weights and preprocessing)
    metrics: ModelMetrics  # of the champion (the LSTM's best epoch or the GBDT's best round)
    best_epoch: int  # of the LSTM
    epochs_run: int  # of the LSTM
    duration_s: float
    experiment_name: str
    mlflow_run_id: str | None = None
    config: TrainingConfig
    champion: ModelKind = "lstm"
    models: list[ModelResult] = []  # every model the run trained, champion included
    comparison: AucComparison | None = None
    batch: BatchPlan | None = None
    registered_model: str | None = None  # MLflow registered model name
    registered_version: int | None = None  # version of the champion in it (alias "champion")
    model_uri: str | None = None  # models:/<name>/<version>: where the explainer and reporter load it
    replaces: str | None = None  # the run a retrain replaces (TrainingRequested.replaces)
    # Whether this run's champion became the platform's champion (what ``champion`` scores with).
    # Every ordinary run is; a retrain only when ``promotion`` found it not worse.
    promoted: bool = True
    promotion: PromotionCheck | None = None


class TrainingFailed(Payload):
    run_id: str
    reason: str  # what went wrong and what to do, for a person
    cancelled: bool = False


class TrainingCancelRequested(Payload):
    run_id: str


# --- explanation and reports ------------------------------------------------


class FeatureImportance(Payload):
    feature: str
    importance: float  # 0..1
    p_value: float = Field(validation_alias=AliasChoices("p_value", "pValue"))
    ci: tuple[float, float]
    description: str


class ExplanationDone(Payload):
    run_id: str
    location: str  # JSON with importances, permutation check and correlation
    top_features: list[FeatureImportance]


class ExplanationFailed(Payload):
    run_id: str
    reason: str


class ReportRequested(Payload):
    run_id: str
    request_id: str
    include_charts: bool = True
    include_insights: bool = True
    include_action_plan: bool = True


class ReportReady(Payload):
    run_id: str
    request_id: str
    report_location: str  # report JSON of the contract
    pdf_location: str
    model_used: str


class ReportFailed(Payload):
    run_id: str
    request_id: str
    reason: str
    retryable: bool = False  # an input (e.g. the explanation) has not arrived yet: ask again later


# --- scoring and monitoring over time -------------------------------------

ScoringModelChoice = Literal["champion", "lstm", "gbdt"]
PeriodBucket = Literal["day", "week", "month"]


class ScoringRequested(Payload):
    """Score a validated upload (``purpose="scoring"``) with a run's model (POST /api/predict/{run}/batch)."""

    job_id: str
    run_id: str  # resolved by the gateway: a real run id (never "latest"/"champion")
    model: ScoringModelChoice = "champion"  # which of the run's models: its champion, or one by kind
    file_id: str
    filename: str
    parquet_location: str
    rows: int
    labelled: bool  # the file has ``clicked``: the batch becomes a monitoring period
    period: str | None = None  # the period it belongs to ("2026-03", "2026-W11", "2026-03-14"); None: upload day
    bucket: PeriodBucket = "month"
    client_id: str | None = None


class ScoringProgress(Payload):
    job_id: str
    rows_done: int
    rows_total: int


class ScoringDone(Payload):
    job_id: str
    run_id: str
    model_kind: ModelKind
    rows: int
    predictions_location: str  # CSV ``row,probability`` in the file store
    seconds: float
    period_id: str | None = None  # the monitoring period it fed (labelled or not)
    period_ids: list[str] = []  # every period it fed (several when a date column split it); period_id = the first


class ScoringFailed(Payload):
    job_id: str
    reason: str  # for a person
    status_code: int = 422  # what the gateway answers on the job's routes


DriftTest = Literal["ks", "chi2", "psi"]


class FeatureDrift(Payload):
    """One feature of a period against the model's training rows."""

    feature: str
    kind: Literal["numeric", "categorical"]
    test: DriftTest  # the test whose p-value is given (PSI is always computed)
    statistic: float
    p_value: float | None
    psi: float
    drifted: bool  # psi > CTROPS_DRIFT_PSI_THRESHOLD (0.2)
    importance_rank: int | None = None  # 1 = the model's most important feature, when known


class PeriodMetrics(Payload):
    """Model quality in one period; label-based numbers are None for an unlabelled period."""

    auc: float | None = None
    auc_ci_low: float | None = None
    auc_ci_high: float | None = None
    ap: float | None = None
    logloss: float | None = None
    accuracy: float | None = None  # at the model's threshold, beside majority_accuracy
    majority_accuracy: float | None = None
    f1: float | None = None
    toss_score: float | None = None  # 0.5*AP + 0.5/(1+WLL)
    predicted_clicks: float  # sum of probabilities
    actual_clicks: int | None = None
    calibration: float | None = None  # predicted / actual clicks
    calibration_ci_low: float | None = None  # 95% (Poisson on the actual clicks)
    calibration_ci_high: float | None = None
    estimated_auc: float | None = None  # CBPE-style, from the calibrated scores alone
    mean_probability: float


class MonitoringPeriod(Payload):
    """One period of a deployed model's life: stored at ``monitoring/periods/<period_id>.json``."""

    period_id: str  # "<run_id>:<model kind>:<period>" -- one per model and period; re-scoring replaces it
    period: str
    bucket: PeriodBucket
    run_id: str
    model_kind: ModelKind
    job_ids: list[str]
    rows: int
    labelled: bool
    metrics: PeriodMetrics
    baseline_auc: float | None = None  # the model's validation AUC at training
    baseline_auc_ci_low: float | None = None
    drift: list[FeatureDrift] = []
    prediction_psi: float | None = None  # scores of the period vs scores of the training rows
    reference_rows: int = 0
    location: str = ""


# --- operations -------------------------------------------------------------


class ServiceHeartbeat(Payload):
    service: str
    instance: str
    started_at: datetime
    cpu_percent: float
    memory_percent: float
    rss_bytes: int
    in_flight: int = 0
    handled_total: int = 0
    errors_total: int = 0
    # Gateway only: API traffic over the last window.
    requests_total: int | None = None
    request_errors_total: int | None = None
    latency_p95_ms: float | None = None
    latency_by_route_ms: dict[str, float] | None = None
    # Host-wide CPU use (percent of all cores) where this instance runs; None from older senders.
    host_cpu_percent: float | None = None


class ServiceError(Payload):
    service: str
    level: Literal["ERROR", "WARNING", "CRITICAL"] = "ERROR"
    message: str
    stack: str = ""
    run_id: str | None = None


class ServiceHealth(Payload):
    """One watched service in the monitor's health: summed over its live instances."""

    status: Literal["up", "down"]
    instances: int = 0
    last_seen: str | None = None  # ISO 8601 of its newest heartbeat; None if never seen
    cpu_percent: float = 0.0  # percent of one core, summed
    rss_bytes: int = 0
    in_flight: int = 0  # events being handled


class ActiveAlert(Payload):
    """An open incident, as the health lists it."""

    alert_id: str
    kind: str
    subject: str
    severity: str
    message: str
    since: str | None = None  # ISO 8601


class RunRef(Payload):
    run_id: str
    finished_at: str  # ISO 8601
    experiment_name: str | None = None


class SystemHealth(Payload):
    """The platform's health as the monitor sees it (percentages 0..100)."""

    status: Literal["healthy", "degraded", "critical"] = "healthy"
    cpu_usage: float = 0.0  # busiest host of the live instances
    memory_usage: float = 0.0
    api_success_rate: float = 100.0  # share of API requests without a 5xx in the traffic window
    error_rate: float = 0.0
    response_time_ms: float | None = None  # the gateway's p95 (worst replica); None without traffic data
    requests_in_window: int = 0
    errors_in_window: int = 0  # service.error events in the window
    services: dict[str, ServiceHealth] = {}
    active_alerts: list[ActiveAlert] = []
    generated_at: str | None = None  # ISO 8601
    run: RunRef | None = None  # the latest finished run the snapshot's metrics are of


StageStatus = Literal["good", "warning"]


class PipelineStage(Payload):
    """One stage of a finished run's pipeline, measured by the monitor from the event times
    (ctrops_monitor/pipeline.py): queue wait (training.requested to training.started), training
    (``TrainingDone.duration_s``), explanation (training.done to explanation.done) and report
    (report.requested to report.ready). A stage whose events are missing (or out of order) is left out."""

    name: str  # the dashboard's label, e.g. "학습 대기 (queue)", "모델 학습 (trainer)"
    service: str  # the service whose time it is (the queue waits for a trainer)
    ms: float
    share_percent: float  # of the listed stages' total, 0..100
    status: StageStatus  # "warning": over 60 % of the total, with more than one stage listed
    recommendation: str  # Korean, then English


class MonitorSnapshot(Payload):
    """The monitor's view for the gateway: the latest finished run's metrics (all None before any run),
    the platform's health (response time, success and error rates live there) and the latest run's
    pipeline stages (empty before any run, and in snapshots of monitors before it measured them)."""

    run_id: str | None
    metrics: ModelMetrics = ModelMetrics()
    health: SystemHealth = SystemHealth()
    pipeline: list[PipelineStage] = []

    @field_validator("metrics", mode="before")
    @classmethod
    def _drop_system_numbers(cls, value: Any) -> Any:
        """Snapshots stored before ModelMetrics carried the health's three numbers here too."""
        if isinstance(value, dict):
            return {k: v for k, v in value.items() if k not in ("response_time", "api_success_rate", "error_rate")}
        return value


# -- an alert's evidence: one model per alert kind (MonitorAlert.metrics) ------------------------


class ModelAccuracyEvidence(Payload):
    """A ``model_accuracy`` alert: the finished run and its champion's validation metrics. On the wire
    the metrics are flat, each under every spelling the frontend reads (``ModelMetrics.both_spellings()``:
    ``val_accuracy``, ``valAccuracy``, ``accuracy``, ``f1``, ``f1_score``, ``f1Score``, ...) beside
    ``run_id``; in Python they are one ``ModelMetrics`` (``quality``). ``threshold`` is the run's decision
    threshold (``ModelMetrics.threshold``), not the monitor's accuracy threshold."""

    run_id: str
    quality: ModelMetrics

    @model_validator(mode="before")
    @classmethod
    def _nest_the_flat_metrics(cls, data: Any) -> Any:
        """The wire's flat keys (every spelling of every metric) -> ``quality``; spellings must agree."""
        if isinstance(data, dict) and "quality" not in data:
            return {"run_id": data.get("run_id"), "quality": {k: v for k, v in data.items() if k != "run_id"}}
        return data

    @model_serializer(mode="plain")
    def _flat(self) -> dict[str, str | float | None]:
        return {"run_id": self.run_id, **self.quality.both_spellings()}

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: GetJsonSchemaHandler) -> dict[str, Any]:
        """What is written (and read): ``run_id`` and every spelling of every ``ModelMetrics`` field."""
        metrics = ModelMetrics.model_json_schema()["properties"]
        properties: dict[str, Any] = {"run_id": {"title": "Run Id", "type": "string"}}
        for name, info in ModelMetrics.described().items():
            for key in spellings(name, info):
                properties[key] = metrics[name] if key == name else {
                    **metrics[name], "title": key, "description": f"= {name}: {metrics[name]['description']}"}
        return {"title": cls.__name__, "description": inspect.cleandoc(cls.__doc__ or ""),
                "type": "object", "properties": properties, "required": ["run_id"]}


class ResponseTimeEvidence(Payload):
    """A ``response_time`` alert: the gateway's p95 API latency against its threshold."""

    response_time: float  # ms, the worst live gateway replica's p95
    threshold_ms: float  # CTROPS_MONITOR_RESPONSE_TIME_MS


class ServiceDownEvidence(Payload):
    """A ``service_down`` alert: the service and when any of its instances was last heard from."""

    service: str
    last_seen: str  # ISO 8601 of its newest heartbeat, or "never"
    timeout_s: float  # CTROPS_MONITOR_HEARTBEAT_TIMEOUT_S


class ErrorRateEvidence(Payload):
    """An ``error_rate`` alert: the share of 5xx API responses over the traffic window."""

    error_rate: float  # percent, 0..100
    requests: int  # API requests in the window
    errors: int  # of them 5xx
    threshold_percent: float  # CTROPS_MONITOR_ERROR_RATE_PERCENT


class PeriodEvidence(Payload):
    """The monitoring period a model alert (calibration, auc_drop, feature_drift) was decided on."""

    period: str  # "2026-03", "2026-W11", "2026-03-14"
    period_id: str  # "<run_id>:<model kind>:<period>"
    run_id: str  # the run whose model scored the period
    model_kind: ModelKind
    rows: int


class CalibrationEvidence(PeriodEvidence):
    """A ``calibration`` alert: the period's predicted / actual clicks (rounded) against the band."""

    calibration: float
    calibration_ci_low: float  # 95% (Poisson on the actual clicks)
    calibration_ci_high: float | None  # None: no upper bound (no actual clicks)
    predicted_clicks: float
    actual_clicks: int | None
    band_low: float  # CTROPS_MONITOR_CALIBRATION_LOW
    band_high: float  # CTROPS_MONITOR_CALIBRATION_HIGH


class AucDropEvidence(PeriodEvidence):
    """An ``auc_drop`` alert: the period's AUC (rounded) against the model's validation AUC."""

    auc: float
    auc_ci_low: float  # DeLong 95% interval
    auc_ci_high: float
    baseline_auc: float  # the model's validation AUC at training
    baseline_auc_ci_low: float | None
    auc_drop_limit: float | None = None  # the AUC below which it fires (absent from alerts before it existed)
    estimated_auc: float | None  # CBPE-style, from the calibrated scores alone


class FeatureDriftEvidence(PeriodEvidence):
    """A ``feature_drift`` alert: one feature of the period against the model's training rows."""

    feature: str
    psi: float
    test: DriftTest  # the test whose statistic and p-value are given
    statistic: float
    p_value: float | None
    importance_rank: int | None  # 1 = the model's most important feature; None: unknown
    psi_threshold: float  # CTROPS_MONITOR_DRIFT_PSI


AlertKind = Literal["model_accuracy", "response_time", "service_down", "error_rate",
                    "calibration", "auc_drop", "feature_drift"]
AlertEvidence = (ModelAccuracyEvidence | ResponseTimeEvidence | ServiceDownEvidence | ErrorRateEvidence
                 | CalibrationEvidence | AucDropEvidence | FeatureDriftEvidence)
# Which evidence each kind of alert carries: MonitorAlert.metrics is read as the model of its kind.
EVIDENCE: dict[str, type[Payload]] = {
    "model_accuracy": ModelAccuracyEvidence,
    "response_time": ResponseTimeEvidence,
    "service_down": ServiceDownEvidence,
    "error_rate": ErrorRateEvidence,
    "calibration": CalibrationEvidence,
    "auc_drop": AucDropEvidence,
    "feature_drift": FeatureDriftEvidence,
}


def _evidence_by_kind_schema(schema: dict[str, Any]) -> None:
    """The published schema says which evidence goes with which kind (if kind is X then metrics is X's)."""
    members = schema["properties"]["metrics"]["anyOf"]  # one per AlertEvidence member, in its order
    order = get_args(AlertEvidence)
    schema["allOf"] = [{"if": {"properties": {"kind": {"const": kind}}, "required": ["kind"]},
                        "then": {"properties": {"metrics": members[order.index(model)]}}}
                       for kind, model in EVIDENCE.items()]


class MonitorAlert(Payload):
    """An incident fired or resolved; ``metrics`` is its evidence, the model of its ``kind`` (``EVIDENCE``)."""

    model_config = ConfigDict(json_schema_extra=_evidence_by_kind_schema)

    alert_id: str  # stable per incident: kind + subject
    kind: AlertKind
    subject: str  # run id or service name
    state: Literal["firing", "resolved"]
    severity: Literal["high", "medium"]
    message: str
    metrics: AlertEvidence  # the evidence: a field of kind ``kind`` (named ``metrics`` on the wire)

    @field_validator("metrics", mode="before")
    @classmethod
    def _evidence_of_its_kind(cls, value: Any, info: ValidationInfo) -> Any:
        """Read the evidence as the model of the alert's kind; evidence of another kind is an error."""
        model = EVIDENCE.get(info.data.get("kind", ""))
        if model is None:  # the kind itself failed (its own error says why)
            raise ValueError("the evidence is read as the model of the alert's kind, which is not valid")
        if isinstance(value, BaseModel):
            if type(value) is not model:
                raise ValueError(f"a {info.data['kind']} alert's evidence is a {model.__name__}, "
                                 f"not a {type(value).__name__}")
            return value
        try:
            return model.model_validate(value)
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or '(evidence)'}: {err['msg']}"
                                 for err in e.errors())
            raise ValueError(f"a {info.data['kind']} alert's evidence is a {model.__name__}: {problems}") from None


class DeadLetter(Payload):
    topic: str
    partition: int
    offset: int
    key: str | None
    value: str  # the original bytes, decoded leniently, kept whole
    error: str
    attempts: int
    group: str


class Probe(Payload):
    """Diagnostics: a message the probe service answers (round-trip benchmarks, bus tests)."""

    probe_id: str
    sent_at: float  # time.time() of the sender
    hold_s: float = 0.0  # the handler waits this long before its effect
    fail: bool = False  # the handler always raises (exercises retries and dead letters)


class ProbeReply(Payload):
    probe_id: str
    sent_at: float
    handled_by: str


TOPIC_PAYLOADS: dict[Topic, type[Payload]] = {
    Topic.UPLOAD_RECEIVED: UploadReceived,
    Topic.FILE_UPLOADED: FileUploaded,
    Topic.FILE_REJECTED: FileRejected,
    Topic.TRAINING_REQUESTED: TrainingRequested,
    Topic.TRAINING_STARTED: TrainingStarted,
    Topic.TRAINING_PROGRESS: TrainingProgress,
    Topic.TRAINING_DONE: TrainingDone,
    Topic.TRAINING_FAILED: TrainingFailed,
    Topic.TRAINING_CANCEL_REQUESTED: TrainingCancelRequested,
    Topic.EXPLANATION_DONE: ExplanationDone,
    Topic.EXPLANATION_FAILED: ExplanationFailed,
    Topic.REPORT_REQUESTED: ReportRequested,
    Topic.REPORT_READY: ReportReady,
    Topic.REPORT_FAILED: ReportFailed,
    Topic.SCORING_REQUESTED: ScoringRequested,
    Topic.SCORING_PROGRESS: ScoringProgress,
    Topic.SCORING_DONE: ScoringDone,
    Topic.SCORING_FAILED: ScoringFailed,
    Topic.MONITORING_PERIOD: MonitoringPeriod,
    Topic.MONITOR_SNAPSHOT: MonitorSnapshot,
    Topic.MONITOR_ALERT: MonitorAlert,
    Topic.SERVICE_HEARTBEAT: ServiceHeartbeat,
    Topic.SERVICE_ERROR: ServiceError,
    Topic.DEAD_LETTER: DeadLetter,
    Topic.PROBE: Probe,
    Topic.PROBE_REPLY: ProbeReply,
}

P = TypeVar("P", bound=Payload)


class Event(BaseModel, Generic[P]):
    """The envelope every message travels in."""

    event_id: str = Field(default_factory=new_id)
    type: Topic
    schema_version: int = SCHEMA_VERSION
    time: datetime = Field(default_factory=utcnow)
    correlation_id: str | None = None  # run id or file id this event belongs to
    producer: str = ""
    payload: P

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()


def decode_event(topic: str, raw: bytes) -> Event[Any]:
    """Parse raw bytes into the envelope with the topic's typed payload (raises ValueError)."""
    payload_cls = TOPIC_PAYLOADS[Topic(topic)]
    return Event[payload_cls].model_validate_json(raw)  # type: ignore[valid-type]
