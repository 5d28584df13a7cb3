"""The PDF report (ReportLab), in Korean, from the report (``ReportDoc``) plus the curve and correlation.

Sections: title page (SK AX / SK Planet AIOps, blue-to-purple gradient), executive
summary, model performance, training curves*, key features (held-out test, direction of
effect; chart* with confidence intervals), correlations (the correlated pairs, or that none
reaches the threshold; heatmap*), segment analysis, AI insights**, action plan***, method
notes. (*) ``include_charts``, (**) ``include_insights``, (***)
``include_action_plan`` switch their parts off. All text uses the embedded NanumGothic.

The cover and the summary lead with the model's strength verdict, its ROC AUC with the
95% interval and AP beside the base rate; accuracy appears only beside the majority-class
baseline; money only as a range with its assumptions, and not at all when the report
has no supported estimate. Times are shown in Asia/Seoul.

The report is read typed, by attribute (``ReportDoc`` and its nested documents), never as the
dumped dict of report.json's keys.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import (
    Image,
    KeepTogether,
    PageBreak,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from ctrops_common.documents import AssumptionsDoc, ModelStrengthDoc, ReportDoc
from ctrops_common.model_metrics import ModelMetrics

from .facts import Correlation, Feature
from .fonts import register_pdf_fonts
from .narrative import PRIORITY_RULE

BLUE, PURPLE = colors.HexColor("#2563eb"), colors.HexColor("#7c3aed")
INK, MUTED, LINE = colors.HexColor("#111827"), colors.HexColor("#6b7280"), colors.HexColor("#e5e7eb")
TYPE_COLORS = {"success": "#059669", "warning": "#d97706", "info": "#2563eb"}
TYPE_LABELS = {"success": "긍정", "warning": "주의", "info": "정보"}
PRIORITY_LABELS = {"high": "높음", "medium": "중간", "low": "낮음"}
VERDICT_COLORS = {"strong": "#059669", "usable": "#2563eb", "weak": "#dc2626"}
SEOUL = ZoneInfo("Asia/Seoul")


def seoul_time(iso: str | None) -> str:
    """An ISO timestamp as Asia/Seoul wall time ('2025-03-01 18:04 KST'); naive times are UTC."""
    try:
        moment = datetime.fromisoformat(str(iso))
    except (TypeError, ValueError):
        return str(iso or "")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(SEOUL).strftime("%Y-%m-%d %H:%M KST")


def _num(value: Any, digits: int = 3) -> str:
    return "없음" if value is None else f"{value:.{digits}f}"


def auc_text(strength: ModelStrengthDoc) -> str:
    ci = strength.auc_ci
    interval = f" (95% CI {ci[0]:.3f}~{ci[1]:.3f})" if ci else " (95% 신뢰구간 알 수 없음)"
    return f"ROC AUC {_num(strength.auc)}{interval}"


def ap_text(strength: ModelStrengthDoc) -> str:
    base, lift = strength.base_rate, strength.ap_lift
    beside = f" (기준 클릭률 {100 * base:.2f}%, {lift:.1f}배)" if base is not None and lift is not None else ""
    return f"AP {_num(strength.ap)}{beside}"


def accuracy_text(strength: ModelStrengthDoc) -> str | None:
    accuracy, baseline = strength.accuracy, strength.majority_baseline
    if accuracy is None or baseline is None:
        return None
    return f"정확도 {100 * accuracy:.2f}% (모두 '클릭 안 함'으로 답하는 기준 {100 * baseline:.2f}%)"


def money_range_text(report: ReportDoc) -> str | None:
    """'+1,234원 ~ +5,678원' per month, or None when the report has no supported estimate."""
    revenue = report.money_range.additional_revenue_krw if report.money_range is not None else None
    if not report.assumptions.computable or not revenue:
        return None
    return f"{revenue[0]:+,.0f}원 ~ {revenue[1]:+,.0f}원"


def spend_roi_text(report: ReportDoc) -> str | None:
    """'월 광고비 6,000,000원 (같은 비용), ROI 변화 +1.23%p ~ +4.56%p': the same figures the marketer
    dashboard and ``make demo`` show for the run; None without a supported estimate."""
    roi = report.money_range.roi_change_points if report.money_range is not None else None
    spend = report.assumptions.monthly_spend_krw
    if money_range_text(report) is None or not roi or spend is None:
        return None
    return f"월 광고비 {spend:,.0f}원 (같은 비용), ROI 변화 (95% 범위) {roi[0]:+.2f}%p ~ {roi[1]:+.2f}%p"


def writer_label(report: ReportDoc) -> str:
    """Who wrote the text, for people (the internal model id stays in the method notes)."""
    return "LLM 작성" if report.narrative_source == "llm" else "규칙 기반 자동 작성"

# In the order the story shows them (h1 sections; feature_chart and heatmap are h2 inside theirs).
HEADINGS = {
    "summary": "경영진 요약",
    "performance": "모델 성능",
    "curves": "학습 곡선",
    "features": "주요 변수",
    "feature_chart": "변수 중요도 차트",
    "correlation": "변수 간 상관관계",
    "heatmap": "상관관계 히트맵",
    "segments": "세그먼트 분석",
    "insights": "AI 인사이트",
    "actions": "실행 계획",
    "method": "분석 방법 및 가정",
}


@dataclass(frozen=True)
class PdfOptions:
    include_charts: bool = True
    include_insights: bool = True
    include_action_plan: bool = True

    @property
    def suffix(self) -> str:
        """File-name part for non-default options (the default PDF is ``report.pdf``)."""
        if self.include_charts and self.include_insights and self.include_action_plan:
            return ""
        flags = (self.include_charts, self.include_insights, self.include_action_plan)
        return "-" + "".join("1" if f else "0" for f in flags)


def _styles(regular: str, bold: str) -> dict[str, ParagraphStyle]:
    base = ParagraphStyle("body", fontName=regular, fontSize=9.5, leading=14.5, textColor=INK)
    return {
        "body": base,
        "small": ParagraphStyle("small", parent=base, fontSize=8, leading=11, textColor=MUTED),
        "cell": ParagraphStyle("cell", parent=base, fontSize=8, leading=10.5),
        "cell_bold": ParagraphStyle("cell_bold", parent=base, fontName=bold, fontSize=8, leading=10.5),
        "h1": ParagraphStyle("h1", parent=base, fontName=bold, fontSize=15, leading=20, textColor=BLUE,
                             spaceBefore=10, spaceAfter=6, keepWithNext=1),
        "h2": ParagraphStyle("h2", parent=base, fontName=bold, fontSize=11, leading=15, spaceBefore=6, spaceAfter=3,
                             keepWithNext=1),
        "kpi_value": ParagraphStyle("kpi_value", parent=base, fontName=bold, fontSize=14, leading=18,
                                    alignment=TA_CENTER, textColor=PURPLE),
        "kpi_label": ParagraphStyle("kpi_label", parent=base, fontSize=8, leading=10, alignment=TA_CENTER,
                                    textColor=MUTED),
    }


def _p(text: Any, style: ParagraphStyle) -> Paragraph:
    return Paragraph(escape(str(text)), style)


def _fmt(value: Any, digits: int = 4, percent: bool = False) -> str:
    if value is None:
        return "없음"
    return f"{100 * value:.2f}%" if percent else f"{value:.{digits}f}"


def _p_text(p: float | None) -> str:
    return "없음" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")


def _assumptions_line(assumptions: AssumptionsDoc) -> str:
    return (f"금액 가정: 월 노출 {assumptions.monthly_impressions:,}회, CPM {assumptions.cpm_krw:,.0f}원, "
            f"전환율 {100 * assumptions.conversion_rate:.1f}%, 전환 가치 {assumptions.conversion_value_krw:,.0f}원; "
            "범위는 모델이 고른 검증 노출의 CTR(정밀도) Wilson 95% 구간에서 나옵니다.")


def _table(rows: list[list[Any]], widths: list[float], header: bool = True) -> Table:
    table = Table(rows, colWidths=widths, repeatRows=1 if header else 0)
    style = [
        ("GRID", (0, 0), (-1, -1), 0.4, LINE),
        ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        ("TOPPADDING", (0, 0), (-1, -1), 3),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
    ]
    if header:
        style.append(("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eef2ff")))
    table.setStyle(TableStyle(style))
    return table


def _image(png: bytes, width: float) -> Image:
    image = Image(io.BytesIO(png))
    image.drawHeight = image.drawHeight * width / image.drawWidth
    image.drawWidth = width
    return image


def _cell_color(value: float) -> colors.Color:
    """Blue (-1) through white (0) to red (+1), as in the usual RdBu correlation scale."""
    value = max(-1.0, min(1.0, value))
    end = (0.84, 0.19, 0.15) if value > 0 else (0.13, 0.40, 0.67)
    t = abs(value)
    return colors.Color(*(1 + (e - 1) * t for e in end))


def _heatmap(correlation: Correlation, width: float, st: dict[str, ParagraphStyle], limit: int = 14) -> list[Any]:
    """The correlation matrix as a coloured table: vector, crisp, and its numbers stay searchable text."""
    names = correlation.features[:limit]
    matrix = [row[: len(names)] for row in correlation.matrix[: len(names)]]
    label_w = 40 * mm
    cell_w = (width - label_w) / len(names)
    rows = [[""] + [str(i + 1) for i in range(len(names))]]
    for i, name in enumerate(names):
        label = correlation.names[i] if i < len(correlation.names) else name
        rows.append([_p(f"{i + 1}. {label}", st["cell"])] + [f"{v:.2f}" for v in matrix[i]])
    table = Table(rows, colWidths=[label_w] + [cell_w] * len(names), rowHeights=[12] + [16] * len(names))
    style = [
        ("GRID", (0, 0), (-1, -1), 0.3, colors.white),
        ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        ("ALIGN", (1, 0), (-1, -1), "CENTER"),
        ("FONTNAME", (1, 0), (-1, -1), st["cell"].fontName),
        ("FONTSIZE", (1, 0), (-1, -1), 6.5),
    ]
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            style.append(("BACKGROUND", (j + 1, i + 1), (j + 1, i + 1), _cell_color(value)))
            if abs(value) > 0.6:
                style.append(("TEXTCOLOR", (j + 1, i + 1), (j + 1, i + 1), colors.white))
    table.setStyle(TableStyle(style))
    note = _p("피어슨 상관계수 (파랑 -1 ~ 흰색 0 ~ 빨강 +1). 열 번호는 왼쪽 변수 번호와 같습니다.", st["small"])
    return [table, note]


def _correlation_section(correlation: Correlation | None, charts_on: bool, width: float,
                         st: dict[str, ParagraphStyle]) -> list[Any]:
    """The correlated pairs (or that none reaches the threshold), then the heatmap when it shows something."""
    story: list[Any] = [_p(HEADINGS["correlation"], st["h1"])]
    if correlation is None:
        story.append(_p("상관관계 분석 결과가 없습니다.", st["body"]))
        return story
    c = correlation
    if c.pairs_known and c.pairs:
        story.append(_p(f"|r| ≥ {c.threshold:g}인 변수 쌍 {len(c.pairs)}개 (상관이 강한 순, 최대 10개). 상관이 큰 두 변수는 "
                        "효과를 나눠 가지므로 한쪽의 중요도나 p-value만 보고 다른 쪽을 버리지 마세요.", st["body"]))
        rows = [[_p(h, st["cell_bold"]) for h in ("변수 1", "변수 2", "상관계수 r")]]
        for pair in c.pairs[:10]:
            rows.append([_p(f"{pair.names[0]} ({pair.features[0]})", st["cell"]),
                         _p(f"{pair.names[1]} ({pair.features[1]})", st["cell"]), _p(f"{pair.r:+.2f}", st["cell"])])
        story.append(_table(rows, [width * 0.42, width * 0.42, width * 0.16]))
    elif c.pairs_known:
        story.append(_p(f"분석한 변수 중 |r| ≥ {c.threshold:g}인 쌍은 없습니다 (상위 변수 사이 최대 |r| = "
                        f"{c.max_abs_off_diagonal:.2f}). 변수들이 서로 거의 독립이라 각 변수의 효과를 따로 읽어도 "
                        "됩니다.", st["body"]))
    else:
        story.append(_p(f"상위 {len(c.features)}개 변수 사이 상관계수의 최대 절댓값은 {c.max_abs_off_diagonal:.2f}입니다 "
                        "(상관 쌍 목록이 없는 이전 형식의 분석).", st["body"]))
    if c.rows:
        story.append(_p(f"피어슨 상관계수, {c.rows:,}행 기준. 행동 시퀀스(seq)는 길이로 계산했습니다.", st["small"]))
    story = [KeepTogether(story)]  # the heading, the pairs and their note on one page (at most 10 rows)
    if charts_on:
        story.append(_p(HEADINGS["heatmap"], st["h2"]))
        threshold = c.threshold if c.threshold is not None else 0.3
        if c.max_abs_off_diagonal >= min(threshold, 0.1):
            story += _heatmap(c, width, st)
        else:
            story.append(_p(f"상위 {len(c.features)}개 변수 사이의 상관계수가 모두 |r| < {min(threshold, 0.1):g}라 "
                            "히트맵을 생략했습니다 (모든 칸이 0에 가까운 그림은 정보가 없습니다).", st["body"]))
    return story


@dataclass
class PdfInputs:
    report: ReportDoc
    curve: list[dict[str, Any]]
    correlation: Correlation | None


def metric_rows(metrics: ModelMetrics, strength: ModelStrengthDoc) -> list[tuple[str, str, str]]:
    """The report's metric table: (label, value, meaning) for every ModelMetrics field marked ``report``,
    in the model's order; accuracy, AUC and AP say what they are measured against (``strength``)."""
    ci, lift = strength.auc_ci, strength.ap_lift
    against = {
        "val_accuracy": f"모두 '클릭 안 함'으로 답해도 {_fmt(strength.majority_baseline, percent=True)} (기준). "
                        "클릭이 드물어 평가에 쓰지 않음",
        "auc": "클릭/비클릭 순위 구분력 (0.5 = 무작위). "
               + (f"95% CI {ci[0]:.3f}~{ci[1]:.3f} ({strength.auc_ci_method})" if ci else "95% 신뢰구간 알 수 없음"),
        "ap": f"무작위 기준 = 검증 클릭률 {_fmt(strength.base_rate, percent=True)}"
              + (f", AP는 그 {lift:.1f}배" if lift is not None else ""),
    }
    values = metrics.values()
    return [(info.label, _fmt(values[name], info.digits, percent=info.percent), against.get(name, info.meaning))
            for name, info in type(metrics).described().items() if info.report]


