"""The reporter's handlers on the in-memory bus: the report is built once both inputs are in, in
either order, a redelivered input builds nothing again, a request before its inputs (or for an
invalid run) is answered with report.failed and whether to ask again, a failing build is announced
rather than dead-lettered. (test_handlers.py keeps the reporter as a real process on the real
broker, with the LLM configured through the environment.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from ctrops_common.dataset import report_path
from ctrops_common.documents import ReportDoc, read_document
from ctrops_common.events import ModelMetrics, ReportRequested, Topic, TrainingProgress, new_id
from ctrops_common.memory_bus import InMemoryBroker, InMemoryBus
from ctrops_common.service import ServiceRuntime
from ctrops_common.testing import root_logging_kept
from ctrops_reporter import handlers
from ctrops_reporter.settings import ReporterSettings

pytestmark = pytest.mark.inmemory


class Reporter:
    """The reporter as its __main__ wires it, on the in-memory bus (its consumer driven by ``settle``),
    and a producer beside it."""

    def __init__(self, root: Path, broker: InMemoryBroker, **settings) -> None:
        self.settings = ReporterSettings(data_dir=root, topic_prefix=f"r{new_id()[:8]}.", consumer_max_attempts=2,
                                         consumer_backoff_s=0.01, **settings)
        self.broker = broker
        self.runtime = ServiceRuntime("reporter", self.settings, bus_factory=broker.bus_factory)
        handlers.register(self.runtime, self.settings)
        self.producer = InMemoryBus(self.settings, "test-producer", broker=broker)

    async def start(self) -> Reporter:
        await self.runtime.bus.start()
        await self.producer.start()
        return self

    async def publish(self, *items) -> list:
        sent = [await self.producer.publish(topic, payload, correlation_id=payload.run_id) for topic, payload in items]
        await self.broker.settle(timeout_s=60)
        return sent

    def answers(self) -> list:
        return sorted(self.broker.events(Topic.REPORT_READY) + self.broker.events(Topic.REPORT_FAILED),
                      key=lambda e: e.time)


def progress_of(sample) -> list[tuple[Topic, TrainingProgress]]:
    return [(Topic.TRAINING_PROGRESS, TrainingProgress(run_id=sample.run_id, epoch=p["epoch"], total_epochs=3,
                                                       metrics=ModelMetrics(**{k: v for k, v in p.items()
                                                                               if k != "epoch"})))
            for p in sample.curve]


@pytest.fixture(autouse=True)
def plain_logs(monkeypatch: pytest.MonkeyPatch):
    """Plain log lines; the ServiceRuntime built here sets up the process's logging: the session's back after."""
    monkeypatch.setenv("CTROPS_LOG_JSON", "false")
    with root_logging_kept():
        yield


async def test_the_report_waits_for_both_inputs_and_a_redelivered_input_builds_nothing_again(
    sample_run, fake_llm
):
    reporter = await Reporter(sample_run.store.root, InMemoryBroker(), openai_api_key="test-key",
                              openai_base_url=fake_llm.base_url, llm_timeout_s=5).start()
    store, run_id = sample_run.store, sample_run.run_id
    await reporter.publish(*progress_of(sample_run), (Topic.EXPLANATION_DONE, sample_run.explanation_done))
    assert reporter.answers() == [] and not store.exists(report_path(run_id))  # waits for training.done
    [done] = await reporter.publish((Topic.TRAINING_DONE, sample_run.training_done))

    [ready] = reporter.answers()
    assert ready.type == Topic.REPORT_READY and ready.producer == "reporter" and ready.correlation_id == run_id
    assert ready.payload.request_id == f"auto-{run_id}" and ready.payload.model_used == fake_llm.MODEL
    assert ready.payload.pdf_location == f"runs/{run_id}/report.pdf"
    assert ready.payload.report_location == report_path(run_id)
    report = read_document(store, ready.payload.report_location, ReportDoc)
    assert report.summary == fake_llm.GOOD_SUMMARY and report.accuracy == 97.91 and report.metrics.auc == 0.7386
    assert [f.name for f in report.top_features[:2]] == ["history_a_1", "hour"]
    assert store.path(ready.payload.pdf_location).read_bytes().startswith(b"%PDF-")
    prompt = fake_llm.requests[0]["body"]["messages"][1]["content"]
    assert "0.7386" in prompt and "history_a_1" in prompt
    written = store.path(ready.payload.pdf_location).stat().st_mtime_ns

    reporter.broker.redeliver(done)  # training.done again, same event: skipped, nothing rebuilt or announced
    await reporter.broker.settle()
    assert len(reporter.answers()) == 1 and len(fake_llm.requests) == 1
    assert store.path(ready.payload.pdf_location).stat().st_mtime_ns == written

    # A request with options renders its own file; the same request again reuses it, and the LLM is not asked.
    first, second = (ReportRequested(run_id=run_id, request_id=new_id(), include_charts=False) for _ in range(2))
    await reporter.publish((Topic.REPORT_REQUESTED, first))
    answer = reporter.answers()[-1]
    assert answer.payload.request_id == first.request_id
    assert answer.payload.pdf_location == f"runs/{run_id}/report-011.pdf"
    rendered = store.path(answer.payload.pdf_location).stat().st_mtime_ns
    await reporter.publish((Topic.REPORT_REQUESTED, second))
    again = reporter.answers()[-1]
    assert again.payload.request_id == second.request_id and again.payload.pdf_location == answer.payload.pdf_location
    assert store.path(again.payload.pdf_location).stat().st_mtime_ns == rendered
    assert len(fake_llm.requests) == 1
    assert reporter.broker.events(Topic.DEAD_LETTER) == []


async def test_a_request_before_the_inputs_fails_with_a_retryable_reason(sample_run):
    reporter = await Reporter(sample_run.store.root, InMemoryBroker(), openai_api_key=None).start()
    run_id = sample_run.run_id

    def failed(request: ReportRequested):
        [answer] = [e for e in reporter.answers() if e.payload.request_id == request.request_id]
        assert answer.type == Topic.REPORT_FAILED and answer.correlation_id == request.run_id
        return answer.payload

    early = ReportRequested(run_id=run_id, request_id=new_id())  # overtakes training.done
    await reporter.publish((Topic.REPORT_REQUESTED, early))
    assert failed(early).retryable and "training has not completed" in failed(early).reason

    await reporter.publish((Topic.TRAINING_DONE, sample_run.training_done))
    request = ReportRequested(run_id=run_id, request_id=new_id())
    await reporter.publish((Topic.REPORT_REQUESTED, request))
    assert failed(request).retryable and "explanation is not ready" in failed(request).reason

    unknown = ReportRequested(run_id=new_id(), request_id=new_id())
    await reporter.publish((Topic.REPORT_REQUESTED, unknown))
    assert failed(unknown).retryable and "training has not completed" in failed(unknown).reason

    invalid = ReportRequested(run_id="../../etc", request_id=new_id())
    await reporter.publish((Topic.REPORT_REQUESTED, invalid))
    assert failed(invalid).retryable is False and "invalid run id" in failed(invalid).reason

    # The explanation arrives: the report is built at once (the rules' narrative, no LLM configured).
    await reporter.publish((Topic.EXPLANATION_DONE, sample_run.explanation_done))
    [ready] = reporter.broker.events(Topic.REPORT_READY)
    assert ready.payload.request_id == f"auto-{run_id}" and ready.payload.model_used != "fake-gpt-test"
    assert read_document(sample_run.store, report_path(run_id), ReportDoc).metrics.auc == 0.7386
    assert reporter.broker.events(Topic.DEAD_LETTER) == []


async def test_a_failing_build_is_announced_with_its_reason_not_dead_lettered(sample_run):
    reporter = await Reporter(sample_run.store.root, InMemoryBroker(), openai_api_key=None).start()
    sample_run.store.path(report_path(sample_run.run_id)).mkdir(parents=True)  # report.json cannot be written
    await reporter.publish((Topic.TRAINING_DONE, sample_run.training_done),
                           (Topic.EXPLANATION_DONE, sample_run.explanation_done))
    [answer] = reporter.answers()
    assert answer.type == Topic.REPORT_FAILED and answer.payload.request_id == f"auto-{sample_run.run_id}"
    assert answer.payload.reason.startswith("report generation failed:") and answer.payload.retryable is False
    assert "directory" in answer.payload.reason  # the cause, for the person who asked
    assert reporter.broker.events(Topic.DEAD_LETTER) == []
    assert reporter.runtime.bus.errors_total == 0 and reporter.runtime.bus.handled_total == 2
