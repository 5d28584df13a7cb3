"""The feature-name mapping: shipped names for every Toss column, the user's override stored as a
typed model and overlaid on them, and mapping files refused with a message naming the line."""

from __future__ import annotations

import codecs
import os

import pytest

from ctrops_common.dataset import column_description, toss_columns
from ctrops_common.feature_names import (
    FEATURE_MAPPING_PATH,
    FeatureName,
    FeatureNameMapping,
    MappingError,
    delete_override,
    effective_feature_names,
    parse_mapping,
    parse_mapping_csv,
    parse_mapping_json,
    save_override,
    shipped_feature_names,
    stored_override,
)
from ctrops_common.storage import FileStore


def test_every_toss_column_has_a_korean_name_group_and_description():
    shipped = shipped_feature_names()
    for column in toss_columns():
        entry = shipped.get(column)
        assert entry is not None, column
        assert any("\uac00" <= ch <= "\ud7a3" for ch in entry.name), (column, entry.name)
        assert entry.group and entry.description, column
    assert {shipped.group_of(c) for c in toss_columns()} >= {"사용자", "지면·시간", "행동 이력", "광고", "정보영역"}


@pytest.mark.parametrize(("column", "name"), [
    ("gender", "성별"), ("age_group", "연령대"), ("hour", "시간대"), ("day_of_week", "요일"),
    ("inventory_id", "광고 지면 ID"), ("seq", "행동 시퀀스"), ("l_feat_3", "광고 속성 3"),
    ("l_feat_14", "광고 속성 14 (광고 세트)"), ("feat_a_3", "정보영역 A-3"), ("feat_e_10", "정보영역 E-10"),
    ("history_a_1", "과거 인기도 1"), ("history_b_30", "과거 피처 30"), ("device_type", "기기 유형"),
    ("콘텐츠_카테고리", "콘텐츠_카테고리"),  # unknown: the column itself
])
def test_column_description_reads_the_shipped_mapping(column, name):
    assert column_description(column) == name


def test_override_is_stored_as_the_model_and_overlays_the_shipped_names(tmp_path):
    store = FileStore(tmp_path)
    assert stored_override(store) is None
    assert effective_feature_names(store) is shipped_feature_names()
    mine = parse_mapping_csv("column,name,group,description\nhour,노출 시간,시간,광고가 보인 시각\n"
                             "my_col,내 변수,,\n".encode())
    save_override(store, mine)
    raw = store.path(FEATURE_MAPPING_PATH).read_bytes()
    assert FeatureNameMapping.model_validate_json(raw) == mine  # the typed model, as JSON
    names = effective_feature_names(store)
    assert isinstance(stored_override(store), FeatureNameMapping)
    assert column_description("hour", names) == "노출 시간"
    assert names.get("hour") == FeatureName(column="hour", name="노출 시간", group="시간", description="광고가 보인 시각")
    assert column_description("my_col", names) == "내 변수" and names.group_of("my_col") == "기타"
    assert column_description("gender", names) == "성별"  # not in the override: shipped
    assert len(names.entries) == len(shipped_feature_names().entries) + 1
    assert names.digest() != shipped_feature_names().digest()

    # A new upload replaces the file; the cache notices even at the same size and second.
    other = parse_mapping_csv("column,name\nhour,노출 시각\n".encode())
    save_override(store, other)
    os.utime(store.path(FEATURE_MAPPING_PATH), ns=(0, 0))
    assert column_description("hour", effective_feature_names(store)) == "노출 시각"
    assert column_description("my_col", effective_feature_names(store)) == "my_col"
    assert delete_override(store) is True
    assert effective_feature_names(store) is shipped_feature_names()


def test_an_unreadable_stored_mapping_falls_back_to_the_shipped_names(tmp_path, caplog):
    store = FileStore(tmp_path)
    store.write_bytes(FEATURE_MAPPING_PATH, b'{"entries": [{"column": "hour"}]}')  # no name: not a mapping
    assert effective_feature_names(store) is shipped_feature_names()
    assert stored_override(store) is None and "ignoring unreadable feature-name mapping" in caplog.text


def test_csv_with_bom_cp949_korean_headers_and_quoted_commas():
    text = "컬럼,한글명,그룹,설명\r\nhour,시간대,지면,\"0~23시, 한국 시간\"\r\n\r\n"
    for data in (codecs.BOM_UTF8 + text.encode(), text.encode("cp949")):
        mapping = parse_mapping_csv(data)
        assert mapping.entries == [FeatureName(column="hour", name="시간대", group="지면", description="0~23시, 한국 시간")]


def test_json_object_or_list():
    one = parse_mapping_json(b'{"entries": [{"column": "hour", "name": "\xec\x8b\x9c\xea\xb0\x84"}]}')
    two = parse_mapping(b'[{"column": "hour", "name": "\xec\x8b\x9c\xea\xb0\x84"}]', "json")
    assert one == two and one.name_of("hour") == "시간"


@pytest.mark.parametrize(("data", "message"), [
    (b"column,name\nhour,A\nage_group,B\nhour,C\n", "line 4: duplicate column 'hour' (first on line 2)"),
    (b"column,name\nhour,  \n", "line 2 (column 'hour'): the name is empty"),
    (b"column,name\n,A\n", "line 2: the column is empty"),
    (b"feature_id,label\nhour,A\n", "unknown format: header (line 1) cell 1 is 'feature_id'"),
    (b"column,group\nhour,A\n", "lacks name"),
    (b"column,name\nhour,A,B\n", "line 2: 3 cells but the header has 2"),
    (b"column,name\n", "no entries"),
    (b"", "the mapping is empty"),
    (b"column,name\nhour," + b"x" * 101 + b"\n", "line 2 (column 'hour'): name: String should have at most 100 characters"),
    (b"column,name\n\xff\xfe\xfa,A\n", "not UTF-8"),
])
def test_bad_csv_names_the_line_and_field(data, message):
    with pytest.raises(MappingError) as caught:
        parse_mapping_csv(data)
    assert message in str(caught.value)


@pytest.mark.parametrize(("data", "message"), [
    (b'[{"column": "hour", "name": "A"}, {"column": "hour", "name": "B"}]',
     "entry 2: duplicate column 'hour' (first in entry 1)"),
    (b'[{"column": "hour", "name": ""}]', "entry 1 (column 'hour'): the name is empty"),
    (b'{"names": {}}', "unknown format"),
    (b'[{"column": "hour", "name": "A", "colour": "red"}]', "entry 1 (column 'hour'): colour"),
    (b"{not json", "the JSON cannot be read"),
])
def test_bad_json_names_the_entry_and_field(data, message):
    with pytest.raises(MappingError) as caught:
        parse_mapping_json(data)
    assert message in str(caught.value)


def test_the_model_refuses_duplicates_itself():
    with pytest.raises(ValueError, match="column 'hour' appears again"):
        FeatureNameMapping(entries=[FeatureName(column="hour", name="A"), FeatureName(column="hour", name="B")])
