"""The audience highlights of an upload (highlights.json): Wilson intervals, ranked segments, the
best hours and the data's insight cards, built from the profile; and the upload writes them."""

from __future__ import annotations

import pytest

from ctrops_common.datagen import generate
from ctrops_common.dataset import highlights_path, profile_path
from ctrops_common.documents import AudienceHighlights, Profile, read_document
from ctrops_common.events import FileUploaded, UploadReceived, new_id
from ctrops_common.dataset import upload_path
from ctrops_common.sample_documents import hours_and_audience_profile, profile_document
from ctrops_common.storage import FileStore
from ctrops_ingest.highlights import BEST_HOURS, build_highlights, min_rows_for
from ctrops_ingest.pipeline import IngestOptions
from ctrops_ingest.uploads import decide


def test_min_rows_is_thirty_or_two_per_mille():
    assert min_rows_for(0) == 30 and min_rows_for(10_000) == 30 and min_rows_for(55_220) == 110


def test_best_hours_have_enough_rows_and_the_highest_lower_bound():
    h = build_highlights(hours_and_audience_profile(), total_rows=55220, ctr=1.992)
    assert h.overall_ctr == 1.992 and h.min_rows == 110
    assert len(h.hours) == 24 and [s.hour for s in h.hours] == list(range(24))
    assert h.hours[0].period == "00:00-01:00" and h.hours[23].period == "23:00-00:00"
    assert {s.hour for s in h.hours if s.is_best} == {20, 21, 9}  # not hour 3: 20 rows are noise
    assert sum(s.is_best for s in h.hours) == BEST_HOURS
    twenty = h.hours[20]
    assert (twenty.ctr, twenty.traffic, twenty.clicks) == (5.0, 2500, 125)
    assert twenty.ctr_low < 5.0 < twenty.ctr_high and twenty.traffic_share == round(100 * 2500 / 57520, 2)
    assert h.hours[3].ctr == 45.0 and not h.hours[3].is_best
    # The best hours together: 325 clicks in 7500 rows against the upload's 1.992%.
    assert h.best_hours_ctr == round(100 * 325 / 7500, 3)
    assert h.best_hours_lift == round(100 * (100 * 325 / 7500 / 1.992 - 1), 1)


def test_segments_are_ranked_by_their_lower_bound_and_small_ones_left_out():
    h = build_highlights(hours_and_audience_profile(), total_rows=55220, ctr=1.992)
    assert h.segment_kind == "age_group_gender"
    assert [s.label for s in h.segments] == ["연령대 4 · 성별 1", "연령대 5 · 성별 2", "연령대 7 · 성별 2"]
    top = h.segments[0]
    assert (top.name, top.segment, top.potential, top.ctr, top.rows, top.clicks) == (
        "age_4_gender_1", "age_group_gender", 100.0, 2.5, 12000, 300)
    assert top.ctr_low < 2.5 < top.ctr_high and top.lift == round(0.025 / 0.01992, 3)
    assert top.share == round(100 * 12000 / 40000, 2)
    assert all(0 <= s.potential <= 100 for s in h.segments)
    assert [s.potential for s in h.segments] == sorted((s.potential for s in h.segments), reverse=True)
    assert "age_6_gender_1" not in {s.name for s in h.segments}


def test_placements_stand_in_when_there_is_no_audience_table():
    profile = profile_document(inventory_id=[{"value": 7.0, "rows": 5000, "clicks": 150},
                                             {"value": 2.5, "rows": 4000, "clicks": 60}])
    h = build_highlights(profile, total_rows=9000, ctr=2.333)
    assert h.segment_kind == "inventory_id"
    assert [(s.name, s.label) for s in h.segments] == [("inventory_7", "지면 7"), ("inventory_2.5", "지면 2.5")]
    assert h.hours == [] and h.best_hours_ctr == 2.333 and h.best_hours_lift == 0.0


