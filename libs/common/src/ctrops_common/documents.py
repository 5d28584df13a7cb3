"""The files services hand each other, typed: ingest's profile, the explainer's explanation, the report.

One model per file, next to the helper that names its place in the file store:

- ``Profile`` — ``files/<file_id>/profile.json`` (``dataset.profile_path``), written by ingest,
  read by the reporter (segment findings, totals).
- ``AudienceHighlights`` — ``files/<file_id>/highlights.json`` (``dataset.highlights_path``),
  written by ingest beside the profile (segments and hours with their Wilson intervals, the best
  hours, the data's insight cards), served by the gateway's marketer dashboard as it is.
- ``Explanation`` — ``runs/<run_id>/explanation.json`` (``dataset.explanation_path``), written by
  the explainer, read by the reporter (features, correlation) and the gateway's explain routes.
- ``ReportDoc`` — ``runs/<run_id>/report.json`` (``dataset.report_path``), written by the reporter,
  served by the gateway (``GET /api/report/ai/{run_id}``) and read by its dashboards and
  ``make demo``. Its keys are the frontend's (camelCase, docs/reports.md) except where the contract
  spells them otherwise (``model_used``, the snake_case ``metrics``, ``segments`` and ``models``).

Writers call ``write_document`` (``model_dump_json``); readers call ``read_document``
(``model_validate_json``) and use attributes, never keys. The models forbid fields they do not
declare, so a writer that adds a key without adding it here fails its round-trip test instead of
leaving readers to guess. No NaN or infinity is accepted (JSON cannot carry them).

Two spellings of one value (``pValue`` beside ``p_value``, kept for readers of the files on
disk) are one field here: ``_Document._copies`` names the copy, which is checked on reading and
written again on writing.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, TypeVar, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    field_serializer,
    model_serializer,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from .dataset import explanation_path, highlights_path, profile_path, report_path
from .events import AucComparison
from .model_metrics import ModelMetrics
from .storage import FileStore

__all__ = [
    "AudienceHighlights", "AudienceSegment", "HourSlot", "ColumnStats", "Correlation", "CorrelatedPair", "Effect", "ExplainedFeature", "Explanation",
    "ExplanationMethod", "ExplanationSample", "PairSegment", "Permutation", "PermutationFeature", "Profile",
    "ProfileSegments", "ReportDoc", "SeqStats", "ValueSegment", "explanation_path", "highlights_path", "profile_path",
    "read_document", "report_path", "write_document",
]

D = TypeVar("D", bound=BaseModel)


class _Document(BaseModel):
    """Base of the stored documents: unknown keys are an error, numbers are finite."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True,
                              serialize_by_alias=True, protected_namespaces=())

    # A key written as a copy of another (copy -> original, both as spelled in the file).
    _copies: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _fold_copies(cls, data: Any) -> Any:
        if not cls._copies or not isinstance(data, dict):
            return data
        data = dict(data)
        for copy, original in cls._copies.items():
            if copy not in data:
                continue
            value = data.pop(copy)
            if original not in data:
                data[original] = value
            elif data[original] != value:
                raise ValueError(f"{copy!r} ({value!r}) differs from {original!r} ({data[original]!r})")
        return data

    # No return annotation: pydantic takes a wrap serializer's return type as the model's serialization
    # schema, so ``-> Any`` would document every document as ``{}`` (the gateway serves ReportDoc).
    @model_serializer(mode="wrap")
    def _write_copies(self, handler: Any):  # noqa: ANN202
        out = handler(self)
        for copy, original in self._copies.items():
            if isinstance(out, dict) and original in out:
                out[copy] = out[original]
        return out

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        """The copies are keys of the file too: documented beside their originals (always written, so
        required where the original is; accepted but optional on reading)."""
        schema = handler(core_schema)
        target = handler.resolve_ref_schema(schema)
        properties, required = target.get("properties", {}), target.get("required")
        for copy, original in cls._copies.items():
            if original in properties and copy not in properties:
                properties[copy] = {**properties[original], "description": f"The same value as `{original}`."}
                if handler.mode == "serialization" and required is not None and original in required:
                    required.append(copy)
        return schema


def write_document(store: FileStore, relative: str, document: BaseModel) -> None:
    """Store ``document`` as JSON at ``relative``, atomically."""
    store.write_bytes(relative, document.model_dump_json().encode())


