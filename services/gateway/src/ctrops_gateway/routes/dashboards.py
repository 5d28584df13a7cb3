"""The two dashboards: GET /api/dashboard/si (engineers) and GET /api/dashboard/client (marketers).

Everything comes from real data: runs and epochs from the read model (training events),
health and the latest run's pipeline stages (``bottleneckAnalysis``'s pipeline rows, measured
and advised by the monitor: ``MonitorSnapshot.pipeline``) from the monitor's latest snapshot,
errors from service.error events, latency per route from this gateway's traffic window,
strategies and insights from the reporter's ``runs/<run_id>/report.json`` when it exists (read
as ``documents.ReportDoc``; a file that is not one shows nothing of it, and the status says so). Money figures and the model verdict are
the reporter's, read back from report.json; the gateway never computes an estimate of its own,
so the dashboard, the report, its PDF and ``make demo`` agree. No report yet: the money figures
are null and ``status`` says why. With no data yet both answer 200 with empty or neutral values.

The marketers' segments, hours, best-hours CTR and the data's insight cards are ingest's
``files/<file_id>/highlights.json`` (read as ``documents.AudienceHighlights``): ingest, the
data's owner, computes them (``ctrops_ingest.highlights``: Wilson intervals, ranking, the best
hours); this module only serves them, joined with the report's tested segments (adjusted p,
significance, its top segment first) and its status card. An upload without highlights.json
(stored before ingest wrote it, until ingest's start builds it: ``ctrops_ingest.backfill``) or
with an unreadable one shows no segments or hours and ``sources.profile`` false, never an error.

The SI dashboard's ``performanceData`` follows the deployed model over time once batches
have been scored (the scorer's ``monitoring.period`` events of the champion's line: per
period its accuracy, log loss and F1 beside the model's validation values as reference
lines, monitoring_view), and the latest run's epochs before that; ``performanceAlert``
shows the model's open alerts (calibration, AUC drop, feature drift) first;
``responseTime`` is the scorer's serving p95 when a scorer reports one.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import ValidationError

from ctrops_common.dataset import highlights_path, report_path
from ctrops_common.documents import AudienceHighlights, ReportDoc, read_document
from ctrops_common.events import (
    ModelMetrics,
    FileUploaded,
    MonitorSnapshot,
    ReportFailed,
    ReportReady,
    Topic,
    TrainingDone,
    TrainingFailed,
    TrainingProgress,
)
from ctrops_common.storage import is_id

from .. import monitoring_view
from ..api_models import CLIENT_EXAMPLE, SI_EXAMPLE, ClientDashboard, SiDashboard, success
from .. import performance_live as live
from ..security import AUTH_RESPONSES, VIEWER
from ..state import GatewayState, State
from ..views import StoredEvent

log = logging.getLogger(__name__)

router = APIRouter(tags=["dashboards"], dependencies=[VIEWER], responses=AUTH_RESPONSES)

SLOW_ROUTE_MS = 500.0  # the contract's response-time threshold
TOP_SEGMENTS = 10


def _round(value: Any, digits: int = 4) -> float:
    number = live.finite(value)
    return round(number, digits) if number is not None else 0.0


# -- engineers ------------------------------------------------------------------------------


def _epochs(state: GatewayState, run_id: str) -> list[tuple[int, ModelMetrics]]:
    """(epoch, metrics) per epoch of the run's newest attempt (a retried attempt replaces the old one)."""
    events = [e.typed(TrainingProgress) for e in state.views.events(Topic.TRAINING_PROGRESS, correlation_id=run_id)]
    if not events:
        return []
    attempt = max(e.attempt for e in events)
    by_epoch = {e.epoch: e.metrics for e in events if e.attempt == attempt}
    return [(n, by_epoch[n]) for n in sorted(by_epoch)]