def render_pdf(inputs: PdfInputs, options: PdfOptions = PdfOptions()) -> bytes:
    from . import charts  # matplotlib: imported by the first report, not at the reporter's start

    regular, bold = register_pdf_fonts()
    st = _styles(regular, bold)
    report = inputs.report
    assumptions, strength = report.assumptions, report.model_strength
    width = A4[0] - 36 * mm
    story: list[Any] = [PageBreak()]  # page 1 is drawn on the canvas (title page)

    # -- executive summary: the verdict, AUC and AP lead, the narrative follows
    verdict = strength.verdict
    story.append(_p(HEADINGS["summary"], st["h1"]))
    story.append(Paragraph(
        f'<font color="{VERDICT_COLORS[verdict]}"><b>모델 신뢰도: '
        f'{escape(strength.verdict_ko)}</b></font> · {escape(auc_text(strength))} · '
        f'{escape(ap_text(strength))}', st["body"]))
    story.append(Spacer(1, 4))
    story.append(_p(report.summary, st["body"]))
    story.append(Spacer(1, 6))
    money_range = money_range_text(report)
    ci = strength.auc_ci
    kpis = [
        ("모델 신뢰도", strength.verdict_ko),
        ("ROC AUC (95% CI)", f"{_num(strength.auc)}"
                            + (f"<br/><font size=8>{ci[0]:.3f}~{ci[1]:.3f}</font>" if ci else "")),
        ("AP (기준 클릭률)", f"{_num(strength.ap)}"
                         + (f"<br/><font size=8>기준 {100 * strength.base_rate:.2f}%</font>"
                            if strength.base_rate is not None else "")),
        ("월 매출 변화 (95% 범위, 추정)", money_range.replace(" ~ ", "<br/>~ ") if money_range else "추정하지 않음"),
    ]
    story.append(_table(
        [[Paragraph(v, st["kpi_value"]) for _, v in kpis], [_p(k, st["kpi_label"]) for k, _ in kpis]],
        [width / len(kpis)] * len(kpis), header=False,
    ))
    accuracy = accuracy_text(strength)
    if accuracy:
        story.append(_p(f"{accuracy}: 클릭이 드물어 정확도는 모델 평가에 쓰지 않습니다.", st["small"]))
    if money_range:
        story.append(_p(_assumptions_line(assumptions), st["small"]))
        spend_roi = spend_roi_text(report)
        if spend_roi:
            story.append(_p(spend_roi, st["small"]))
    else:
        story.append(_p(f"금액: {assumptions.reason or '추정하지 않았습니다.'}", st["small"]))
    story.append(_p(f"문장: {writer_label(report)}. 숫자는 모두 계산값입니다.", st["small"]))

    # -- model performance
    data, training = report.data, report.training
    story.append(_p(HEADINGS["performance"], st["h1"]))
    rows = [[_p(h, st["cell_bold"]) for h in ("지표", "값", "의미")]]
    for label, value, meaning in metric_rows(report.metrics, strength):
        rows.append([_p(label, st["cell"]), _p(value, st["cell_bold"]), _p(meaning, st["cell"])])
    story.append(_table(rows, [width * 0.3, width * 0.17, width * 0.53]))
    if strength.models:
        story.append(_p("학습한 모델 (같은 검증 데이터)", st["h2"]))
        rows = [[_p(h, st["cell_bold"]) for h in ("모델", "ROC AUC", "95% 신뢰구간 (DeLong)", "AP")]]
        for model in strength.models:
            low, high = model.auc_ci_low, model.auc_ci_high
            rows.append([_p(model.label + (" (챔피언)" if model.champion else ""), st["cell"]),
                         _p(_fmt(model.auc), st["cell"]),
                         _p("없음" if low is None or high is None else f"{low:.4f} ~ {high:.4f}", st["cell"]),
                         _p(_fmt(model.ap), st["cell"])])
        story.append(_table(rows, [width * 0.34, width * 0.18, width * 0.3, width * 0.18]))
        comparison = strength.comparison
        if comparison is not None:
            story.append(_p(
                f"AUC 차이 (LightGBM - LSTM+MLP) {comparison.difference:+.4f}, 95% CI "
                f"{comparison.ci_low:+.4f} ~ {comparison.ci_high:+.4f}, DeLong 대응 검정 p="
                f"{comparison.p_value:.3g}.", st["small"]))
    if data.rows:
        story.append(_p(
            f"데이터 {data.rows:,}행, 클릭 {data.clicks:,}회 (CTR {data.ctr:.2f}%). "
            f"에폭 {training.best_epoch}/{training.epochs_run} 채택, 학습 {training.duration_s:.0f}초.",
            st["small"]))

    # -- training curves
    if options.include_charts:
        story.append(_p(HEADINGS["curves"], st["h1"]))
        if inputs.curve:
            story.append(_image(charts.training_curves(inputs.curve), width))
        else:
            story.append(_p("학습 곡선 데이터가 없습니다 (에폭별 진행 이벤트를 받지 못했습니다).", st["body"]))

    # -- key features: the model's use, the held-out evidence and the direction of effect
    features = [
        Feature(name=f.name, description=f.description, group=f.group, importance=f.importance, p_value=f.p_value,
                ci_low=f.ci[0], ci_high=f.ci[1], p_value_raw=f.p_value_raw, auc_drop=f.auc_drop,
                auc_drop_low=f.auc_drop_ci[0] if f.auc_drop_ci is not None else None,
                auc_drop_high=f.auc_drop_ci[1] if f.auc_drop_ci is not None else None,
                direction_ko=f.direction_ko, effect_ko=f.effect_ko)
        for f in report.top_features
    ]
    story.append(_p(HEADINGS["features"], st["h1"]))
    if features:
        significant = [f for f in features if f.significant]
        story.append(_p(
            f"중요도는 모델이 변수를 얼마나 쓰는지(0~1), AUC 감소와 보정 p는 모델이 학습하지 않은 검증 데이터에서 그 "
            f"변수를 섞었을 때 순위 구분력이 얼마나 떨어지는지의 검정입니다. 보정 p < 0.05인 {len(significant)}개(*)만 "
            "클릭 요인으로 보고, 효과 방향은 어떤 값에서 클릭이 늘어나는지입니다.", st["small"]))
        rows = [[_p(h, st["cell_bold"]) for h in ("순위", "변수", "그룹", "중요도 (95% CI)", "AUC 감소 (95% CI)",
                                                 "보정 p", "효과 방향")]]
        for rank, f in enumerate(features, 1):
            style = st["cell_bold"] if f.significant else st["cell"]
            drop = ("없음" if f.auc_drop is None else f"{f.auc_drop:.4f}"
                    + (f"<br/>{f.auc_drop_low:.4f}~{f.auc_drop_high:.4f}"
                       if f.auc_drop_low is not None and f.auc_drop_high is not None else ""))
            direction = escape(f.direction_ko or "없음")
            if f.effect_ko:
                direction += f'<br/><font color="#6b7280">{escape(f.effect_ko)}</font>'
            label = escape(f.name) if f.description == f.name else f"{escape(f.description)}<br/>({escape(f.name)})"
            rows.append([_p(rank, st["cell"]), Paragraph(label, style), _p(f.group or "-", st["cell"]),
                         Paragraph(f"{f.importance:.3f}<br/>{f.ci_low:.2f}~{f.ci_high:.2f}", st["cell"]),
                         Paragraph(drop, st["cell"]),
                         _p(_p_text(f.p_value) + (" *" if f.significant else ""), style),
                         Paragraph(direction, st["cell"])])
        story.append(_table(rows, [w * width for w in (0.06, 0.2, 0.1, 0.13, 0.15, 0.1, 0.26)]))
        story.append(_p("* 보정 p < 0.05 (모든 변수에 Benjamini-Hochberg 보정). 그 밖의 변수는 모델이 썼더라도 "
                        "클릭 요인으로 보지 않습니다.", st["small"]))
        if options.include_charts:
            story.append(KeepTogether([_p(HEADINGS["feature_chart"], st["h2"]),
                                       _image(charts.feature_importance(features), width)]))
    else:
        story.append(_p("변수 중요도 결과가 없습니다.", st["body"]))

    # -- correlations: the pairs (or none above the threshold), the heatmap with the charts
    story += _correlation_section(inputs.correlation, options.include_charts, width, st)

    # -- segments
    segments = report.segments
    heading: list[Any] = [_p(HEADINGS["segments"], st["h1"])]  # kept on the page of the first table
    if segments.available:
        for finding in segments.findings:
            rows = [[_p(h, st["cell_bold"]) for h in ("구분", "세그먼트", "CTR (95% 범위)", "평균 대비", "노출 수",
                                                     "p-value", "보정 p (BH)")]]
            for kind, items in (("상위", finding.best), ("하위", finding.worst)):
                for s in items:
                    interval = (f"<br/>{s.ctr_low:.2f}~{s.ctr_high:.2f}%"
                                if s.ctr_low is not None and s.ctr_high is not None else "")
                    mark = " *" if s.significant else ""  # Benjamini-Hochberg adjusted p < 0.05
                    rows.append([_p(kind, st["cell"]), _p(s.label, st["cell"]),
                                 Paragraph(f"{s.ctr:.2f}%{interval}", st["cell"]),
                                 _p(f"{s.lift:.2f}배", st["cell"]), _p(f"{s.rows:,}", st["cell"]),
                                 _p(_p_text(s.p_value), st["cell"]),
                                 _p(_p_text(s.p_adjusted) + mark, st["cell_bold" if mark else "cell"])])
            story.append(KeepTogether(heading + [
                _p(f"{finding.title} (평균 {finding.base_ctr:.2f}%)", st["h2"]),
                _table(rows, [w * width for w in (0.08, 0.26, 0.16, 0.11, 0.13, 0.12, 0.14)]),
            ]))
            heading = []
    story += heading
    if segments.available:
        tests = max((f.tests_in_family for f in segments.findings), default=0)
        story.append(_p(f"* 보정 p < 0.05: 세그먼트 검정 {tests}개 전체에 Benjamini-Hochberg 보정을 한 뒤에도 유의. "
                        "유의하지 않은 세그먼트로는 실행 과제를 만들지 않습니다.", st["small"]))
    if not segments.available:
        story.append(_p("세그먼트 데이터를 사용할 수 없습니다 (데이터 프로필에 시간대·고객군·지면 통계가 없습니다).",
                        st["body"]))

    # -- insights
    if options.include_insights:
        story.append(_p(HEADINGS["insights"], st["h1"]))
        for insight in report.ai_insights:
            block = [Paragraph(f'<font color="{TYPE_COLORS[insight.type]}">[{TYPE_LABELS[insight.type]}]</font> '
                               f'{escape(insight.title)}', st["h2"]),
                     _p(insight.message, st["body"])]
            block += [_p(f"• {d}", st["cell"]) for d in insight.details]
            if insight.action:
                block.append(Paragraph(f"<b>권장 조치:</b> {escape(insight.action)}", st["cell"]))
            story.append(KeepTogether(block))

    # -- action plan
    if options.include_action_plan:
        story.append(_p(HEADINGS["actions"], st["h1"]))
        plan = report.action_plan
        if plan:
            rows = [[_p(h, st["cell_bold"]) for h in ("우선순위", "과제", "내용", "예상 효과", "기간", "비용")]]
            for a in plan:
                rows.append([
                    Paragraph(f'<font color="{a.color}">{PRIORITY_LABELS[a.priority]}</font>', st["cell_bold"]),
                    _p(a.title, st["cell_bold"]), _p(a.description, st["cell"]),
                    _p(f"{a.impact:+.1f}%", st["cell"]), _p(a.duration, st["cell"]), _p(a.cost, st["cell"]),
                ])
            story.append(_table(rows, [w * width for w in (0.09, 0.17, 0.42, 0.1, 0.1, 0.12)]))
            story.append(_p(report.priority_rule or PRIORITY_RULE, st["small"]))
        else:
            story.append(_p("데이터에서 근거를 찾은 실행 과제가 없습니다.", st["body"]))
        if verdict == "weak":
            story.append(_p("모델 신뢰도가 '약함'이라 모델에 근거한 과제(타겟팅, 재보정)는 싣지 않았습니다. 먼저 "
                            "클릭이 더 많은 데이터, 더 많은 행, 클릭과 관련 있을 만한 변수를 확보해 다시 학습하세요.",
                            st["body"]))

    # -- method notes
    story.append(_p(HEADINGS["method"], st["h1"]))
    champion = strength.champion_label or "LSTM+MLP"
    notes = [
        f"모델: 챔피언 {champion}. LSTM+MLP는 행동 시퀀스(seq)를 LSTM으로, 나머지 변수를 MLP로 학습하고, LightGBM은 "
        "같은 데이터의 경사 부스팅 도전 모델입니다. 검증 AUC가 높은 쪽이 챔피언이며, 검증 지표는 다운샘플링하지 "
        "않은 원래 분포의 검증 데이터에서 계산했습니다.",
        "모델 신뢰도: 검증 AUC의 95% 신뢰구간(DeLong, 없으면 Hanley-McNeil 근사) 하한이 0.55 이하이거나 AP가 기준 "
        "클릭률의 1.5배 미만이면 '약함', 하한이 0.70 이상이고 AP가 3배 이상이면 '강함', 그 외는 '사용 가능'. "
        "'약함'이면 금액 추정과 모델에 근거한 실행 과제를 싣지 않습니다.",
        "정확도·정밀도·재현율·F1은 판정 임계값 기준입니다. 클릭이 드물어 모두 '클릭 안 함'으로 답해도 정확도가 "
        "높으므로, 정확도는 그 기준과 나란히만 보여 주고 AUC, AP, 로그 손실, 보정 비율로 판단합니다.",
        "변수 중요도: 챔피언 모델의 기여도(LightGBM은 TreeSHAP, LSTM+MLP는 LIME)의 평균 절댓값을 가장 큰 값이 1이 "
        "되게 나눈 값이며, 구간은 행 부트스트랩 95% 구간입니다. 변수의 p-value는 모델이 학습하지 않은 검증 데이터에서 "
        "그 변수를 섞었을 때 ROC AUC가 떨어지는지에 대한 단측 순열 검정(귀무가설: 섞어도 AUC가 떨어지지 않음, 표준오차는 "
        "DeLong)이고, 모든 변수에 Benjamini-Hochberg 보정을 한 값(보정 p)입니다. 보정 p < 0.05인 변수만 클릭 요인으로 "
        "부르며, 요인의 순서는 AUC 감소의 95% 하한(효과 크기 × 신뢰도)입니다. 효과 방향은 어떤 값에서 모델의 클릭 "
        "예측이 오르는지와 그 값의 실제 CTR입니다.",
        "변수의 한국어 이름·그룹은 변수 이름 매핑(feature_name_mapping)에서 옵니다: 기본 제공 매핑에 사용자가 올린 "
        "매핑(PUT /api/feature-mapping)을 덮어쓴 것입니다.",
        "상관관계: 피어슨 상관계수, |r|이 기준(설정 CTROPS_EXPLAINER_CORRELATION_THRESHOLD) 이상인 변수 쌍을 모두 "
        "나열합니다.",
        report.priority_rule or PRIORITY_RULE,
        "세그먼트 p-value는 해당 세그먼트와 나머지 데이터의 CTR 차이에 대한 두 비율 z-검정이며, 모든 표의 검정 "
        "전체에 Benjamini-Hochberg 보정(거짓 발견률 5%)을 했습니다. 세그먼트 CTR 범위는 Wilson 95% 구간입니다. "
        "요일은 ISO 번호(1=월요일 ... 7=일요일)로 읽었습니다.",
    ]
    if assumptions.computable:
        notes.append(
            _assumptions_line(assumptions)
            + f" 모델 타겟팅 비중 {100 * assumptions.effective_targeted_share:.1f}% "
            f"(설정 {100 * assumptions.targeted_share:.0f}%, 모델이 고르는 트래픽 {100 * assumptions.flagged_share:.1f}%). "
            f"타겟 CTR = 정밀도 {100 * assumptions.targeted_ctr:.2f}% (Wilson 95% 구간 "
            f"{100 * assumptions.targeted_ctr_low:.2f}~{100 * assumptions.targeted_ctr_high:.2f}%, 모델이 고른 검증 노출 "
            f"약 {assumptions.targeted_rows:,.0f}회 중 클릭 약 {assumptions.targeted_clicks:,.0f}회), "
            f"기준 CTR {100 * assumptions.base_ctr:.2f}%. 월 매출 변화 = 모델 매출 - 기준 매출(같은 비용), "
            "ROI = (매출 - 비용) / 비용, ROI 변화는 %p. 모든 금액은 타겟 CTR 구간의 양 끝에서 계산한 범위입니다. "
            f"CPC 구매 가정 {assumptions.cpc_krw:,.0f}원 대비 유효 CPC "
            f"{assumptions.effective_cpc_base_krw:,.0f}원 → {assumptions.effective_cpc_model_krw:,.0f}원."
        )
    else:
        notes.append(f"금액 추정 없음: {assumptions.reason or '입력 부족'}")
    notes.append(f"보고서 문장 작성: {report.model_used} "
                 f"({'LLM' if report.narrative_source == 'llm' else '규칙 기반'}). 숫자는 모두 계산값입니다.")
    notes.append(f"실행 ID: {report.run_id}, 파일 ID: {training.file_id}. "
                 f"생성 시각: {seoul_time(report.generated_at)} (Asia/Seoul). "
                 "글꼴: 나눔고딕 (SIL Open Font License 1.1).")
    story += [_p(f"• {n}", st["body"]) for n in notes]

    title = _title_page(report, regular, bold)
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer, pagesize=A4, leftMargin=18 * mm, rightMargin=18 * mm, topMargin=20 * mm, bottomMargin=18 * mm,
        title=f"CTR 예측 AI 마케팅 리포트 - {report.experiment_name}",
        author="SK AX · SK Planet AIOps", subject="CTR 예측 모델 보고서",
    )
    doc.build(story, onFirstPage=title, onLaterPages=_later_pages(regular))
    return buffer.getvalue()


