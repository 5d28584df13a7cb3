"""What the platform knows about the data: required columns, the training layout, Korean labels.

The customer's CSV follows the Toss ad-click layout (../shared/spec/dataset.md). Ingest
converts it once into the *training layout*: a Parquet file with ``clicked`` (int8),
``seq`` (list<int32>, tokens in their original order, oldest first) and every other
column as a float64 feature, so no later step parses text again.
"""

from __future__ import annotations

from .feature_names import FeatureNameMapping, shipped_feature_names

TARGET = "clicked"
SEQUENCE = "seq"
REQUIRED_COLUMNS = (TARGET, SEQUENCE)

# Relative store paths, built from validated ids only.
def upload_path(file_id: str) -> str:
    return f"uploads/{file_id}/original.csv"


def parquet_path(file_id: str) -> str:
    return f"files/{file_id}/data.parquet"


def profile_path(file_id: str) -> str:
    return f"files/{file_id}/profile.json"


def highlights_path(file_id: str) -> str:
    """Ingest's audience highlights of an upload (``documents.AudienceHighlights``): what the
    marketers' dashboard shows of the data (segments, hours, data insights)."""
    return f"files/{file_id}/highlights.json"


def run_dir(run_id: str) -> str:
    return f"runs/{run_id}"


def explanation_path(run_id: str) -> str:
    """The explainer's result for a run (importances, permutation check, correlation)."""
    return f"{run_dir(run_id)}/explanation.json"


def report_path(run_id: str) -> str:
    """The reporter's report document of a run (``ctrops_common.report_doc.ReportDoc``)."""
    return f"{run_dir(run_id)}/report.json"


def report_pdf_path(run_id: str, suffix: str = "") -> str:
    """A run's PDF report: ``report.pdf`` with every section, ``report<suffix>.pdf`` with fewer."""
    return f"{run_dir(run_id)}/report{suffix}.pdf"


def predictions_path(job_id: str) -> str:
    """A batch scoring job's result: CSV ``row,probability`` (row = 0-based data row of the upload)."""
    return f"scoring/{job_id}/predictions.csv"


def period_path(run_id: str, model_kind: str, period: str) -> str:
    """A monitoring period (``MonitoringPeriod``) of one model; ``period`` is "2026-03", "2026-W11" or a day."""
    return f"monitoring/periods/{run_id}/{model_kind}/{period}.json"


def toss_columns() -> list[str]:
    """The 119 columns of the Toss layout, in file order."""
    cols = ["gender", "age_group", "inventory_id", "day_of_week", "hour", "seq"]
    cols += [f"l_feat_{i}" for i in range(1, 28)]
    for block, n in (("a", 18), ("b", 6), ("c", 8), ("d", 6), ("e", 10)):
        cols += [f"feat_{block}_{i}" for i in range(1, n + 1)]
    cols += [f"history_a_{i}" for i in range(1, 8)]
    cols += [f"history_b_{i}" for i in range(1, 31)]
    cols.append("clicked")
    return cols


def column_description(name: str, names: FeatureNameMapping | None = None) -> str:
    """Korean display name of a column from the feature-name mapping (``names``; default the
    shipped ``feature_name_mapping.csv``); the name itself for a column the mapping does not know.

    Services that show names to people pass ``effective_feature_names(store)`` so a user's
    uploaded mapping applies (see ctrops_common.feature_names)."""
    return (names or shipped_feature_names()).name_of(name)