def performance_data(state: GatewayState) -> dict[str, Any]:
    """The deployed model's monitoring periods (monitoring_view.period_series) once the champion's line
    has any; before that, the epochs of the latest run's training."""
    periods = monitoring_view.line_periods(state.views)
    if periods:
        return monitoring_view.period_series(periods)
    return training_curves(state)


def training_curves(state: GatewayState) -> dict[str, Any]:
    latest = state.views.latest(Topic.TRAINING_PROGRESS)
    run_id = latest.typed(TrainingProgress).run_id if latest else None
    epochs = _epochs(state, run_id) if run_id else []
    labels = [f"Epoch {n}" for n, _ in epochs]
    f1 = [_round(m.f1) for _, m in epochs]
    return {
        "source": "training",
        "runId": run_id,
        "labels": labels,
        "months": labels,  # the guide's name for the x axis
        "accuracy": [_round(m.train_accuracy) for _, m in epochs],
        "valAccuracy": [_round(m.val_accuracy) for _, m in epochs],
        "loss": [_round(m.train_loss) for _, m in epochs],
        "valLoss": [_round(m.val_loss) for _, m in epochs],
        # F1 is measured on validation only; both series carry it so the chart has no hole.
        "f1Score": f1,
        "valF1Score": f1,
        "auc": [live.finite(m.auc, None) for _, m in epochs],
        "ap": [live.finite(m.ap, None) for _, m in epochs],
    }


def latest_run(state: GatewayState) -> dict[str, Any]:
    done = state.views.latest(Topic.TRAINING_DONE)
    if done is None:
        return {"runId": None, "trainingTime": 0.0, "epochs": 0, "batchSize": 0, "learningRate": 0.0,
                "optimizer": "Adam", "finalLoss": 0.0, "bestAccuracy": 0.0, "status": "none"}
    finished = done.typed(TrainingDone)
    config, metrics = finished.config, finished.metrics
    return {
        "runId": finished.run_id,
        "experimentName": finished.experiment_name,
        "trainingTime": _round((live.finite(finished.duration_s) or 0.0) / 60.0, 2),
        "epochs": finished.epochs_run,
        "bestEpoch": finished.best_epoch,
        "batchSize": config.batch_size,
        "learningRate": live.finite(config.learning_rate),
        "optimizer": "Adam",
        "finalLoss": _round(metrics.val_loss),
        "bestAccuracy": _round(100.0 * (live.finite(metrics.val_accuracy) or 0.0), 2),
        "auc": live.finite(metrics.auc, None),
        "ap": live.finite(metrics.ap, None),
        "finishedAt": done.time.isoformat(),
        "status": "completed",
        **live.champion_of(finished),
        "batchSizeUsed": finished.batch.used if finished.batch is not None else config.batch_size,
    }


def _route_advice(route: str, status: str) -> str:
    if status == "good":
        return "정상 범위입니다. Within budget."
    if route.startswith("/api/upload"):
        return "대용량 업로드: 네트워크 대역폭과 ingest 처리량을 확인하세요. Large uploads: check bandwidth and ingest throughput."
    if route.startswith("/api/report"):
        return "PDF/리포트 생성 대기: reporter 인스턴스를 늘리거나 미리 생성하세요. Scale the reporter or pre-generate reports."
    if route.startswith("/api/dashboard") or route.startswith("/api/performance"):
        return "읽기 모델 조회가 느립니다: PostgreSQL 사용과 인덱스를 확인하세요. Slow read-model queries: use PostgreSQL, check indexes."
    return "응답 지연: 게이트웨이 복제본을 늘리고 느린 의존성을 확인하세요. Slow: add gateway replicas, check slow dependencies."