def test_without_totals_the_hours_give_the_ctr_and_an_empty_profile_gives_nothing():
    profile = profile_document(hour=[{"value": h, "rows": 1000, "clicks": 40 if h == 21 else 18} for h in range(24)])
    h = build_highlights(profile)
    assert h.overall_ctr == pytest.approx(100 * (40 + 23 * 18) / 24000) and h.min_rows == 48
    empty = build_highlights(profile_document(), total_rows=0, ctr=0.0)
    assert (empty.segments, empty.hours, empty.data_insights, empty.segment_kind) == ([], [], [], None)


def test_data_insights_name_the_best_hour_and_segment_in_korean():
    h = build_highlights(hours_and_audience_profile(), total_rows=55220, ctr=1.992)
    hours, audience = h.data_insights
    assert (hours.icon, hours.type, hours.title) == ("⏰", "info", "CTR 상위 시간대 20:00-21:00")
    assert hours.message == f"CTR 5.00% (전체 1.99%의 {5.0 / 1.992:.1f}배)"
    twenty = h.hours[20]
    assert hours.details[0] == (f"20:00-21:00: CTR 5.00% (95% {twenty.ctr_low:.2f}-{twenty.ctr_high:.2f}%), "
                                "노출 2,500")
    assert [d.split(":")[0] for d in hours.details] == ["20", "21", "09"]
    assert hours.action == "다중검정 보정을 거친 판단과 실행 과제는 리포트에서 확인하세요."
    top = h.segments[0]
    assert audience.title == "CTR 하한이 가장 높은 세그먼트: 연령대 4 · 성별 1"
    assert audience.message == f"CTR 2.50% (95% 하한 {top.ctr_low:.2f}%), 노출 비중 30.0%"
    assert audience.details == [f"{s.label}: CTR {s.ctr:.2f}%, lift {s.lift:.2f}" for s in h.segments[:3]]
    assert not any("AUC" in i.title for i in h.data_insights)  # no model verdict: that is the reporter's
    assert build_highlights(hours_and_audience_profile(), total_rows=55220, ctr=0.0).data_insights[0].icon == "👥"


def test_the_document_reads_back_as_itself():
    h = build_highlights(hours_and_audience_profile(), total_rows=55220, ctr=1.992)
    text = h.model_dump_json()
    assert '"ctrLow"' in text and '"isBest"' in text and '"dataInsights"' in text  # the dashboard's keys
    assert AudienceHighlights.model_validate_json(text) == h


def test_an_upload_writes_highlights_beside_its_profile(tmp_path):
    store = FileStore(tmp_path / "store")
    source = tmp_path / "gen.csv"
    truth = generate(source, 3000, seed=5)
    file_id = new_id()
    data = source.read_bytes()
    store.write_bytes(upload_path(file_id), data)
    upload = UploadReceived(file_id=file_id, filename="gen.csv", location=upload_path(file_id), size_bytes=len(data))
    _, verdict = decide(store, upload, IngestOptions(block_bytes=256 * 1024))
    assert isinstance(verdict, FileUploaded) and verdict.info.clicked_one == truth["clicks"]

    stored = read_document(store, highlights_path(file_id), AudienceHighlights)
    profile = read_document(store, profile_path(file_id), Profile)
    assert stored == build_highlights(profile, verdict.info.total_rows, verdict.info.ctr)
    assert stored.overall_ctr == verdict.info.ctr == round(100 * truth["clicks"] / 3000, 4)
    assert stored.min_rows == 30 and stored.segment_kind == "age_group_gender"
    assert [s.hour for s in stored.hours] == sorted(s.hour for s in stored.hours) and len(stored.hours) == 24
    assert sum(s.traffic for s in stored.hours) == 3000 and sum(s.clicks for s in stored.hours) == truth["clicks"]
    assert sum(s.is_best for s in stored.hours) == BEST_HOURS
    assert stored.segments and all(s.rows >= 30 for s in stored.segments)
    assert [s.potential for s in stored.segments] == sorted((s.potential for s in stored.segments), reverse=True)
    assert stored.segments[0].potential == 100.0
    assert [i.icon for i in stored.data_insights] == ["⏰", "👥"]
