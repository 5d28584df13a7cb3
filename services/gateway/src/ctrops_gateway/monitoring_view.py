"""The deployed model's life after training, as the scorer and the monitor reported it.

Read-only views for the SI dashboard, from typed events in the read model; nothing is
computed here beyond choosing and ordering what the scorer (``monitoring.period``) and the
monitor (``monitor.alert``) produced:

- ``line_periods``: the monitoring periods of the champion's line (the champion and the runs
  it replaced, model_runs.champion_line), one per period label: the newest run of the line
  that scored it, with that run's champion kind when it scored with both; the newest report
  of a period replaces older ones (re-scoring a period). Only the bucket (day/week/month) of
  the newest period is shown, so one axis never mixes months and days.
- ``model_alerts``: open alerts about the model (calibration, AUC drop, feature drift).
- ``serving_p95_ms``: the scorer's prediction latency p95 from its heartbeats.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

from ctrops_common.events import MonitorAlert, MonitoringPeriod, PeriodEvidence, Topic, TrainingDone
from ctrops_common.numbers import finite

from . import model_runs
from .performance_live import alert_feature, open_alerts
from .views import ReadModel

MODEL_ALERT_KINDS = ("calibration", "auc_drop", "feature_drift")
SCORER = "scorer"


@dataclass(frozen=True)
class LinePeriod:
    period: MonitoringPeriod
    run: TrainingDone  # the run whose model scored it
    line_rank: int  # 0 = the champion, 1 = the run it replaced, ...


def period_start(period: str) -> date:
    """The first day of a period label ("2026-03", "2026-W11", "2026-03-14"); date.max when unreadable."""
    try:
        if "-W" in period:
            year, week = period.split("-W")
            return date.fromisocalendar(int(year), int(week), 1)
        if len(period) == 7:
            return date(int(period[:4]), int(period[5:7]), 1)
        return date.fromisoformat(period)
    except ValueError:
        return date.max


def line_periods(views: ReadModel) -> list[LinePeriod]:
    """The champion line's periods in time order (see the module docstring)."""
    line = model_runs.champion_line(views)
    if not line:
        return []
    rank = {done.run_id: i for i, done in enumerate(line)}
    newest: dict[str, MonitoringPeriod] = {}  # period id -> its latest report
    for stored in views.events(Topic.MONITORING_PERIOD):  # oldest first
        period = stored.typed(MonitoringPeriod)
        if period.run_id in rank:
            newest.pop(period.period_id, None)
            newest[period.period_id] = period  # re-inserted: dict order = order of the latest reports
    if not newest:
        return []
    bucket = list(newest.values())[-1].bucket
    chosen: dict[str, LinePeriod] = {}
    for period in newest.values():
        if period.bucket != bucket:
            continue
        run = line[rank[period.run_id]]
        candidate = LinePeriod(period, run, rank[period.run_id])
        held = chosen.get(period.period)
        if held is None or _better(candidate, held):
            chosen[period.period] = candidate
    return sorted(chosen.values(), key=lambda p: (period_start(p.period.period), p.period.period))


def _better(candidate: LinePeriod, held: LinePeriod) -> bool:
    if candidate.line_rank != held.line_rank:
        return candidate.line_rank < held.line_rank  # the newer model of the line
    candidate_champion = candidate.period.model_kind == candidate.run.champion
    held_champion = held.period.model_kind == held.run.champion
    if candidate_champion != held_champion:
        return candidate_champion
    return True  # same run and standing: the later report


def _number(value: Any) -> float | None:
    number = finite(value, None)
    return round(number, 6) if number is not None else None