def bottlenecks(state: GatewayState) -> list[dict[str, Any]]:
    """API routes (this gateway's window, per-route avg/max) and the latest run's pipeline stages as the
    monitor measured them (``MonitorSnapshot.pipeline`` of its latest fresh snapshot; none without one)."""
    rows: list[dict[str, Any]] = []
    routes = state.traffic.routes()
    api_total = sum(r["total_ms"] for r in routes.values()) or 1.0
    for route, r in sorted(routes.items(), key=lambda kv: -kv[1]["avg_ms"])[:10]:
        avg = r["avg_ms"]
        status = "critical" if avg > SLOW_ROUTE_MS else "warning" if avg > 0.4 * SLOW_ROUTE_MS else "good"
        rows.append({
            "component": f"API {route}",
            "kind": "api",
            "avgTime": _round(avg, 2),
            "maxTime": _round(r["max_ms"], 2),
            "percentage": _round(100.0 * r["total_ms"] / api_total, 1),
            "requests": int(r["count"]),
            "errors": int(r["errors"]),
            "status": status,
            "recommendation": _route_advice(route, status),
        })
    snapshot = live.fresh_snapshot(state.views, live.snapshot_max_age(state))
    for stage in snapshot.typed(MonitorSnapshot).pipeline if snapshot is not None else []:
        rows.append({
            "component": stage.name, "kind": "pipeline", "avgTime": _round(stage.ms, 1),
            "maxTime": _round(stage.ms, 1), "percentage": _round(stage.share_percent, 1), "status": stage.status,
            "recommendation": stage.recommendation,
        })
    return rows


def performance_alert(state: GatewayState) -> dict[str, Any]:
    """The model's open alerts first (calibration, AUC drop, feature drift: with the period it started
    in and the feature), else the most severe open alert of any kind."""
    model = monitoring_view.model_alerts(state.views)
    if model:
        top = model[0]
        return {"show": True, "message": top.alert.message, "severity": top.alert.severity, "kind": top.alert.kind,
                "alertId": top.alert.alert_id, "since": top.since.isoformat(), "period": top.evidence.period,
                "feature": top.feature, "runId": top.evidence.run_id, "modelKind": top.evidence.model_kind,
                "count": len(live.open_alerts(state.views)),
                "modelAlerts": [{"kind": a.alert.kind, "severity": a.alert.severity, "message": a.alert.message,
                                 "period": a.evidence.period, "feature": a.feature, "alertId": a.alert.alert_id}
                                for a in model[:10]]}
    alerts = live.open_alerts(state.views)
    if not alerts:
        return {"show": False, "message": "", "severity": "low", "count": 0}
    first = alerts[0]
    return {"show": True, "message": first.alert.message, "severity": first.alert.severity, "kind": first.alert.kind,
            "alertId": first.alert.alert_id, "since": first.since.isoformat(), "count": len(alerts)}


def si_dashboard(state: GatewayState) -> dict[str, Any]:
    metrics = live.current_metrics(state)
    # responseTime is the model's serving p95 (the scorer's heartbeats) once a scorer reports one;
    # the API's p95 stays beside it.
    serving = monitoring_view.serving_p95_ms(state.views, state.settings.service_timeout_s)
    response_ms = serving if serving is not None else metrics["responseTime"]
    return {
        "currentMetrics": {
            "accuracy": metrics["accuracy"],
            "precision": metrics["precision"],
            "recall": metrics["recall"],
            "f1Score": metrics["f1Score"],
            "f1_score": metrics["f1_score"],
            "responseTime": response_ms,
            "response_time": response_ms,
            "responseTimeSource": "scorer" if serving is not None else metrics["response_time_source"],
            "apiResponseTime": metrics["responseTime"],
            "auc": metrics["auc"],
            "ap": metrics["ap"],
            "logloss": metrics["logloss"],
            "calibration": metrics["calibration"],
            "runId": metrics["runId"],
            "note": live.NOTE,
        },
        "systemHealth": live.current_health(state),
        "performanceData": performance_data(state),
        "latestRun": latest_run(state),
        "errorLogs": live.recent_errors(state.views, 20),
        "bottleneckAnalysis": bottlenecks(state),
        "performanceAlert": performance_alert(state),
    }


