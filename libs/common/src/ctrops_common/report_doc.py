"""The money and verdict part of a run's report document (``runs/<run_id>/report.json``), typed.

The reporter owns the money estimate of a run: it writes the verdict of model strength,
the money figures (a point and a 95% range) with their assumptions, and the segment
findings into report.json. Every other surface (the gateway's marketer dashboard,
``make demo``) reads them back through these models instead of computing its own, so
one run tells one story everywhere. Only the keys those readers need are modelled;
the rest of the document is ignored here (``extra="ignore"``).

Keys are camelCase in the document except inside ``segments`` (snake_case); both
spellings are accepted.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

SIGNIFICANCE = 0.05  # Benjamini-Hochberg adjusted p below which a segment is a finding

Verdict = Literal["strong", "usable", "weak"]
Pair = tuple[float, float]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="ignore", alias_generator=to_camel, populate_by_name=True, frozen=True)


class ModelStrengthDoc(_Doc):
    """The champion's strength verdict and the evidence it rests on."""

    verdict: Verdict
    verdict_ko: str
    reasons: list[str] = []
    champion: str | None = None
    champion_label: str | None = None
    auc: float | None = None
    auc_ci: Pair | None = None
    auc_ci_method: str | None = None
    ap: float | None = None
    base_rate: float | None = None
    ap_lift: float | None = None
    val_rows: int | None = None
    val_clicks: int | None = None


class MoneyRangeDoc(_Doc):
    """Every money figure at the low and high end of the 95% interval of the targeted CTR."""

    additional_revenue_krw: Pair
    revenue_change_percent: Pair
    roi_change_points: Pair
    roi_model_percent: Pair | None = None
    targeted_ctr: Pair | None = None
    clicks_model: Pair | None = None
    level: float = 0.95


class AssumptionsDoc(_Doc):
    """The inputs of the money figures (settings of the reporter) and the point figures built on them."""

    currency: str = "KRW"
    computable: bool
    reason: str | None = None
    monthly_impressions: int
    cpm_krw: float
    cpc_krw: float
    conversion_rate: float
    conversion_value_krw: float
    targeted_share: float
    effective_targeted_share: float | None = None
    base_ctr: float | None = None
    targeted_ctr: float | None = None
    model_ctr: float | None = None
    monthly_spend_krw: float | None = None
    clicks_base: float | None = None
    clicks_model: float | None = None
    revenue_base_krw: float | None = None
    revenue_model_krw: float | None = None
    roi_base_percent: float | None = None
    roi_model_percent: float | None = None


class SegmentDoc(_Doc):
    label: str
    rows: int
    clicks: int
    ctr: float  # percent
    ctr_low: float | None = None
    ctr_high: float | None = None
    lift: float
    p_value: float | None = None
    p_adjusted: float | None = None  # Benjamini-Hochberg across every segment test of the report

    @property
    def significant(self) -> bool:
        return self.p_adjusted is not None and self.p_adjusted < SIGNIFICANCE


class SegmentFindingDoc(_Doc):
    dimension: str  # hour, day_of_week, inventory_id, age_group_gender
    title: str
    base_ctr: float  # percent
    best: list[SegmentDoc] = []
    worst: list[SegmentDoc] = []
    tests_in_family: int = 0


class SegmentsDoc(_Doc):
    available: bool = False
    findings: list[SegmentFindingDoc] = []


# Which table names "the" top segment: the audience tables first, then placement and time.
TOP_SEGMENT_ORDER = ("age_group_gender", "inventory_id", "day_of_week", "hour")


class ReportDoc(_Doc):
    """The part of report.json that carries the run's verdict, money and segment findings."""

    run_id: str
    generated_at: str | None = None
    model_strength: ModelStrengthDoc
    roi_increase: float  # percentage points; 0 (not a claim) when no estimate is supported
    additional_revenue: float  # KRW per month, the point of the range; 0 when none
    revenue_change_percent: float = 0.0
    money_range: MoneyRangeDoc | None = None
    assumptions: AssumptionsDoc
    segments: SegmentsDoc = SegmentsDoc()

    @property
    def has_money(self) -> bool:
        """True when the report supports a money estimate: never for a weak model, always with a range."""
        return (self.assumptions.computable and self.money_range is not None
                and self.model_strength.verdict != "weak")

    def top_segment(self, dimension: str | None = None) -> tuple[SegmentFindingDoc, SegmentDoc] | None:
        """The report's top segment: the best segment of a table that holds after the
        Benjamini-Hochberg correction and whose CTR interval's lower end beats the table's
        average (the reporter's bar for a segment action), audience tables first. None when
        no segment holds: the data did not show one."""
        order = (dimension,) if dimension else TOP_SEGMENT_ORDER
        by_dimension = {f.dimension: f for f in self.segments.findings}
        for name in order:
            finding = by_dimension.get(name)
            if finding is None:
                continue
            holding = [s for s in finding.best if s.significant and (s.ctr_low or 0.0) > finding.base_ctr > 0]
            if holding:
                return finding, holding[0]
        return None
