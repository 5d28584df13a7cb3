"""Prometheus metrics the monitor exports on top of every service's common ones.

Labels stay bounded: alert kinds, service names and fixed metric names. Run ids are
unbounded, so the model-quality gauges describe the *latest* finished run; Prometheus
keeps their history over time (one step per run). docs/monitoring.md lists them all.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# -- model quality and training progress ----------------------------------------

MODEL_QUALITY = Gauge(
    "ctrops_model_quality",
    "Validation metrics of the latest finished training run (accuracy, precision, recall, f1, auc, ap, "
    "logloss, calibration, score)",
    ["metric"],
)
MODEL_LAST_RUN_TIMESTAMP = Gauge(
    "ctrops_model_last_run_timestamp_seconds", "Unix time the latest training run finished"
)
TRAINING_RUNS = Counter("ctrops_training_runs_total", "Training runs seen by the monitor", ["outcome"])
TRAINING_DURATION = Histogram(
    "ctrops_training_duration_seconds",
    "Wall time of finished training runs",
    buckets=(10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200),
)
TRAINING_EPOCHS = Counter("ctrops_training_epochs_total", "Training epochs finished (all runs)")
TRAINING_PROGRESS = Gauge(
    "ctrops_training_progress_ratio", "Epochs done / epochs planned of the most recently reporting run"
)
TRAINING_EPOCH_METRIC = Gauge(
    "ctrops_training_epoch_metric",
    "Metrics of the latest finished epoch of the most recently reporting run",
    ["metric"],
)

# -- system health ---------------------------------------------------------------

SERVICE_ALIVE = Gauge("ctrops_service_alive", "1 while a service sends heartbeats within the timeout", ["service"])
SERVICE_INSTANCES = Gauge("ctrops_service_instances", "Instances of a service with a fresh heartbeat", ["service"])
HEARTBEAT_AGE = Gauge(
    "ctrops_service_heartbeat_age_seconds", "Seconds since the newest heartbeat of any instance", ["service"]
)
SERVICE_CPU = Gauge(
    "ctrops_service_cpu_percent", "Process CPU use summed over a service's live instances (100 = one core)",
    ["service"],
)
SERVICE_RSS = Gauge(
    "ctrops_service_memory_rss_bytes", "Resident memory summed over a service's live instances", ["service"]
)
SERVICE_ERRORS = Counter(
    "ctrops_service_errors_total", "service.error events (errors logged by any service)", ["service", "level"]
)
SYSTEM_CPU = Gauge("ctrops_system_cpu_usage_ratio", "Host CPU use, busiest host of the live instances (0..1)")
SYSTEM_MEMORY = Gauge("ctrops_system_memory_usage_ratio", "Host memory use, fullest host of the live instances (0..1)")
API_RESPONSE_P95 = Gauge(
    "ctrops_api_response_time_p95_seconds", "The gateway's p95 API latency over its window (max over replicas)"
)
API_SUCCESS = Gauge("ctrops_api_success_ratio", "Share of API requests without a 5xx over the traffic window")
API_REQUESTS_WINDOW = Gauge("ctrops_api_requests_window", "API requests counted in the traffic window")
SYSTEM_HEALTHY = Gauge("ctrops_system_healthy", "1 when every watched service is alive and no alert fires")

# -- alerts -----------------------------------------------------------------------

ALERT_ACTIVE = Gauge(
    "ctrops_alert_active",
    "1 while an alert fires, 0 once resolved (subject: 'model', 'gateway' or a service name)",
    ["kind", "subject"],
)
ALERTS_FIRED = Counter("ctrops_alerts_fired_total", "Alert incidents opened", ["kind"])
ALERTS_RESOLVED = Counter("ctrops_alerts_resolved_total", "Alert incidents resolved", ["kind"])

QUALITY_METRICS = ("accuracy", "precision", "recall", "f1", "auc", "ap", "logloss", "calibration", "score")
EPOCH_METRICS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "auc", "ap", "logloss")