# -- marketers ---------------------------------------------------------------------------------


def _read_highlights(state: GatewayState, file_id: str) -> AudienceHighlights | None:
    """ingest's highlights.json of the upload as its model; None when missing or unreadable (logged)."""
    relative = highlights_path(file_id)
    try:
        return read_document(state.store, relative, AudienceHighlights) if state.store.exists(relative) else None
    except (OSError, ValueError) as exc:  # ValueError: not JSON, or not the model (ValidationError)
        log.warning("cannot read %s: %s", relative, exc)
        return None


def _sources(state: GatewayState) -> tuple[StoredEvent | None, StoredEvent | None]:
    """(latest finished run, the upload it learned from, else the latest valid upload)."""
    done = state.views.latest(Topic.TRAINING_DONE)
    upload = None
    if done is not None and is_id(done.typed(TrainingDone).file_id):
        upload = state.views.latest(Topic.FILE_UPLOADED, correlation_id=done.payload.file_id)
    if upload is None:
        upload = next((e for e in state.views.events(Topic.FILE_UPLOADED, newest_first=True, limit=50)
                       if e.typed(FileUploaded).validation.is_valid), None)
    return done, upload


def customer_segments(highlights: AudienceHighlights | None, report: ReportDoc | None = None) -> list[dict[str, Any]]:
    """ingest's audience segments (ranked by the lower end of their CTR interval); with a report,
    each segment the report tested carries its adjusted p-value, and the report's top segment (if
    one holds) comes first, so both tell one story. The first TOP_SEGMENTS."""
    if highlights is None or not highlights.segments:
        return []
    segments = [s.model_dump() for s in highlights.segments]
    kind = highlights.segment_kind
    if report is not None:
        finding = next((f for f in report.segments.findings if f.dimension == kind), None)
        tested = {s.label: s for s in (finding.best + finding.worst)} if finding else {}
        top = report.top_segment(kind)
        for s in segments:
            if (found := tested.get(s["label"])) is not None:
                s["pAdjusted"], s["significant"] = found.p_adjusted, found.significant
            s["isTop"] = top is not None and s["label"] == top[1].label
        segments.sort(key=lambda s: not s["isTop"])  # stable: the rest keep their order
    return segments[:TOP_SEGMENTS]


# -- the run's report: the one money estimate ---------------------------------------------------


@dataclass(frozen=True)
class RunReport:
    """What the dashboard knows of a run's report: the document read back as ``ReportDoc``, and a
    status when there is no usable report (``stored``: a report.json exists, usable or not)."""

    status: str  # no_run | pending | failed | unreadable | ready
    message: str
    doc: ReportDoc | None = None
    stored: bool = False


def run_report(state: GatewayState, done: StoredEvent | None) -> RunReport:
    """The stored report.json of the run, read back through ReportDoc; never a second estimate."""
    if done is None:
        return RunReport("no_run", "아직 완료된 학습이 없습니다. 학습이 끝나면 리포트가 금액을 추정합니다.")
    run_id = done.typed(TrainingDone).run_id
    location = report_path(run_id) if is_id(run_id) else None
    if location is None or not state.store.exists(location):
        failed = (state.views.latest(Topic.EXPLANATION_FAILED, run_id)
                  or state.views.latest(Topic.REPORT_FAILED, run_id))
        if failed is not None and not (isinstance(failed.payload, ReportFailed) and failed.payload.retryable):
            return RunReport("failed", f"이 실행의 리포트를 만들지 못했습니다: {failed.payload.reason}"[:500])
        return RunReport("pending", "리포트를 작성 중입니다. 모델 신뢰도와 금액 추정은 리포트가 준비되면 표시됩니다.")
    try:
        doc = read_document(state.store, location, ReportDoc)
    except ValidationError as exc:
        log.warning("report.json of %s does not match the report document: %s", run_id, exc.error_count())
        return RunReport("unreadable", "리포트 형식이 달라 금액을 표시하지 않습니다. 리포트를 다시 생성하세요.", stored=True)
    except (OSError, ValueError) as exc:
        log.warning("cannot read the report of %s: %s", run_id, exc)
        return RunReport("unreadable", "리포트를 읽을 수 없어 금액을 표시하지 않습니다. 리포트를 다시 생성하세요.",
                         stored=True)
    return RunReport("ready", "", doc=doc, stored=True)


