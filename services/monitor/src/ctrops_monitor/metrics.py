"""Prometheus metrics the monitor exports on top of every service's common ones.

Labels stay bounded: alert kinds, service names and fixed metric names. Run ids are
unbounded, so the model-quality gauges describe the *latest* finished run; Prometheus
keeps their history over time (one step per run). Units are base units: ratios (0..1;
CPU in CPU-seconds per second, 1 = one core), bytes, seconds; no gauge mixes units. API latency is the
gateway's ``ctrops_http_request_seconds`` histogram (PromQL computes the quantiles): the
monitor stores no p95 gauge. Counters of known label values start at 0 (``init_counters``)
so an alert on their first increase fires. docs/monitoring.md lists them all.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ctrops_common.model_metrics import Metric, ModelMetrics

# -- model quality and training progress ----------------------------------------


class LatestRunQuality(Collector):
    """One gauge per ModelMetrics field that names a ``gauge``: the latest finished run's value, in the
    field's own unit. The gauges are read from the model at every scrape, so a new metric with a
    gauge is exported without a change here.

    A metric the run did not report is absent, never 0 (a 0 would fire the accuracy and
    AUC alerts on a monitor that has seen no run yet).
    """

    def __init__(self) -> None:
        self.metrics = ModelMetrics()

    @staticmethod
    def gauges() -> dict[str, tuple[str, str]]:
        """Field name -> (gauge name, help) for every metric exported for the latest run."""
        return {name: (info.gauge, info.gauge_help) for name, info in ModelMetrics.described().items() if info.gauge}

    def set(self, metrics: ModelMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[GaugeMetricFamily]:
        return [GaugeMetricFamily(name, doc) for name, doc in self.gauges().values()]

    def collect(self) -> list[GaugeMetricFamily]:
        values = self.metrics.values()
        families = []
        for key, (name, doc) in self.gauges().items():
            family = GaugeMetricFamily(name, doc)
            if values.get(key) is not None:
                family.add_metric([], values[key])
            families.append(family)
        return families


MODEL_QUALITY = LatestRunQuality()
REGISTRY.register(MODEL_QUALITY)
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
# Per-epoch numbers split by unit: losses (nats) and 0..1 ratios.
TRAINING_EPOCH_LOSS = Gauge(
    "ctrops_training_epoch_loss",
    "Losses of the latest finished epoch of the most recently reporting run (nats per example)",
    ["metric"],
)
TRAINING_EPOCH_RATIO = Gauge(
    "ctrops_training_epoch_quality_ratio",
    "Accuracy, ROC AUC and AP of the latest finished epoch of the most recently reporting run (0..1)",
    ["metric"],
)

# -- the deployed model over time (monitoring.period) ------------------------------
# One series per model kind (lstm, gbdt): the newest period each was scored in. Label-based
# gauges keep the newest LABELLED period's value (an unlabelled batch has no AUC). Feature PSI
# is exported for the top features only (importance rank <= CTROPS_MONITOR_DRIFT_TOP_K, or the
# highest PSIs when ranks are unknown): at most top_k series per model kind.

PERIOD_AUC = Gauge("ctrops_model_period_auc", "ROC AUC of the newest labelled monitoring period (0..1)",
                   ["model_kind"])
PERIOD_AUC_CI_HIGH = Gauge("ctrops_model_period_auc_ci_high",
                           "Upper bound of the 95% DeLong interval of the newest labelled period's AUC", ["model_kind"])
AUC_DROP_LIMIT = Gauge("ctrops_model_auc_drop_limit",
                       "Period AUC below which the fall from the validation AUC exceeds the joint 95% uncertainty "
                       "of both (baseline - 1.96*sqrt(se_period^2 + se_baseline^2))", ["model_kind"])
BASELINE_AUC = Gauge("ctrops_model_baseline_auc",
                     "Validation AUC at training of the model that scored the newest labelled period", ["model_kind"])
PERIOD_CALIBRATION = Gauge("ctrops_model_period_calibration_ratio",
                           "Predicted / actual clicks of the newest labelled period (1 = calibrated)", ["model_kind"])
PERIOD_CALIBRATION_CI_LOW = Gauge("ctrops_model_period_calibration_ci_low",
                                  "Lower bound of the 95% interval of the newest labelled period's calibration",
                                  ["model_kind"])
PERIOD_CALIBRATION_CI_HIGH = Gauge("ctrops_model_period_calibration_ci_high",
                                   "Upper bound of the 95% interval of the newest labelled period's calibration "
                                   "(absent when infinite)", ["model_kind"])
FEATURE_PSI = Gauge("ctrops_feature_psi",
                    "PSI of a top feature in the newest monitoring period against the training rows",
                    ["model_kind", "feature"])

# -- system health ---------------------------------------------------------------

SERVICE_ALIVE = Gauge("ctrops_service_alive", "1 while a service sends heartbeats within the timeout", ["service"])
SERVICE_INSTANCES = Gauge("ctrops_service_instances", "Instances of a service with a fresh heartbeat", ["service"])
HEARTBEAT_AGE = Gauge(
    "ctrops_service_heartbeat_age_seconds", "Seconds since the newest heartbeat of any instance", ["service"]
)
SERVICE_CPU = Gauge(
    "ctrops_service_cpu_usage_ratio",
    "Process CPU seconds per second summed over a service's live instances (1 = one core busy)",
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



def epoch_metrics() -> dict[str, Metric]:
    """The ModelMetrics fields exported per epoch: losses (nats) to TRAINING_EPOCH_LOSS, ratios to
    TRAINING_EPOCH_RATIO (``Metric`` allows ``epoch=True`` for those two units only)."""
    return {name: info for name, info in ModelMetrics.described().items() if info.epoch}


TRAINING_OUTCOMES = ("completed", "failed")
ERROR_LEVELS = ("ERROR", "CRITICAL")


def init_counters(alert_kinds: tuple[str, ...], services: list[str] | tuple[str, ...]) -> None:
    """Create every known label combination at 0, so its first increase is a visible 0 -> 1."""
    for outcome in TRAINING_OUTCOMES:
        TRAINING_RUNS.labels(outcome)
    for kind in alert_kinds:
        ALERTS_FIRED.labels(kind)
        ALERTS_RESOLVED.labels(kind)
    for service in services:
        for level in ERROR_LEVELS:
            SERVICE_ERRORS.labels(service, level)
