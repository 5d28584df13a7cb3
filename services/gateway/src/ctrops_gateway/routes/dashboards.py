"""The two dashboards: GET /api/dashboard/si (engineers) and GET /api/dashboard/client (marketers).

Everything comes from real data: runs and epochs from the read model (training events),
health from the monitor's latest snapshot, errors from service.error events, latency
per route from this gateway's traffic window, segments and hours from ingest's
``files/<file_id>/profile.json``, strategies and insights from the reporter's
``runs/<run_id>/report.json`` when it exists. Money figures are estimates from the
stated, configurable assumptions (GatewaySettings.dashboard_*), returned beside them.
With no data yet both answer 200 with empty or neutral values.
"""

from __future__ import annotations

import asyncio
import logging
import math
from datetime import datetime
from typing import Any

from fastapi import APIRouter

from ctrops_common.dataset import profile_path, run_dir
from ctrops_common.events import Topic
from ctrops_common.storage import is_id

from .. import performance_live as live
from ..state import GatewayState, State
from ..views import StoredEvent

log = logging.getLogger(__name__)

router = APIRouter(tags=["dashboards"])

SLOW_ROUTE_MS = 500.0  # the contract's response-time threshold
BEST_HOURS = 3
Z95 = 1.959964


def _round(value: Any, digits: int = 4) -> float:
    number = live.finite(value)
    return round(number, digits) if number is not None else 0.0


# -- engineers ------------------------------------------------------------------------------


def _epochs(state: GatewayState, run_id: str) -> list[dict[str, Any]]:
    """One entry per epoch of the run's newest attempt (a retried attempt replaces the old one)."""
    events = state.views.events(Topic.TRAINING_PROGRESS, correlation_id=run_id)
    if not events:
        return []
    attempt = max(e.payload.get("attempt", 1) for e in events)
    by_epoch: dict[int, dict[str, Any]] = {}
    for e in events:
        if e.payload.get("attempt", 1) == attempt:
            by_epoch[int(e.payload["epoch"])] = e.payload["metrics"]
    return [{"epoch": n, **by_epoch[n]} for n in sorted(by_epoch)]


def performance_data(state: GatewayState) -> dict[str, Any]:
    latest = state.views.latest(Topic.TRAINING_PROGRESS)
    run_id = latest.payload.get("run_id") if latest else None
    epochs = _epochs(state, run_id) if run_id else []
    labels = [f"Epoch {e['epoch']}" for e in epochs]
    f1 = [_round(e.get("f1")) for e in epochs]
    return {
        "runId": run_id,
        "labels": labels,
        "months": labels,  # the guide's name for the x axis
        "accuracy": [_round(e.get("train_accuracy")) for e in epochs],
        "valAccuracy": [_round(e.get("val_accuracy")) for e in epochs],
        "loss": [_round(e.get("train_loss")) for e in epochs],
        "valLoss": [_round(e.get("val_loss")) for e in epochs],
        # F1 is measured on validation only; both series carry it so the chart has no hole.
        "f1Score": f1,
        "valF1Score": f1,
        "auc": [live.finite(e.get("auc"), None) for e in epochs],
        "ap": [live.finite(e.get("ap"), None) for e in epochs],
    }


