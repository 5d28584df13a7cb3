"""What the marketers' dashboard shows of an upload, built from its profile: ``highlights.json``.

``build_highlights(profile, total_rows, ctr)`` turns the profile's segment tables into a
``ctrops_common.documents.AudienceHighlights``: the audience segments (age group x gender,
else placement) and the hours of the day, each with its CTR and 95% Wilson interval, the
best hours (highest lower bound among those with enough rows), and the data's insight cards
shown before the run's report exists. Pure: no store, no clock. ``write_highlights`` stores it
beside ``profile.json`` (``uploads.decide``); the gateway reads it back and serves it.

A segment or hour needs ``min_rows = max(30, 0.2% of the rows)`` rows to be ranked, so a tiny
lucky one never tops a list. Percent values are rounded as the dashboard shows them.
"""

from __future__ import annotations

import math
from typing import Any

from ctrops_common.dataset import highlights_path
from ctrops_common.documents import (
    AudienceHighlights,
    AudienceSegment,
    HourSlot,
    InsightDoc,
    Profile,
    write_document,
)
from ctrops_common.intervals import wilson_interval
from ctrops_common.storage import FileStore

BEST_HOURS = 3
REPORT_ACTION = "다중검정 보정을 거친 판단과 실행 과제는 리포트에서 확인하세요."


def _segment_rows(profile: Profile, name: str) -> list[dict[str, Any]]:
    """A profile segment table (its values, rows and clicks) with the CTR and its Wilson interval."""
    out = []
    for item in profile.segments.table(name):
        if item.rows <= 0:
            continue
        low, high = wilson_interval(item.clicks, item.rows)  # rows > 0: an interval
        out.append({**item.model_dump(), "rate": item.clicks / item.rows, "low": low, "high": high})
    return out


def _code(value: float) -> str:
    """A segment's code as the report labels it: 4.0 -> "4", 2.5 -> "2.5" (profiles hold finite numbers)."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def min_rows_for(rows: int) -> int:
    """Rows a segment or hour needs to be ranked."""
    return max(30, int(0.002 * rows))


def customer_segments(profile: Profile, overall: float, min_rows: int) -> tuple[str | None, list[AudienceSegment]]:
    """(table, segments): the data's audience segments (age x gender, else placement) with at
    least ``min_rows`` rows, ranked by the lower end of their CTR interval against the best one's
    (``potential``); ``overall`` is the upload's click rate (a fraction)."""
    rows = _segment_rows(profile, "age_group_gender")
    kind = "age_group_gender"
    if not rows:
        rows, kind = _segment_rows(profile, "inventory_id"), "inventory_id"
        if not rows:
            return None, []
    rows = [r for r in rows if r["rows"] >= min_rows]
    if not rows:
        return kind, []
    best_low = max(r["low"] for r in rows) or 1.0
    total = sum(r["rows"] for r in rows)
    segments = []
    for r in rows:
        if kind == "age_group_gender":
            age, gender = _code(r["age_group"]), _code(r["gender"])
            name, label = f"age_{age}_gender_{gender}", f"연령대 {age} · 성별 {gender}"
        else:
            value = _code(r["value"])
            name, label = f"inventory_{value}", f"지면 {value}"  # the report's name for it
        segments.append(AudienceSegment(
            name=name,
            label=label,
            segment=kind,
            ctr=round(100 * r["rate"], 3),
            ctr_low=round(100 * r["low"], 3),
            ctr_high=round(100 * r["high"], 3),
            # Lower 95% bound relative to the best segment's: a tiny lucky segment does not top the list.
            potential=round(min(100.0, 100.0 * r["low"] / best_low), 1),
            lift=round(r["rate"] / overall, 3) if overall > 0 else 0.0,
            rows=r["rows"],
            clicks=r["clicks"],
            share=round(100.0 * r["rows"] / total, 2),
        ))
    segments.sort(key=lambda s: -s.potential)
    return kind, segments