def _title_page(report: ReportDoc, regular: str, bold: str):
    def draw(canvas, _doc) -> None:
        page_w, page_h = A4
        canvas.saveState()
        canvas.linearGradient(0, page_h, page_w, 0, (BLUE, PURPLE), extend=True)
        canvas.setFillColor(colors.white)
        canvas.setFont(bold, 14)
        canvas.drawString(24 * mm, page_h - 30 * mm, "SK AX  ·  SK Planet AIOps")
        canvas.setFont(bold, 28)
        canvas.drawString(24 * mm, page_h / 2 + 30 * mm, "CTR 예측 AI 마케팅 리포트")
        canvas.setFont(regular, 13)
        canvas.drawString(24 * mm, page_h / 2 + 16 * mm, "광고 클릭 예측 모델 성과와 실행 전략")
        strength = report.model_strength
        canvas.setFont(bold, 16)
        canvas.drawString(24 * mm, page_h / 2 - 4 * mm, f"모델 신뢰도: {strength.verdict_ko}")
        canvas.setFont(regular, 10.5)
        money_range = money_range_text(report)
        lines = [
            auc_text(strength),
            ap_text(strength),
            f"월 매출 변화 (95% 범위, 추정): {money_range}" if money_range else "금액 추정: 하지 않음",
            f"실험: {report.experiment_name}",
            f"작성: {writer_label(report)}",
            f"생성 시각: {seoul_time(report.generated_at)}",
        ]
        for index, line in enumerate(lines):
            _draw_fitted(canvas, line, 24 * mm, page_h / 2 - 14 * mm - index * 7 * mm, regular, 10.5, page_w - 48 * mm)
        canvas.setFont(regular, 8)
        canvas.drawString(24 * mm, 16 * mm, "금액은 보고서에 적힌 가정에 따른 추정 범위입니다. 시각은 한국 표준시(KST).")
        canvas.restoreState()

    return draw


