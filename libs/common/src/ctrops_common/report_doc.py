"""The report document (``runs/<run_id>/report.json``), typed: kept as a name for its readers.

The models live in ``ctrops_common.documents`` with the other files services hand each other
(the profile and the explanation); this module re-exports the report's.
"""

from __future__ import annotations

from .documents import (  # noqa: F401
    SIGNIFICANCE,
    TOP_SEGMENT_ORDER,
    ActionDoc,
    AssumptionsDoc,
    CorrelatedPairDoc,
    CorrelationDoc,
    DataDoc,
    InsightDoc,
    ModelStrengthDoc,
    ModelSummaryDoc,
    MoneyRangeDoc,
    Pair,
    ReportDoc,
    SegmentDoc,
    SegmentFindingDoc,
    SegmentsDoc,
    TopFeatureDoc,
    TrainingDoc,
    Verdict,
)