def read_document(store: FileStore, relative: str, model: type[D]) -> D:
    """The document at ``relative`` as ``model``. Raises FileNotFoundError, or
    pydantic.ValidationError when the file does not match the model."""
    return model.model_validate_json(store.path(relative).read_bytes())


Pair = tuple[float, float]


# --- profile.json (ingest) ---------------------------------------------------------------


class ColumnStats(_Document):
    """One column of the upload: moments of its numbers (None where it has none) and what it is."""

    missing: int
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    kind: Literal["numeric", "categorical", "target", "sequence", "time"] | None = None
    not_numeric: int | None = None  # numeric: cells that were not numbers (treated as missing)
    invalid: int | None = None  # target, sequence, time: cells that could not be read
    categories: list[str] | None = None  # categorical: the first 50 labels, in code order
    distinct: int | None = None  # categorical: labels coded
    first: str | None = None  # time: the earliest and latest day (ISO, KST)
    last: str | None = None


class SeqStats(_Document):
    """Token counts of the valid ``seq`` cells (None when there are none)."""

    min_len: int | None = None
    median_len: float | None = None
    max_len: int | None = None
    mean_len: float | None = None


class ValueSegment(_Document):
    """Rows and clicks of one value of a column (hour, day of week, inventory id); ``ctr`` in percent."""

    value: float
    rows: int
    clicks: int
    ctr: float


class PairSegment(_Document):
    """Rows and clicks of one age group x gender pair; ``ctr`` in percent."""

    age_group: float
    gender: float
    rows: int
    clicks: int
    ctr: float


class ProfileSegments(_Document):
    """Segment tables (rows where the column is missing left out). Hours and weekdays are
    complete; inventory ids are the busiest ``max_segment_values``, age x gender the first."""

    hour: list[ValueSegment] = []
    day_of_week: list[ValueSegment] = []
    inventory_id: list[ValueSegment] = []
    age_group_gender: list[PairSegment] = []

    def table(self, dimension: str) -> list[ValueSegment] | list[PairSegment]:
        return getattr(self, dimension)


class Profile(_Document):
    """``files/<file_id>/profile.json`` (``profile_path``): statistics of an upload."""

    columns: dict[str, ColumnStats]
    seq: SeqStats
    segments: ProfileSegments

    @staticmethod
    def path(file_id: str) -> str:
        return profile_path(file_id)

    def totals(self) -> tuple[int, int] | None:
        """(rows, clicks) of the rows in the first non-empty segment table (hour first)."""
        for dimension in ("hour", "day_of_week", "inventory_id", "age_group_gender"):
            entries = self.segments.table(dimension)
            rows = sum(e.rows for e in entries)
            if rows:
                return rows, sum(e.clicks for e in entries)
        return None


# --- explanation.json (explainer) -------------------------------------------------------------


class _Effect(_Document):
    text: str
    text_ko: str


class NoEffect(_Effect):
    """The feature does not vary, or no value stands out."""

    kind: Literal["none"]


class ValuesEffect(_Effect):
    """A code-like feature: the values whose mean attribution is positive, and their observed click rates."""

    kind: Literal["values"]
    values: list[float]
    effects: dict[str, float] = {}  # mean attribution per code with enough rows
    ctr_named: float | None = None  # observed click rate (fraction) of rows holding the named values
    ctr_rest: float | None = None


class MonotoneEffect(_Effect):
    """A quantity: the sign of Spearman(value, attribution); ``mixed`` when |rho| < 0.1 (sign 0)."""

    kind: Literal["monotone", "mixed"]
    sign: Literal[-1, 0, 1]
    rho: float
    ctr_top_quartile: float | None = None  # observed click rates (fractions)
    ctr_bottom_quartile: float | None = None


class SequenceEffect(_Effect):
    """``seq``: which recent tokens raise or lower clicks, when known (LightGBM)."""

    kind: Literal["sequence"]
    tokens_raise: list[int] | None = None
    tokens_lower: list[int] | None = None


Effect = Union[NoEffect, ValuesEffect, MonotoneEffect, SequenceEffect]