def time_slots(profile: Profile, min_rows: int) -> list[HourSlot]:
    """Every hour with rows, in hour order; the BEST_HOURS hours with ``min_rows`` rows and the
    highest lower bound are ``is_best``."""
    rows = _segment_rows(profile, "hour")
    if not rows:
        return []
    eligible = sorted((r for r in rows if r["rows"] >= min_rows), key=lambda r: -r["low"])
    best = {id(r) for r in eligible[:BEST_HOURS]}
    total = sum(r["rows"] for r in rows)
    slots = []
    for r in sorted(rows, key=lambda r: float(r["value"])):
        hour = int(float(r["value"]))
        slots.append(HourSlot(
            period=f"{hour:02d}:00-{(hour + 1) % 24:02d}:00",
            hour=hour,
            ctr=round(100 * r["rate"], 3),
            ctr_low=round(100 * r["low"], 3),
            ctr_high=round(100 * r["high"], 3),
            traffic=r["rows"],
            traffic_share=round(100.0 * r["rows"] / total, 2),
            clicks=r["clicks"],
            is_best=id(r) in best,
        ))
    return slots


def data_insights(slots: list[HourSlot], segments: list[AudienceSegment], overall: float) -> list[InsightDoc]:
    """What the data shows before the run has a report (no verdict of its own): the best hours
    and the segment with the highest lower bound. ``overall`` is the upload's CTR in percent."""
    insights = []
    best = sorted((x for x in slots if x.is_best), key=lambda x: -x.ctr)
    if best and overall > 0:
        top = best[0]
        insights.append(InsightDoc(
            icon="⏰", type="info", title=f"CTR 상위 시간대 {top.period}",
            message=f"CTR {top.ctr:.2f}% (전체 {overall:.2f}%의 {top.ctr / overall:.1f}배)",
            details=[f"{x.period}: CTR {x.ctr:.2f}% (95% {x.ctr_low:.2f}-{x.ctr_high:.2f}%), "
                     f"노출 {x.traffic:,}" for x in best],
            action=REPORT_ACTION,
        ))
    if segments:
        top_segment = segments[0]
        insights.append(InsightDoc(
            icon="👥", type="info", title=f"CTR 하한이 가장 높은 세그먼트: {top_segment.label}",
            message=f"CTR {top_segment.ctr:.2f}% (95% 하한 {top_segment.ctr_low:.2f}%), "
                    f"노출 비중 {top_segment.share:.1f}%",
            details=[f"{s.label}: CTR {s.ctr:.2f}%, lift {s.lift:.2f}" for s in segments[:3]],
            action=REPORT_ACTION,
        ))
    return insights


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def build_highlights(profile: Profile, total_rows: int | None = None, ctr: float | None = None) -> AudienceHighlights:
    """The upload's highlights from its profile and totals (``DataInfo.total_rows`` and ``ctr``, in
    percent); without totals, the rows and clicks of the profile's hours stand in for them."""
    hours = _segment_rows(profile, "hour")
    hour_rows = sum(r["rows"] for r in hours)
    hour_clicks = sum(r["clicks"] for r in hours)
    overall = _finite(ctr)
    if overall is None:
        overall = 100.0 * hour_clicks / hour_rows if hour_rows else 0.0
    min_rows = min_rows_for(total_rows or hour_rows)

    slots = time_slots(profile, min_rows)
    kind, segments = customer_segments(profile, overall / 100.0, min_rows)
    best = [x for x in slots if x.is_best]
    best_rows = sum(x.traffic for x in best)
    best_pct = 100.0 * sum(x.clicks for x in best) / best_rows if best_rows else overall
    lift = best_pct / overall if overall > 0 else 1.0
    return AudienceHighlights(
        overall_ctr=overall,
        min_rows=min_rows,
        segment_kind=kind,
        segments=segments,
        hours=slots,
        best_hours_ctr=round(best_pct, 3),
        best_hours_lift=round(100.0 * (lift - 1.0), 1),
        data_insights=data_insights(slots, segments[:10], overall),
    )


def write_highlights(store: FileStore, file_id: str, profile: Profile, total_rows: int | None = None,
                     ctr: float | None = None) -> AudienceHighlights:
    """Build the upload's highlights and store them at ``highlights_path(file_id)``, atomically."""
    highlights = build_highlights(profile, total_rows, ctr)
    write_document(store, highlights_path(file_id), highlights)
    return highlights
