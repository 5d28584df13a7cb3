"""The latest run's pipeline stages from its event times (ctrops_monitor/pipeline.py): which stages,
their milliseconds and shares, the dominant one's warning and the advice, and what missing or
out-of-order events leave out."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest

from ctrops_common.events import Topic
from ctrops_monitor.pipeline import (
    STAGE_DOMINATES,
    TRAINING_DOMINATES,
    WITHIN_BUDGET,
    pipeline_stages,
)

DONE = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)  # training.done


def at(seconds: float) -> datetime:
    return DONE + timedelta(seconds=seconds)


def full_times(**shift: float) -> dict[Topic, datetime]:
    """Requested 100 s before the run finished, started 5 s later (queue 5 s), explained 10 s after,
    a report requested 20 s after and ready 5 s later."""
    seconds = {Topic.TRAINING_REQUESTED: -100, Topic.TRAINING_STARTED: -95, Topic.EXPLANATION_DONE: 10,
               Topic.REPORT_REQUESTED: 20, Topic.REPORT_READY: 25}
    seconds.update({Topic(k.replace("_", ".", 1)): v for k, v in shift.items()})
    return {topic: at(s) for topic, s in seconds.items()}


def test_every_stage_with_its_share_the_dominant_one_warned_with_its_advice():
    stages = pipeline_stages(DONE, 80.0, full_times())
    assert [(s.name, s.service) for s in stages] == [
        ("학습 대기 (queue)", "trainer"), ("모델 학습 (trainer)", "trainer"),
        ("LIME 설명 (explainer)", "explainer"), ("리포트 생성 (reporter)", "reporter")]
    assert [s.ms for s in stages] == [5000.0, 80000.0, 10000.0, 5000.0]
    assert [s.share_percent for s in stages] == pytest.approx([5.0, 80.0, 10.0, 5.0])
    assert [s.status for s in stages] == ["good", "warning", "good", "good"]
    assert stages[1].recommendation == TRAINING_DOMINATES
    assert TRAINING_DOMINATES == (  # the texts the dashboard showed before the monitor computed them
        "파이프라인 시간의 대부분입니다: epochs/배치 크기 조정, early stopping, trainer 확장을 고려하세요. "
        "Dominant stage: tune epochs/batch size, use early stopping or more trainers.")
    assert all(s.recommendation == WITHIN_BUDGET == "정상 범위입니다. Within budget." for s in stages if s.status == "good")


def test_a_dominant_stage_other_than_training_gets_the_scale_advice():
    stages = pipeline_stages(DONE, 10.0, full_times(explanation_done=300))  # explanation 300 s of 320 s
    explanation = next(s for s in stages if s.service == "explainer")
    assert explanation.status == "warning" and explanation.share_percent == pytest.approx(300 / 320 * 100)
    assert explanation.recommendation == STAGE_DOMINATES == (
        "파이프라인 시간의 대부분입니다: 해당 서비스의 인스턴스를 늘리세요. Dominant stage: scale this service.")
    assert [s.status for s in stages].count("warning") == 1


def test_exactly_sixty_percent_is_not_a_warning():
    # queue 40 s, training 60 s: 60 % is not over 60 %
    times = {Topic.TRAINING_REQUESTED: at(-100), Topic.TRAINING_STARTED: at(-60)}
    assert [(s.share_percent, s.status) for s in pipeline_stages(DONE, 60.0, times)] == [
        (pytest.approx(40.0), "good"), (pytest.approx(60.0), "good")]


def test_missing_events_leave_their_stage_out_and_one_stage_alone_is_never_a_warning():
    [training] = pipeline_stages(DONE, 93.0, {})
    assert (training.name, training.ms, training.share_percent, training.status) == (
        "모델 학습 (trainer)", 93000.0, 100.0, "good")
    assert training.recommendation == WITHIN_BUDGET
    # no training.started: no queue stage; a report requested but not ready: no report stage
    times = full_times()
    del times[Topic.TRAINING_STARTED], times[Topic.REPORT_READY]
    assert [s.name for s in pipeline_stages(DONE, 93.0, times)] == ["모델 학습 (trainer)", "LIME 설명 (explainer)"]


def test_events_out_of_order_leave_their_stage_out():
    # a report requested again after its last ready one (not ready yet), an explanation stamped before the
    # run finished, a start before the request (clocks apart): each of those stages is left out
    times = full_times(report_requested=30, explanation_done=-1, training_started=-101)
    assert [s.name for s in pipeline_stages(DONE, 93.0, times)] == ["모델 학습 (trainer)"]


def test_a_training_duration_that_is_not_a_number_counts_as_zero_and_shares_stay_finite():
    stages = pipeline_stages(DONE, math.nan, full_times())
    assert stages[1].ms == 0.0 and all(math.isfinite(s.share_percent) for s in stages)
    [alone] = pipeline_stages(DONE, 0.0, {})
    assert (alone.ms, alone.share_percent, alone.status) == (0.0, 0.0, "good")