def _pair(values: tuple[float, float] | None, digits: int = 0) -> list[float] | None:
    if values is None:
        return None
    return [round(v) if digits == 0 else round(v, digits) for v in values]


def _krw(value: float | None) -> float | None:
    return None if value is None else round(value)


def top_segment_view(doc: ReportDoc) -> dict[str, Any] | None:
    found = doc.top_segment()
    if found is None:
        return None
    finding, s = found
    return {"dimension": finding.dimension, "title": finding.title, "label": s.label, "ctr": s.ctr,
            "ctrLow": s.ctr_low, "ctrHigh": s.ctr_high, "lift": s.lift, "rows": s.rows,
            "pAdjusted": s.p_adjusted, "baseCtr": finding.base_ctr}


def business_metrics(
    report: RunReport, done: StoredEvent | None, overall_pct: float, highlights: AudienceHighlights | None,
) -> dict[str, Any]:
    """CTR facts of the data (ingest's highlights) beside the run report's money figures, copied from report.json.

    The reporter owns the estimate (ranges from the Wilson interval of the targeted CTR,
    assumptions from its settings); this only reads it back. No report yet, an unreadable
    one, or a weak model: every money figure is null and ``status`` says why.
    """
    metrics = done.typed(TrainingDone).metrics if done else ModelMetrics()
    calibration = live.finite(metrics.calibration, None)
    doc = report.doc
    strength = doc.model_strength if doc else None
    out: dict[str, Any] = {
        "status": report.status,
        "statusMessage": report.message,
        "actualCtr": round(overall_pct, 3),
        "predictedCtr": None if calibration is None else round(overall_pct * calibration, 3),
        "bestHoursCtr": highlights.best_hours_ctr if highlights else round(overall_pct, 3),
        "ctrLift": highlights.best_hours_lift if highlights else 0.0,
        "modelAuc": live.finite(metrics.auc, None),
        "modelAucCi": list(strength.auc_ci) if strength and strength.auc_ci else None,
        "verdict": strength.verdict if strength else None,
        "verdictKo": strength.verdict_ko if strength else None,
        "expectedMonthlyClicks": None,
        "modelMonthlyClicks": None,
        "modelMonthlyClicksRange": None,
        "additionalClicks": None,
        "estimatedMonthlyCost": None,
        "estimatedMonthlyRevenue": None,
        "modelMonthlyRevenue": None,
        "estimatedRoas": None,
        "additionalRevenue": None,
        "additionalRevenueRange": None,
        "roiIncrease": None,
        "roiIncreaseRange": None,
        "revenueChangePercent": None,
        "revenueChangeRange": None,
        "topSegment": top_segment_view(doc) if doc else None,
        "currency": "KRW",
        "isEstimate": True,
        "source": "report",
        "assumptions": None,
        "basis": "금액은 이 실행의 리포트(report.json)가 계산한 추정치를 그대로 보여 줍니다: 모델이 고른 사용자에게 "
                 "노출의 일부를 옮길 때 같은 비용에서의 변화이며, 범위는 그 CTR의 Wilson 95% 구간에서 나옵니다. "
                 "The figures are the run report's own estimate, copied, never recomputed here.",
    }
    if doc is None:
        return out
    a = doc.assumptions
    out["assumptions"] = {
        "monthlyImpressions": a.monthly_impressions, "cpmKrw": a.cpm_krw, "cpcKrw": a.cpc_krw,
        "conversionRate": a.conversion_rate, "conversionValueKrw": a.conversion_value_krw,
        "targetedShare": a.targeted_share, "effectiveTargetedShare": a.effective_targeted_share,
    }
    if not doc.has_money:
        out["status"] = "no_estimate"
        out["statusMessage"] = a.reason or "리포트가 금액을 추정하지 않았습니다."
        return out
    money = doc.money_range
    assert money is not None  # has_money
    spend = a.monthly_spend_krw
    out.update({
        "status": "estimated",
        "statusMessage": f"모델 신뢰도 '{doc.model_strength.verdict_ko}': 금액은 95% 범위의 추정치입니다.",
        "expectedMonthlyClicks": _krw(a.clicks_base),
        "modelMonthlyClicks": _krw(a.clicks_model),
        "modelMonthlyClicksRange": _pair(money.clicks_model),
        "additionalClicks": None if a.clicks_model is None or a.clicks_base is None
        else round(a.clicks_model - a.clicks_base),
        "estimatedMonthlyCost": _krw(spend),
        "estimatedMonthlyRevenue": _krw(a.revenue_base_krw),
        "modelMonthlyRevenue": _krw(a.revenue_model_krw),
        "estimatedRoas": round(a.revenue_base_krw / spend, 2) if spend and a.revenue_base_krw is not None else None,
        "additionalRevenue": round(doc.additional_revenue),
        "additionalRevenueRange": _pair(money.additional_revenue_krw),
        "roiIncrease": doc.roi_increase,
        "roiIncreaseRange": _pair(money.roi_change_points, 2),
        "revenueChangePercent": doc.revenue_change_percent,
        "revenueChangeRange": _pair(money.revenue_change_percent, 2),
    })
    return out


