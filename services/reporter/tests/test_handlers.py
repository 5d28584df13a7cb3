"""The reporter as a real process on the real broker: events in, report files and events out.

Its handlers' answers to requests that come too early, redeliveries and failing builds are tested
on the in-memory bus, in test_handlers_memory.py."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka import AIOKafkaConsumer

from ctrops_common.dataset import report_path
from ctrops_common.documents import ReportDoc, read_document
from ctrops_common.events import (
    ModelMetrics,
    ReportRequested,
    Topic,
    TrainingProgress,
    decode_event,
    new_id,
)
from ctrops_common.settings import CommonSettings
from ctrops_common.testing import publish_events as publish


def wait_for_events(topics: list[Topic], predicate, count: int = 1, timeout_s: float = 90) -> list[Any]:
    """Read the test's topics from the start until ``count`` events match ``predicate``."""

    async def run() -> list[Any]:
        settings = CommonSettings()
        consumer = AIOKafkaConsumer(*(settings.topic_prefix + t.value for t in topics),
                                    bootstrap_servers=settings.kafka_bootstrap_servers,
                                    auto_offset_reset="earliest", enable_auto_commit=False, group_id=None)
        await consumer.start()
        found: list[Any] = []
        try:
            deadline = time.monotonic() + timeout_s
            while len(found) < count:
                assert time.monotonic() < deadline, f"only {len(found)} of {count} events arrived: {found}"
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    for record in records:
                        event = decode_event(record.topic.removeprefix(settings.topic_prefix), record.value)
                        if predicate(event):
                            found.append(event)
        finally:
            await consumer.stop()
        return found

    return asyncio.run(run())


def run_events(sample) -> dict[str, Any]:
    progress = [(Topic.TRAINING_PROGRESS, TrainingProgress(run_id=sample.run_id, epoch=p["epoch"], total_epochs=3,
                                                           metrics=ModelMetrics(**{k: v for k, v in p.items()
                                                                                   if k != "epoch"})))
                for p in sample.curve]
    return {
        "progress": progress,
        "done": (Topic.TRAINING_DONE, sample.training_done),
        "explained": (Topic.EXPLANATION_DONE, sample.explanation_done),
    }


def test_report_is_built_when_both_inputs_arrive_in_any_order_and_requests_reuse_it(
    start_service, platform_sample, fake_llm, monkeypatch
):
    monkeypatch.delenv("CTROPS_OPENAI_API_KEY", raising=False)
    store, run_id = platform_sample.store, platform_sample.run_id
    # The bare names operators use; CTROPS_OPENAI_API_KEY would win, so it must not be set here.
    start_service("reporter", {"OPENAI_API_KEY": "test-key", "OPENAI_BASE_URL": fake_llm.base_url,
                               "CTROPS_LLM_TIMEOUT_S": "5"})
    events = run_events(platform_sample)
    # The explanation first: the reporter must wait for training.done, not fail.
    publish(*events["progress"], events["explained"])
    time.sleep(2)
    assert not store.exists(f"runs/{run_id}/report.json")
    publish(events["done"])

    (ready,) = wait_for_events([Topic.REPORT_READY, Topic.REPORT_FAILED], lambda e: e.payload.run_id == run_id)
    assert ready.type == Topic.REPORT_READY, ready.payload
    assert ready.payload.request_id == f"auto-{run_id}"
    assert ready.payload.model_used == fake_llm.MODEL  # the LLM configured through the environment wrote it
    assert ready.payload.pdf_location == f"runs/{run_id}/report.pdf"
    report = read_document(store, ready.payload.report_location, ReportDoc)  # the file is the typed document
    assert ready.payload.report_location == report_path(run_id)
    assert report.summary == fake_llm.GOOD_SUMMARY
    assert report.accuracy == 97.91 and report.metrics.auc == 0.7386
    assert [f.name for f in report.top_features[:2]] == ["history_a_1", "hour"]
    assert store.path(ready.payload.pdf_location).read_bytes().startswith(b"%PDF-")
    prompt = fake_llm.requests[0]["body"]["messages"][1]["content"]
    assert "0.7386" in prompt and "history_a_1" in prompt
    assert len(fake_llm.requests) == 1

    # A request with options renders its own file; the same request again reuses it.
    request = lambda: ReportRequested(run_id=run_id, request_id=new_id(), include_charts=False)  # noqa: E731
    first, second = request(), request()
    publish((Topic.REPORT_REQUESTED, first))
    (answer,) = wait_for_events([Topic.REPORT_READY], lambda e: e.payload.request_id == first.request_id)
    assert answer.payload.pdf_location == f"runs/{run_id}/report-011.pdf"
    written = store.path(answer.payload.pdf_location).stat().st_mtime_ns
    publish((Topic.REPORT_REQUESTED, second))
    (again,) = wait_for_events([Topic.REPORT_READY], lambda e: e.payload.request_id == second.request_id)
    assert again.payload.pdf_location == answer.payload.pdf_location
    assert store.path(again.payload.pdf_location).stat().st_mtime_ns == written
    assert len(fake_llm.requests) == 1  # report.json reused: the LLM is not asked again