def _draw_fitted(canvas, text: str, x: float, y: float, font: str, size: float, max_width: float) -> None:
    """One line of the cover within ``max_width``: a smaller font first (down to 7 pt), then cut with '…'."""
    while size > 7 and canvas.stringWidth(text, font, size) > max_width:
        size -= 0.5
    if canvas.stringWidth(text, font, size) > max_width:
        while text and canvas.stringWidth(text + "…", font, size) > max_width:
            text = text[:-1]
        text += "…"
    canvas.setFont(font, size)
    canvas.drawString(x, y, text)


def _later_pages(regular: str):
    def draw(canvas, doc) -> None:
        page_w, page_h = A4
        canvas.saveState()
        band = canvas.beginPath()
        band.rect(0, page_h - 6 * mm, page_w, 6 * mm)
        canvas.clipPath(band, stroke=0, fill=0)  # the gradient fills the clip region only
        canvas.linearGradient(0, page_h, page_w, page_h, (BLUE, PURPLE), extend=True)
        canvas.restoreState()
        canvas.saveState()
        canvas.setFont(regular, 7.5)
        canvas.setFillColor(MUTED)
        canvas.drawString(18 * mm, 10 * mm, "SK AX · SK Planet AIOps  |  CTR 예측 AI 마케팅 리포트")
        canvas.drawRightString(page_w - 18 * mm, 10 * mm, f"{doc.page}")
        canvas.restoreState()

    return draw