def _derived_insights(highlights: AudienceHighlights | None, report: RunReport) -> list[dict[str, Any]]:
    """Before the run has a report: what the data shows (ingest's cards), and the report's status
    (no verdict of our own)."""
    insights = [i.model_dump() for i in highlights.data_insights] if highlights is not None else []
    if report.status != "no_run":
        insights.append({
            "icon": "📝", "type": "warning" if report.status in ("failed", "unreadable") else "info",
            "title": "리포트 상태", "message": report.message, "details": [],
            "action": "모델 신뢰도, 금액 추정과 실행 과제는 리포트가 정합니다.",
        })
    return insights


def _strategies(report: RunReport) -> list[dict[str, Any]]:
    """The report's action plan; none before it exists (actions rest on its tests and estimate)."""
    if report.doc is None:
        return []
    return [{
        "id": i + 1,
        "priority": item.priority,
        "title": item.title,
        "description": item.description,
        "impact": item.impact,
        "duration": item.duration,
        "cost": item.cost,
        "source": "report",
    } for i, item in enumerate(report.doc.action_plan)]


def performance_summary(state: GatewayState, limit: int = 10) -> list[dict[str, Any]]:
    events = state.views.events(
        [Topic.FILE_UPLOADED, Topic.TRAINING_DONE, Topic.TRAINING_FAILED, Topic.REPORT_READY],
        newest_first=True, limit=limit * 3,
    )
    # Topics and partitions are consumed in no global order: the events' own times order the story.
    events = sorted(events, key=lambda e: e.time, reverse=True)[:limit]
    out = []
    for e in events:
        p = e.payload
        if isinstance(p, FileUploaded):
            title, text = "데이터 업로드", f"{p.filename}: {p.rows:,}행, CTR {_round(p.info.ctr, 2)}%"
        elif isinstance(p, TrainingDone):
            m = p.metrics
            auc = live.finite(m.auc, None)
            title = "모델 학습 완료"
            text = (f"{p.experiment_name}: 정확도 {100 * (live.finite(m.val_accuracy) or 0):.1f}%"
                    + (f", AUC {auc:.3f}" if auc is not None else "") + f", {p.epochs_run} epochs")
        elif isinstance(p, TrainingFailed):
            title, text = "모델 학습 실패", p.reason[:300]
        else:
            ready = e.typed(ReportReady)
            title, text = "리포트 생성", f"run {ready.run_id} 리포트 ({ready.model_used})"
        out.append({"date": e.time.date().isoformat(), "timestamp": e.time.isoformat(), "title": title,
                    "description": text})
    return out


