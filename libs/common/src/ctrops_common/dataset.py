"""What the platform knows about the data: required columns, the training layout, Korean labels.

The customer's CSV follows the Toss ad-click layout (../shared/spec/dataset.md). Ingest
converts it once into the *training layout*: a Parquet file with ``clicked`` (int8),
``seq`` (list<int32>, tokens in their original order, oldest first) and every other
column as a float64 feature, so no later step parses text again.
"""

from __future__ import annotations

import re

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


def run_dir(run_id: str) -> str:
    return f"runs/{run_id}"


def explanation_path(run_id: str) -> str:
    """The explainer's result for a run (importances, permutation check, correlation)."""
    return f"{run_dir(run_id)}/explanation.json"


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


_KNOWN = {
    "gender": "성별",
    "age_group": "연령대",
    "inventory_id": "광고 지면 ID",
    "day_of_week": "요일",
    "hour": "시간대",
    "seq": "행동 시퀀스",
    "clicked": "클릭 여부",
    "content_category_id": "콘텐츠 카테고리 ID",
    "scroll_depth_percentage": "스크롤 깊이(%)",
    "impression_count_7d": "최근 7일 노출 수",
    "device_type": "기기 유형",
    "seq_length": "행동 시퀀스 길이",
}
_PATTERNS = [
    (re.compile(r"^l_feat_(\d+)$"), "광고 속성 {}"),
    (re.compile(r"^feat_([a-e])_(\d+)$"), "정보영역 {}-{}"),
    (re.compile(r"^history_a_(\d+)$"), "과거 인기도 {}"),
    (re.compile(r"^history_b_(\d+)$"), "과거 피처 {}"),
]


def column_description(name: str) -> str:
    """Korean label for a known column; the name itself otherwise."""
    if name in _KNOWN:
        return _KNOWN[name]
    if name == "l_feat_14":
        return "광고 속성 14 (광고 세트)"
    for pattern, template in _PATTERNS:
        match = pattern.match(name)
        if match:
            groups = [g.upper() if g.isalpha() else g for g in match.groups()]
            return template.format(*groups)
    return name
