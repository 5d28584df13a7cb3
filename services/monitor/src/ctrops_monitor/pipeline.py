"""A finished run's pipeline stages from its event times: how long each took, its share and advice.

Pure: the handlers record when each of the run's events happened (``MonitorStore.save_run_event``)
and the snapshot passes them in. The stages, in order:

- queue wait (``학습 대기 (queue)``): training.requested -> training.started
- training (``모델 학습 (trainer)``): the run's own ``TrainingDone.duration_s``
- explanation (``LIME 설명 (explainer)``): training.done -> explanation.done
- report (``리포트 생성 (reporter)``): report.requested -> report.ready

A stage whose events are missing, or whose end comes before its start, is left out. Each stage's
share is of the listed stages' total; a stage over ``DOMINANT_SHARE`` percent of it is a
``warning`` when more than one stage is listed. The gateway serves these as the pipeline rows of
the SI dashboard's ``bottleneckAnalysis``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from ctrops_common.events import PipelineStage, Topic
from ctrops_common.numbers import finite

DOMINANT_SHARE = 60.0  # percent of the pipeline's time

QUEUE = "학습 대기 (queue)"
TRAINING = "모델 학습 (trainer)"
EXPLANATION = "LIME 설명 (explainer)"
REPORT = "리포트 생성 (reporter)"

# The topics whose times the stages need besides training.done (the monitor's own run record).
TIMED_TOPICS = (Topic.TRAINING_REQUESTED, Topic.TRAINING_STARTED, Topic.EXPLANATION_DONE,
                Topic.REPORT_REQUESTED, Topic.REPORT_READY)

WITHIN_BUDGET = "정상 범위입니다. Within budget."
TRAINING_DOMINATES = (
    "파이프라인 시간의 대부분입니다: epochs/배치 크기 조정, early stopping, trainer 확장을 고려하세요. "
    "Dominant stage: tune epochs/batch size, use early stopping or more trainers."
)
STAGE_DOMINATES = "파이프라인 시간의 대부분입니다: 해당 서비스의 인스턴스를 늘리세요. Dominant stage: scale this service."


def _between(start: datetime | None, end: datetime | None) -> float | None:
    """Milliseconds from ``start`` to ``end``; None when either is missing or the end comes first."""
    if start is None or end is None or end < start:
        return None
    return (end - start).total_seconds() * 1000


def stage_durations(done_at: datetime, duration_s: float | None,
                    times: Mapping[Topic, datetime]) -> list[tuple[str, str, float]]:
    """(name, service, ms) of the stages that can be measured, in pipeline order. ``done_at`` is the
    run's training.done time, ``duration_s`` its ``TrainingDone.duration_s``, ``times`` the newest
    time of each of its other events (``TIMED_TOPICS``)."""
    measured = [
        (QUEUE, "trainer", _between(times.get(Topic.TRAINING_REQUESTED), times.get(Topic.TRAINING_STARTED))),
        (TRAINING, "trainer", (finite(duration_s) or 0.0) * 1000),
        (EXPLANATION, "explainer", _between(done_at, times.get(Topic.EXPLANATION_DONE))),
        (REPORT, "reporter", _between(times.get(Topic.REPORT_REQUESTED), times.get(Topic.REPORT_READY))),
    ]
    return [(name, service, ms) for name, service, ms in measured if ms is not None]


def advice(name: str, status: str) -> str:
    if status == "good":
        return WITHIN_BUDGET
    return TRAINING_DOMINATES if name == TRAINING else STAGE_DOMINATES


def pipeline_stages(done_at: datetime, duration_s: float | None,
                    times: Mapping[Topic, datetime]) -> list[PipelineStage]:
    """The run's stages (``stage_durations``) with their share of the total, status and advice."""
    stages = stage_durations(done_at, duration_s, times)
    total = sum(ms for _, _, ms in stages) or 1.0
    result = []
    for name, service, ms in stages:
        share = 100.0 * ms / total
        status = "warning" if share > DOMINANT_SHARE and len(stages) > 1 else "good"
        result.append(PipelineStage(name=name, service=service, ms=ms, share_percent=share, status=status,
                                    recommendation=advice(name, status)))
    return result