def client_dashboard(state: GatewayState) -> dict[str, Any]:
    done, upload = _sources(state)
    file_id = upload.typed(FileUploaded).file_id if upload else (done.typed(TrainingDone).file_id if done else None)
    highlights = _read_highlights(state, file_id) if file_id and is_id(file_id) else None
    run_id = done.typed(TrainingDone).run_id if done else None
    report = run_report(state, done)

    if highlights is not None:
        overall_pct = highlights.overall_ctr
    else:  # an upload stored before ingest wrote highlights: its verdict's CTR, nothing of its own
        info = upload.typed(FileUploaded).info if upload else None
        overall_pct = (live.finite(info.ctr, None) if info else None) or 0.0

    report_insights = [i.model_dump() for i in report.doc.ai_insights] if report.doc is not None else []
    insights = report_insights or _derived_insights(highlights, report)
    return {
        "runId": run_id,
        "fileId": file_id,
        "reportStatus": report.status,
        "businessMetrics": business_metrics(report, done, overall_pct, highlights),
        "aiInsights": live.jsonable(insights),
        "customerSegments": customer_segments(highlights, report.doc),
        "optimalTimeSlots": [h.model_dump() for h in highlights.hours] if highlights is not None else [],
        "marketingStrategies": _strategies(report),
        "performanceSummary": performance_summary(state),
        "sources": {
            "profile": highlights is not None,  # ingest's highlights.json of the upload was read
            "report": report.stored,
            "generatedAt": datetime.now().astimezone().isoformat(),
        },
    }


@router.get("/api/dashboard/si", response_model=SiDashboard, response_model_exclude_unset=True,
            responses=success(SI_EXAMPLE, "The engineers' dashboard (200 with neutral values before any data)"))
async def dashboard_si(state: State) -> dict[str, Any]:
    """Engineer dashboard: current metrics, system health, performance over time, latest run, errors,
    per-route and per-stage latency, the most severe open alert.

    `performanceData` (`source: "monitoring"`) once batches were scored by the champion's line: `labels`
    are the periods in time order; `accuracy`, `f1Score`, `loss` the period's accuracy and F1 at the
    model's threshold and its log loss (null for an unlabelled period); `valAccuracy`, `valF1Score`,
    `valLoss` the scoring model's validation values at training time (reference lines); plus `auc`,
    `estimatedAuc`, `calibration`, `driftedFeatures` per period. Before any period (`source:
    "training"`): the latest run's epochs. `performanceAlert` shows the model's open alerts first
    (`kind` calibration/auc_drop/feature_drift, `period`, `feature`). `currentMetrics.responseTime` is
    the scorer's serving p95 when a scorer reports one (`responseTimeSource`; `apiResponseTime` beside)."""
    return await asyncio.to_thread(si_dashboard, state)


@router.get("/api/dashboard/client", response_model=ClientDashboard, response_model_exclude_unset=True,
            responses=success(CLIENT_EXAMPLE, "The marketers' dashboard (200 with empty values before any data)"))
async def dashboard_client(state: State) -> dict[str, Any]:
    """Marketer dashboard: CTR from the uploaded data, the run report's verdict and money figures
    (ranges, with their assumptions; null with a status before the report or for a weak model),
    insights and strategies from the report, segments and best hours from the data (ingest's
    highlights.json, served as stored; `sources.profile` false when the upload has none)."""
    return await asyncio.to_thread(client_dashboard, state)