class ExplainedFeature(_Document):
    """One feature: attribution importance with its interval, the held-out permutation test
    (``p_value`` is Benjamini-Hochberg adjusted, ``p_value_raw`` not) and the direction of effect.

    ``pValue`` is written beside ``p_value`` (the same number, the spelling of the API)."""

    _copies: ClassVar[dict[str, str]] = {"pValue": "p_value"}

    feature: str
    importance: float = Field(ge=0, le=1)
    p_value: float = Field(ge=0, le=1)
    p_value_raw: float = Field(ge=0, le=1)
    significant: bool
    ci: Pair
    description: str  # Korean name from the shipped mapping (readers apply the mapping in effect)
    direction: str
    direction_ko: str
    effect: Effect = Field(discriminator="kind")
    auc_drop: float
    auc_drop_se: float
    auc_drop_ci: Pair
    p_value_bootstrap: float
    mean_abs_attribution: float
    mean_attribution: float


class PermutationFeature(_Document):
    feature: str
    mean_drop: float
    se: float
    std_drop: float
    ci: Pair
    p_value: float  # adjusted
    p_value_raw: float
    importance: float  # drop relative to the largest drop


class Permutation(_Document):
    """The held-out permutation test of every feature, strongest AUC drop first."""

    metric: Literal["roc_auc"]
    rows: int
    clicks: int
    repeats: int
    bootstrap: int
    baseline: float  # the held-out AUC before shuffling
    features: list[PermutationFeature]
    significant_features: list[str]
    top10_overlap_with_attribution: float
    top10_overlap_with_lime: float  # the older name of the same number
    spearman_with_attribution: float
    significant_in_attribution_top10: int


class CorrelatedPair(_Document):
    features: tuple[str, str]
    r: float = Field(ge=-1, le=1)
    descriptions: tuple[str, str]


class Correlation(_Document):
    """Pearson matrix of the top features (``seq`` as ``seq_length``) and every pair at |r| >= threshold."""

    features: list[str]
    descriptions: list[str]
    matrix: list[list[float]]
    rows: int
    threshold: float
    pairs: list[CorrelatedPair]
    pairs_note: str
    max_abs_off_diagonal: float
    method: str

    @model_validator(mode="after")
    def _square(self) -> Correlation:
        k = len(self.features)
        if len(self.matrix) != k or any(len(row) != k for row in self.matrix):
            raise ValueError(f"the correlation matrix is not {k} x {k}")
        return self


class ExplanationSample(_Document):
    """Which rows each part of the explanation used. The ``lime`` fields only for an LSTM+MLP."""

    rows: int  # rows attributed
    clicked_rows: int
    validation_rows: int
    validation_clicks: int
    evaluation_rows: int
    evaluation_clicks: int
    permutation_rows: int
    permutation_clicks: int
    data_rows: int
    missing_columns: list[str]
    validation_split: float
    split_seed: int
    explained_rows: int | None = None
    clicked_explained_rows: int | None = None
    background_rows: int | None = None
    lime_samples: int | None = None
    lime_pilot_ratio: float | None = None
    lime_ratio: float | None = None
    categorical_features: list[str] | None = None
    mean_local_r2: float | None = None
    mean_probability: float | None = None


class ExplanationMethod(_Document):
    config: dict[str, int | float]  # the explainer's ExplainConfig
    attribution: Literal["treeshap", "lime"]
    test: str
    null: str
    correction: str
    interval: str
    definitions: dict[str, str]
    lime: str | None = None  # the LIME library, for an LSTM+MLP


class Explanation(_Document):
    """``runs/<run_id>/explanation.json`` (``explanation_path``): one run's champion explained.

    ``features`` holds every model feature, by importance; ``model_uri`` is None when the model
    was read from the file store's folder (``model_note`` says why, when a registered one failed)."""

    run_id: str
    file_id: str
    model_location: str
    model_uri: str | None = None
    model_version: int | None = None  # the registered version, when the URI names one
    model_note: str | None = None
    version: int
    created_at: str  # ISO 8601, UTC
    model_kind: Literal["lstm", "gbdt"]
    attribution: Literal["treeshap", "lime"]
    features: list[ExplainedFeature]
    significant_features: list[str]
    permutation: Permutation
    correlation: Correlation
    sample: ExplanationSample
    method: ExplanationMethod
    timings: dict[str, float]

    @staticmethod
    def path(run_id: str) -> str:
        return explanation_path(run_id)