def latest_run(state: GatewayState) -> dict[str, Any]:
    done = state.views.latest(Topic.TRAINING_DONE)
    if done is None:
        return {"runId": None, "trainingTime": 0.0, "epochs": 0, "batchSize": 0, "learningRate": 0.0,
                "optimizer": "Adam", "finalLoss": 0.0, "bestAccuracy": 0.0, "status": "none"}
    payload = done.payload
    config, metrics = payload.get("config", {}), payload.get("metrics", {})
    return {
        "runId": payload["run_id"],
        "experimentName": payload.get("experiment_name"),
        "trainingTime": _round((live.finite(payload.get("duration_s")) or 0.0) / 60.0, 2),
        "epochs": payload.get("epochs_run", config.get("epochs", 0)),
        "bestEpoch": payload.get("best_epoch"),
        "batchSize": config.get("batch_size", 0),
        "learningRate": live.finite(config.get("learning_rate")),
        "optimizer": "Adam",
        "finalLoss": _round(metrics.get("val_loss")),
        "bestAccuracy": _round(100.0 * (live.finite(metrics.get("val_accuracy")) or 0.0), 2),
        "auc": live.finite(metrics.get("auc"), None),
        "ap": live.finite(metrics.get("ap"), None),
        "finishedAt": done.time.isoformat(),
        "status": "completed",
        **live.champion_of(payload),
        "batchSizeUsed": (payload.get("batch") or {}).get("used", config.get("batch_size", 0)),
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


def _stage_durations(state: GatewayState) -> list[tuple[str, float]]:
    """(stage, ms) of the latest finished run: queue wait, training, explanation, report."""
    done = state.views.latest(Topic.TRAINING_DONE)
    if done is None:
        return []
    run_id = done.payload["run_id"]
    stages: list[tuple[str, float]] = []
    requested = live.find_run_event(state.views, Topic.TRAINING_REQUESTED, run_id)
    started = live.find_run_event(state.views, Topic.TRAINING_STARTED, run_id)
    if requested is not None and started is not None and started.time >= requested.time:
        stages.append(("학습 대기 (queue)", (started.time - requested.time).total_seconds() * 1000))
    stages.append(("모델 학습 (trainer)", (live.finite(done.payload.get("duration_s")) or 0.0) * 1000))
    explained = live.find_run_event(state.views, Topic.EXPLANATION_DONE, run_id)
    if explained is not None and explained.time >= done.time:
        stages.append(("LIME 설명 (explainer)", (explained.time - done.time).total_seconds() * 1000))
    report_requested = live.find_run_event(state.views, Topic.REPORT_REQUESTED, run_id)
    report_ready = live.find_run_event(state.views, Topic.REPORT_READY, run_id)
    if report_requested is not None and report_ready is not None and report_ready.time >= report_requested.time:
        stages.append(("리포트 생성 (reporter)", (report_ready.time - report_requested.time).total_seconds() * 1000))
    return stages


def bottlenecks(state: GatewayState) -> list[dict[str, Any]]:
    """API routes (this gateway's window, per-route avg/max) and the latest run's pipeline stages."""
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
    stages = _stage_durations(state)
    stage_total = sum(ms for _, ms in stages) or 1.0
    for name, ms in stages:
        share = 100.0 * ms / stage_total
        status = "warning" if share > 60.0 and len(stages) > 1 else "good"
        advice = "정상 범위입니다. Within budget." if status == "good" else (
            "파이프라인 시간의 대부분입니다: epochs/배치 크기 조정, early stopping, trainer 확장을 고려하세요. "
            "Dominant stage: tune epochs/batch size, use early stopping or more trainers."
            if "trainer" in name else
            "파이프라인 시간의 대부분입니다: 해당 서비스의 인스턴스를 늘리세요. Dominant stage: scale this service."
        )
        rows.append({
            "component": name, "kind": "pipeline", "avgTime": _round(ms, 1), "maxTime": _round(ms, 1),
            "percentage": _round(share, 1), "status": status, "recommendation": advice,
        })
    return rows


def performance_alert(state: GatewayState) -> dict[str, Any]:
    alerts = live.open_alerts(state.views)
    if not alerts:
        return {"show": False, "message": "", "severity": "low", "count": 0}
    top = alerts[0]
    return {"show": True, "message": top["message"], "severity": top["severity"], "kind": top["kind"],
            "alertId": top["alert_id"], "since": top["timestamp"], "count": len(alerts)}


def si_dashboard(state: GatewayState) -> dict[str, Any]:
    metrics = live.current_metrics(state)
    return {
        "currentMetrics": {
            "accuracy": metrics["accuracy"],
            "precision": metrics["precision"],
            "recall": metrics["recall"],
            "f1Score": metrics["f1Score"],
            "f1_score": metrics["f1_score"],
            "responseTime": metrics["responseTime"],
            "response_time": metrics["response_time"],
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


def wilson(clicks: float, rows: float) -> tuple[float, float]:
    """95% Wilson interval of a click rate: small segments get wide, honest bounds."""
    if rows <= 0:
        return 0.0, 0.0
    p = clicks / rows
    denom = 1 + Z95**2 / rows
    centre = (p + Z95**2 / (2 * rows)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / rows + Z95**2 / (4 * rows**2)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _segment_rows(profile: dict[str, Any] | None, name: str) -> list[dict[str, Any]]:
    """A profile segment table with rows/clicks as numbers; CTR recomputed from them."""
    table = ((profile or {}).get("segments") or {}).get(name) or []
    out = []
    for item in table:
        if not isinstance(item, dict):
            continue
        rows, clicks = live.finite(item.get("rows")), live.finite(item.get("clicks"))
        if not rows or rows <= 0 or clicks is None:
            continue
        low, high = wilson(clicks, rows)
        out.append({**item, "rows": int(rows), "clicks": int(clicks), "rate": clicks / rows, "low": low, "high": high})
    return out


def _code(value: Any) -> str:
    number = live.finite(value, None)
    if number is None:
        return "미상" if value in (None, "", "nan") else str(value)
    return str(int(number)) if number.is_integer() else f"{number:g}"


def _read_json(state: GatewayState, relative: str) -> dict[str, Any] | None:
    try:
        if not state.store.exists(relative):
            return None
        data = state.store.read_json(relative)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError) as exc:
        log.warning("cannot read %s: %s", relative, exc)
        return None


def _sources(state: GatewayState) -> tuple[StoredEvent | None, StoredEvent | None]:
    """(latest finished run, the upload it learned from, else the latest valid upload)."""
    done = state.views.latest(Topic.TRAINING_DONE)
    upload = None
    if done is not None and is_id(done.payload.get("file_id", "")):
        upload = state.views.latest(Topic.FILE_UPLOADED, correlation_id=done.payload["file_id"])
    if upload is None:
        upload = next((e for e in state.views.events(Topic.FILE_UPLOADED, newest_first=True, limit=50)
                       if e.payload.get("validation", {}).get("is_valid")), None)
    return done, upload


def customer_segments(profile: dict[str, Any] | None, overall: float, min_rows: int) -> list[dict[str, Any]]:
    rows = _segment_rows(profile, "age_group_gender")
    kind = "age_group_gender"
    if not rows:
        rows, kind = _segment_rows(profile, "inventory_id"), "inventory_id"
    rows = [r for r in rows if r["rows"] >= min_rows]
    if not rows:
        return []
    best_low = max(r["low"] for r in rows) or 1.0
    total = sum(r["rows"] for r in rows)
    segments = []
    for r in rows:
        if kind == "age_group_gender":
            age, gender = _code(r.get("age_group")), _code(r.get("gender"))
            name, label = f"age_{age}_gender_{gender}", f"연령대 {age} · 성별 {gender}"
        else:
            value = _code(r.get("value"))
            name, label = f"inventory_{value}", f"광고 지면 {value}"
        segments.append({
            "name": name,
            "label": label,
            "segment": kind,
            "ctr": round(100 * r["rate"], 3),
            "ctrLow": round(100 * r["low"], 3),
            "ctrHigh": round(100 * r["high"], 3),
            # Lower 95% bound relative to the best segment's: a tiny lucky segment does not top the list.
            "potential": round(min(100.0, 100.0 * r["low"] / best_low), 1),
            "lift": round(r["rate"] / overall, 3) if overall > 0 else 0.0,
            "rows": r["rows"],
            "clicks": r["clicks"],
            "share": round(100.0 * r["rows"] / total, 2),
        })
    return sorted(segments, key=lambda s: -s["potential"])[:10]


def time_slots(profile: dict[str, Any] | None, min_rows: int) -> list[dict[str, Any]]:
    rows = [r for r in _segment_rows(profile, "hour") if live.finite(r.get("value"), None) is not None]
    if not rows:
        return []
    eligible = sorted((r for r in rows if r["rows"] >= min_rows), key=lambda r: -r["low"])
    best = {id(r) for r in eligible[:BEST_HOURS]}
    total = sum(r["rows"] for r in rows)
    slots = []
    for r in sorted(rows, key=lambda r: float(r["value"])):
        hour = int(float(r["value"]))
        slots.append({
            "period": f"{hour:02d}:00-{(hour + 1) % 24:02d}:00",
            "hour": hour,
            "ctr": round(100 * r["rate"], 3),
            "ctrLow": round(100 * r["low"], 3),
            "ctrHigh": round(100 * r["high"], 3),
            "traffic": r["rows"],
            "trafficShare": round(100.0 * r["rows"] / total, 2),
            "clicks": r["clicks"],
            "isBest": id(r) in best,
        })
    return slots


def business_metrics(
    state: GatewayState, done: StoredEvent | None, overall_pct: float, slots: list[dict[str, Any]],
) -> dict[str, Any]:
    s = state.settings
    best = [x for x in slots if x["isBest"]]
    best_rows = sum(x["traffic"] for x in best)
    best_pct = 100.0 * sum(x["clicks"] for x in best) / best_rows if best_rows else overall_pct
    lift = best_pct / overall_pct if overall_pct > 0 else 1.0
    calibration = live.finite(done.payload.get("metrics", {}).get("calibration"), None) if done else None
    predicted_pct = overall_pct * calibration if calibration is not None else None
    clicks = s.dashboard_monthly_impressions * overall_pct / 100.0
    targeted_clicks = s.dashboard_monthly_impressions * best_pct / 100.0
    cost = clicks * s.dashboard_cpc_krw
    revenue = clicks * s.dashboard_conversion_rate * s.dashboard_conversion_value_krw
    additional_clicks = max(0.0, targeted_clicks - clicks)
    additional_revenue = additional_clicks * s.dashboard_conversion_rate * s.dashboard_conversion_value_krw
    return {
        "actualCtr": round(overall_pct, 3),
        "predictedCtr": None if predicted_pct is None else round(predicted_pct, 3),
        "bestHoursCtr": round(best_pct, 3),
        "ctrLift": round(100.0 * (lift - 1.0), 1),
        "modelAuc": live.finite(done.payload.get("metrics", {}).get("auc"), None) if done else None,
        "expectedMonthlyClicks": round(clicks),
        "estimatedMonthlyCost": round(cost),
        "estimatedMonthlyRevenue": round(revenue),
        "estimatedRoas": round(revenue / cost, 2) if cost > 0 else 0.0,
        "additionalClicks": round(additional_clicks),
        "additionalRevenue": round(additional_revenue),
        "currency": "KRW",
        "isEstimate": True,
        "assumptions": {
            "cpcKrw": s.dashboard_cpc_krw,
            "conversionRate": s.dashboard_conversion_rate,
            "conversionValueKrw": s.dashboard_conversion_value_krw,
            "monthlyImpressions": s.dashboard_monthly_impressions,
        },
        "basis": (
            "추정치: 월 노출수 × 실제 CTR × 가정(CPC, 전환율, 전환 가치). 추가 수익은 같은 노출을 CTR 상위 "
            f"{BEST_HOURS}개 시간대에 집중할 때의 차이입니다. Estimates from the stated assumptions; "
            "predictedCtr = actual CTR × model calibration (predicted / actual clicks)."
        ),
    }


def _derived_insights(slots: list[dict[str, Any]], segments: list[dict[str, Any]], overall: float,
                      done: StoredEvent | None) -> list[dict[str, Any]]:
    insights = []
    best = sorted((x for x in slots if x["isBest"]), key=lambda x: -x["ctr"])
    if best and overall > 0:
        top = best[0]
        insights.append({
            "icon": "⏰", "type": "success", "title": f"최적 시간대 {top['period']}",
            "message": f"CTR {top['ctr']:.2f}% (전체 {overall:.2f}%의 {top['ctr'] / overall:.1f}배)",
            "details": [f"{x['period']}: CTR {x['ctr']:.2f}% (95% {x['ctrLow']:.2f}-{x['ctrHigh']:.2f}%), "
                        f"노출 {x['traffic']:,}" for x in best],
            "action": "이 시간대에 예산을 우선 배분하세요.",
        })
    if segments:
        top = segments[0]
        insights.append({
            "icon": "👥", "type": "info", "title": f"유망 세그먼트: {top['label']}",
            "message": f"CTR {top['ctr']:.2f}% (95% 하한 {top['ctrLow']:.2f}%), 노출 비중 {top['share']:.1f}%",
            "details": [f"{s['label']}: CTR {s['ctr']:.2f}%, lift {s['lift']:.2f}" for s in segments[:3]],
            "action": "해당 세그먼트 타기팅 캠페인을 시험해 보세요.",
        })
    if done is not None:
        metrics = done.payload.get("metrics", {})
        auc = live.finite(metrics.get("auc"), None)
        ap = live.finite(metrics.get("ap"), None)
        if auc is not None:
            weak = auc < 0.6
            insights.append({
                "icon": "📈", "type": "warning" if weak else "info",
                "title": "모델 변별력 (AUC)",
                "message": f"AUC {auc:.3f}" + (f", AP {ap:.3f}" if ap is not None else "")
                           + (" — 예측력이 약합니다." if weak else ""),
                "details": ["클릭 비율이 약 2%라서 정확도보다 AUC/AP가 모델 품질을 더 정직하게 보여줍니다."],
                "action": "데이터를 늘리거나 피처를 보강해 재학습하세요." if weak else "현재 모델로 타기팅을 시작할 수 있습니다.",
            })
    return insights


def _strategies(report: dict[str, Any] | None, slots: list[dict[str, Any]], segments: list[dict[str, Any]],
                overall: float) -> list[dict[str, Any]]:
    plan = (report or {}).get("actionPlan")
    if isinstance(plan, list) and plan:
        return [{
            "id": i + 1,
            "priority": item.get("priority", "medium"),
            "title": item.get("title", ""),
            "description": item.get("description", ""),
            "impact": live.finite(item.get("impact")),
            "duration": item.get("duration"),
            "cost": item.get("cost"),
            "source": "report",
        } for i, item in enumerate(plan) if isinstance(item, dict)]
    strategies = []
    best = [x for x in slots if x["isBest"]]
    if best and overall > 0:
        rows = sum(x["traffic"] for x in best)
        ctr = 100.0 * sum(x["clicks"] for x in best) / rows if rows else 0.0
        strategies.append({
            "title": "시간대 예산 재배분",
            "description": "CTR 상위 시간대(" + ", ".join(x["period"] for x in best) + ")에 노출을 집중합니다.",
            "impact": round(100.0 * (ctr / overall - 1.0), 1),
        })
    if segments and overall > 0:
        top = segments[0]
        strategies.append({
            "title": f"{top['label']} 타기팅",
            "description": f"CTR {top['ctr']:.2f}% 세그먼트에 맞춤 소재를 집행합니다 (95% 하한 {top['ctrLow']:.2f}%).",
            "impact": round(100.0 * (top["ctrLow"] / overall - 1.0), 1),
        })
    strategies.sort(key=lambda s: -s["impact"])
    return [{"id": i + 1, "priority": "high" if i == 0 else "medium", "source": "data", **s}
            for i, s in enumerate(strategies)]


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
        if e.topic == Topic.FILE_UPLOADED.value:
            info = p.get("info", {})
            title, text = "데이터 업로드", f"{p.get('filename', '')}: {p.get('rows', 0):,}행, CTR {_round(info.get('ctr'), 2)}%"
        elif e.topic == Topic.TRAINING_DONE.value:
            m = p.get("metrics", {})
            auc = live.finite(m.get("auc"), None)
            title = "모델 학습 완료"
            text = (f"{p.get('experiment_name', '')}: 정확도 {100 * (live.finite(m.get('val_accuracy')) or 0):.1f}%"
                    + (f", AUC {auc:.3f}" if auc is not None else "") + f", {p.get('epochs_run', 0)} epochs")
        elif e.topic == Topic.TRAINING_FAILED.value:
            title, text = "모델 학습 실패", str(p.get("reason", ""))[:300]
        else:
            title, text = "리포트 생성", f"run {p.get('run_id', '')} 리포트 ({p.get('model_used', '')})"
        out.append({"date": e.time.date().isoformat(), "timestamp": e.time.isoformat(), "title": title,
                    "description": text})
    return out


def client_dashboard(state: GatewayState) -> dict[str, Any]:
    done, upload = _sources(state)
    file_id = upload.payload.get("file_id") if upload else (done.payload.get("file_id") if done else None)
    profile = _read_json(state, profile_path(file_id)) if file_id and is_id(file_id) else None
    run_id = done.payload.get("run_id") if done else None
    report = _read_json(state, f"{run_dir(run_id)}/report.json") if run_id and is_id(run_id) else None

    hours = _segment_rows(profile, "hour")
    total_rows = sum(r["rows"] for r in hours)
    total_clicks = sum(r["clicks"] for r in hours)
    info = (upload.payload.get("info") if upload else None) or {}
    overall_pct = live.finite(info.get("ctr"), None)
    if overall_pct is None:
        overall_pct = 100.0 * total_clicks / total_rows if total_rows else 0.0
    rows_known = live.finite(info.get("total_rows"), None) or total_rows
    min_rows = max(30, int(0.002 * rows_known))

    slots = time_slots(profile, min_rows)
    segments = customer_segments(profile, overall_pct / 100.0, min_rows)
    report_insights = (report or {}).get("aiInsights")
    insights = report_insights if isinstance(report_insights, list) and report_insights else \
        _derived_insights(slots, segments, overall_pct, done)
    return {
        "runId": run_id,
        "fileId": file_id,
        "businessMetrics": business_metrics(state, done, overall_pct, slots),
        "aiInsights": live.jsonable(insights),
        "customerSegments": segments,
        "optimalTimeSlots": slots,
        "marketingStrategies": _strategies(report, slots, segments, overall_pct),
        "performanceSummary": performance_summary(state),
        "sources": {
            "profile": profile is not None,
            "report": report is not None,
            "generatedAt": datetime.now().astimezone().isoformat(),
        },
    }


@router.get("/api/dashboard/si")
async def dashboard_si(state: State) -> dict[str, Any]:
    """Engineer dashboard: current metrics, system health, training curves, latest run, errors,
    per-route and per-stage latency, the most severe open alert."""
    return await asyncio.to_thread(si_dashboard, state)


@router.get("/api/dashboard/client")
async def dashboard_client(state: State) -> dict[str, Any]:
    """Marketer dashboard: CTR and estimated money figures (with their assumptions), insights,
    segments and best hours from the uploaded data, strategies from the AI report."""
    return await asyncio.to_thread(client_dashboard, state)