def period_series(periods: list[LinePeriod]) -> dict[str, Any]:
    """performanceData from monitoring periods: each period's own numbers beside the scoring model's
    validation numbers at training time (the flat reference lines). Unlabelled periods have no
    accuracy, F1 or log loss: null there (a gap in the chart), never a made-up number."""
    labels = [p.period.period for p in periods]
    reference = [model_runs.validation_metrics(p.run, p.period.model_kind) for p in periods]
    metrics = [p.period.metrics for p in periods]
    return {
        "source": "monitoring",
        "runId": periods[-1].run.run_id,
        "bucket": periods[-1].period.bucket,
        "labels": labels,
        "months": labels,  # the guide's name for the x axis
        "accuracy": [_number(m.accuracy) for m in metrics],
        "valAccuracy": [_number(r["accuracy"]) for r in reference],
        "loss": [_number(m.logloss) for m in metrics],
        "valLoss": [_number(r["logloss"]) for r in reference],
        "f1Score": [_number(m.f1) for m in metrics],
        "valF1Score": [_number(r["f1"]) for r in reference],
        "auc": [_number(m.auc) for m in metrics],
        "aucCiLow": [_number(m.auc_ci_low) for m in metrics],
        "aucCiHigh": [_number(m.auc_ci_high) for m in metrics],
        "valAuc": [_number(r["auc"]) for r in reference],
        "estimatedAuc": [_number(m.estimated_auc) for m in metrics],
        "ap": [_number(m.ap) for m in metrics],
        "tossScore": [_number(m.toss_score) for m in metrics],
        "calibration": [_number(m.calibration) for m in metrics],
        "calibrationCiLow": [_number(m.calibration_ci_low) for m in metrics],
        "calibrationCiHigh": [_number(m.calibration_ci_high) for m in metrics],
        "predictedClicks": [_number(m.predicted_clicks) for m in metrics],
        "actualClicks": [m.actual_clicks for m in metrics],
        "meanProbability": [_number(m.mean_probability) for m in metrics],
        "predictionPsi": [_number(p.period.prediction_psi) for p in periods],
        "driftedFeatures": [[d.feature for d in p.period.drift if d.drifted] for p in periods],
        "rows": [p.period.rows for p in periods],
        "labelled": [p.period.labelled for p in periods],
        "runIds": [p.run.run_id for p in periods],
        "modelKinds": [p.period.model_kind for p in periods],
        "periodIds": [p.period.period_id for p in periods],
        "series": {
            "accuracy": "the period's accuracy at the model's threshold (null: the period has no labels)",
            "valAccuracy": "the scoring model's validation accuracy at training time (reference line)",
            "loss": "the period's log loss (null: no labels)",
            "valLoss": "the scoring model's validation log loss at training time",
            "f1Score": "the period's F1 at the model's threshold (null: no labels)",
            "valF1Score": "the scoring model's validation F1 at training time",
            "auc": "the period's ROC AUC (estimatedAuc: from the calibrated scores alone, for unlabelled periods)",
        },
    }


@dataclass(frozen=True)
class OpenModelAlert:
    """An open alert about the model: its evidence names the period, the run and the model kind."""

    alert: MonitorAlert
    evidence: PeriodEvidence  # alert.metrics
    since: datetime

    @property
    def feature(self) -> str | None:
        return alert_feature(self.alert)


def model_alerts(views: ReadModel) -> list[OpenModelAlert]:
    """Open alerts about the model (most severe and oldest first)."""
    return [OpenModelAlert(a.alert, a.alert.metrics, a.since) for a in open_alerts(views)
            if a.alert.kind in MODEL_ALERT_KINDS and isinstance(a.alert.metrics, PeriodEvidence)]


def serving_p95_ms(views: ReadModel, timeout_s: float) -> float | None:
    """The scorer's prediction latency p95 (ms), the worst of its fresh instances; None without one."""
    now = datetime.now(timezone.utc)
    values = []
    for seen in views.heartbeats():
        if seen.beat.service != SCORER or not seen.fresh(now, timeout_s):
            continue
        value = finite(seen.beat.latency_p95_ms, None)
        if value is not None:
            values.append(value)
    return round(max(values), 3) if values else None