# --- report.json (reporter) -----------------------------------------------------------------

SIGNIFICANCE = 0.05  # Benjamini-Hochberg adjusted p below which a segment is a finding

Verdict = Literal["strong", "usable", "weak"]


class _Camel(_Document):
    model_config = ConfigDict(alias_generator=to_camel)


class ModelSummaryDoc(_Document):
    """One model of the run as the report shows it (champion and challenger)."""

    kind: str
    label: str
    champion: bool
    auc: float | None = None
    auc_ci_low: float | None = None
    auc_ci_high: float | None = None
    ap: float | None = None


class ModelStrengthDoc(_Camel):
    """The champion's strength verdict and the evidence it rests on."""

    verdict: Verdict
    verdict_ko: str
    reasons: list[str]
    champion: str
    champion_label: str
    auc: float | None = None
    auc_ci: Pair | None = None
    auc_ci_method: str | None = None  # "DeLong", "Hanley-McNeil" or None (unknown)
    ap: float | None = None
    base_rate: float | None = None
    ap_lift: float | None = None
    val_rows: int | None = None
    val_clicks: int | None = None
    val_counts_estimated: bool = False
    accuracy: float | None = None
    majority_baseline: float | None = None
    models: list[ModelSummaryDoc] = []
    comparison: AucComparison | None = None  # paired DeLong test of the two models' AUCs


class MoneyRangeDoc(_Camel):
    """Every money figure at the low and high end of the 95% interval of the targeted CTR."""

    additional_revenue_krw: Pair | None
    revenue_change_percent: Pair | None
    roi_change_points: Pair | None
    roi_model_percent: Pair | None
    targeted_ctr: Pair | None
    clicks_model: Pair | None
    level: float
    method: str


class TopFeatureDoc(_Camel):
    """A feature of the report: importance, the held-out test and the direction of effect."""

    name: str
    description: str
    group: str
    importance: float
    p_value: float  # adjusted
    p_value_raw: float | None = None
    significant: bool
    ci: Pair
    auc_drop: float | None = None
    auc_drop_ci: Pair | None = None
    direction: str | None = None
    direction_ko: str | None = None
    effect_ko: str | None = None
    color: str


class CorrelatedPairDoc(_Document):
    features: tuple[str, str]
    names: tuple[str, str]  # Korean display names
    r: float


class CorrelationDoc(_Camel):
    threshold: float | None
    rows: int | None
    max_abs_off_diagonal: float
    pairs: list[CorrelatedPairDoc]


class InsightDoc(_Document):
    icon: str
    type: Literal["success", "warning", "info"]
    title: str
    message: str
    details: list[str] = []
    action: str = ""


class ActionDoc(_Document):
    id: str
    title: str
    description: str
    priority: Literal["high", "medium", "low"]
    impact: float  # percent, computed
    duration: str
    cost: str
    color: str


class TrainingDoc(_Camel):
    best_epoch: int
    epochs_run: int
    duration_s: float
    file_id: str


class DataDoc(_Document):
    rows: int | None = None
    clicks: int | None = None
    ctr: float | None = None  # percent


class AssumptionsDoc(_Camel):
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
    flagged_share: float | None = None
    base_ctr: float | None = None
    targeted_ctr: float | None = None
    targeted_ctr_low: float | None = None
    targeted_ctr_high: float | None = None
    targeted_rows: float | None = None
    targeted_clicks: float | None = None
    model_ctr: float | None = None
    monthly_spend_krw: float | None = None
    clicks_base: float | None = None
    clicks_model: float | None = None
    revenue_base_krw: float | None = None
    revenue_model_krw: float | None = None
    roi_base_percent: float | None = None
    roi_model_percent: float | None = None
    effective_cpc_base_krw: float | None = None
    effective_cpc_model_krw: float | None = None
    formulas: dict[str, str] = {}
    note: str = ""


class SegmentDoc(_Document):
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


class SegmentFindingDoc(_Document):
    dimension: str  # hour, day_of_week, inventory_id, age_group_gender
    title: str
    base_ctr: float  # percent
    best: list[SegmentDoc] = []
    worst: list[SegmentDoc] = []
    segments_considered: int = 0
    tests_in_family: int = 0


class SegmentsDoc(_Document):
    available: bool = False
    findings: list[SegmentFindingDoc] = []


# Which table names "the" top segment: the audience tables first, then placement and time.
TOP_SEGMENT_ORDER = ("age_group_gender", "inventory_id", "day_of_week", "hour")


class ReportDoc(_Camel):
    """``runs/<run_id>/report.json`` (``report_path``): the report of a run, as the frontend reads it.

    Money figures are 0 (``roiIncrease``, ``additionalRevenue``) and ``moneyRange`` null when the
    report supports no estimate (``assumptions.computable`` false, or a weak model).
    ``inputsDigest`` names the inputs it was built from (the reporter rebuilds it when they change)."""

    _copies: ClassVar[dict[str, str]] = {"run_id": "runId"}

    run_id: str
    experiment_name: str
    generated_at: str  # ISO 8601, UTC
    summary: str
    accuracy: float | None = None  # percent
    roi_increase: float  # percentage points; 0 (not a claim) when no estimate is supported
    additional_revenue: float  # KRW per month, the point of the range; 0 when none
    revenue_change_percent: float
    money_range: MoneyRangeDoc | None = None
    model_strength: ModelStrengthDoc
    top_features: list[TopFeatureDoc]
    drivers: list[str]
    correlation: CorrelationDoc | None = None
    priority_rule: str
    feature_names_digest: str
    ai_insights: list[InsightDoc]
    action_plan: list[ActionDoc]
    model_used: str = Field(alias="model_used")
    narrative_source: Literal["llm", "deterministic"]
    narrative_fallback_reason: str | None = None
    metrics: ModelMetrics  # written under every spelling the frontend reads (ModelMetrics.both_spellings)
    training: TrainingDoc
    data: DataDoc
    assumptions: AssumptionsDoc
    segments: SegmentsDoc
    inputs_digest: str = ""

    @field_serializer("metrics")
    def _metrics_both_spellings(self, metrics: ModelMetrics) -> dict[str, float | None]:
        return metrics.both_spellings()

    @staticmethod
    def path(run_id: str) -> str:
        return report_path(run_id)

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


# --- highlights.json (ingest) ------------------------------------------------------------------


class AudienceSegment(_Camel):
    """One audience segment of the upload (age group x gender, else placement) with its CTR and
    95% Wilson interval, in percent; keys as the marketers' dashboard shows them (camelCase)."""

    name: str  # age_<a>_gender_<g> | inventory_<v>
    label: str  # the report's label of the segment: 연령대 4 · 성별 1 | 지면 7
    segment: Literal["age_group_gender", "inventory_id"]
    ctr: float
    ctr_low: float
    ctr_high: float
    potential: float  # 0..100: the lower 95% bound against the best segment's
    lift: float  # the segment's CTR over the upload's
    rows: int
    clicks: int
    share: float  # percent of the ranked segments' rows


class HourSlot(_Camel):
    """One hour of the day with its CTR and 95% Wilson interval (percent) and its traffic."""

    period: str  # HH:00-HH:00
    hour: int
    ctr: float
    ctr_low: float
    ctr_high: float
    traffic: int
    traffic_share: float  # percent of the rows with an hour
    clicks: int
    is_best: bool  # one of the BEST_HOURS hours with enough rows and the highest lower bound


class AudienceHighlights(_Camel):
    """``files/<file_id>/highlights.json`` (``highlights_path``): what the marketers' dashboard shows
    of an upload, built by ingest from its profile and totals (``ctrops_ingest.highlights``) and
    served by the gateway as it is. Percent values are rounded as shown."""

    overall_ctr: float  # percent: the upload's CTR
    min_rows: int  # rows a segment or hour needs to be ranked: max(30, 0.2% of the rows)
    segment_kind: Literal["age_group_gender", "inventory_id"] | None  # None: no segment table
    segments: list[AudienceSegment]  # every segment with min_rows rows, highest potential first
    hours: list[HourSlot]  # every hour with rows, in hour order
    best_hours_ctr: float  # percent: the CTR of the best hours together (overall_ctr without any)
    best_hours_lift: float  # percent: best_hours_ctr over overall_ctr, minus 100
    data_insights: list[InsightDoc]  # what the data shows (best hours, best segment), before a report

    @staticmethod
    def path(file_id: str) -> str:
        return highlights_path(file_id)
