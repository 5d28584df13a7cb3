"""At start, ingest builds the dashboard highlights of uploads profiled before it wrote them: from
each profile and its accepted verdict's totals, once, leaving every other upload alone."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from ctrops_common.datagen import generate
from ctrops_common.dataset import highlights_path, profile_path, upload_path
from ctrops_common.documents import AudienceHighlights, Profile, read_document
from ctrops_common.events import FileUploaded, Topic, UploadReceived, new_id
from ctrops_common.memory_bus import InMemoryBroker
from ctrops_common.service import ServiceRuntime
from ctrops_common.storage import FileStore
from ctrops_common.testing import root_logging_kept
from ctrops_ingest import handlers
from ctrops_ingest.backfill import backfill_highlights, missing_highlights
from ctrops_ingest.highlights import build_highlights
from ctrops_ingest.pipeline import IngestOptions
from ctrops_ingest.results import Verdicts
from ctrops_ingest.settings import IngestSettings
from ctrops_ingest.uploads import decide


def accepted_upload(store: FileStore, folder: Path, seed: int) -> tuple[str, FileUploaded]:
    """An upload decided as ingest decides it (profile, highlights, parquet), and its verdict."""
    source = folder / f"gen{seed}.csv"
    generate(source, 1500, seed=seed)
    file_id, data = new_id(), source.read_bytes()
    store.write_bytes(upload_path(file_id), data)
    upload = UploadReceived(file_id=file_id, filename=source.name, location=upload_path(file_id), size_bytes=len(data))
    _, verdict = decide(store, upload, IngestOptions(block_bytes=256 * 1024))
    assert isinstance(verdict, FileUploaded)
    return file_id, verdict


def test_only_profiled_uploads_with_a_verdict_and_no_highlights_get_them(tmp_path, caplog):
    store = FileStore(tmp_path / "store")
    old, old_verdict = accepted_upload(store, tmp_path, 1)  # profiled before ingest wrote highlights
    store.delete(highlights_path(old))
    current, _ = accepted_upload(store, tmp_path, 2)  # has its highlights: left alone
    kept = store.path(highlights_path(current)).read_bytes()
    in_flight, _ = accepted_upload(store, tmp_path, 3)  # profiled, its verdict not yet recorded
    store.delete(highlights_path(in_flight))
    broken = new_id()  # a profile that does not read as one
    store.write_bytes(profile_path(broken), b"{not json")
    store.path("files/not-an-id").mkdir()
    verdicts = {old: old_verdict, broken: old_verdict}
    assert missing_highlights(store) == sorted([old, in_flight, broken])

    def totals(file_id: str) -> tuple[int, float] | None:
        verdict = verdicts.get(file_id)
        return (verdict.info.total_rows, verdict.info.ctr) if verdict else None

    with caplog.at_level(logging.WARNING, logger="ctrops_ingest.backfill"):
        assert backfill_highlights(store, totals) == [old]
    stored = read_document(store, highlights_path(old), AudienceHighlights)
    profile = read_document(store, profile_path(old), Profile)
    assert stored == build_highlights(profile, old_verdict.info.total_rows, old_verdict.info.ctr)
    assert stored.overall_ctr == old_verdict.info.ctr and stored.hours
    assert store.path(highlights_path(current)).read_bytes() == kept
    assert not store.exists(highlights_path(in_flight)) and not store.exists(highlights_path(broken))
    assert [r.getMessage() for r in caplog.records if broken in r.getMessage()]  # named, then skipped
    assert backfill_highlights(store, totals) == []  # a restart: nothing more to do


@pytest.mark.inmemory
async def test_ingest_backfills_at_start_from_its_recorded_verdicts(tmp_path, monkeypatch):
    monkeypatch.setenv("CTROPS_LOG_JSON", "false")
    settings = IngestSettings(data_dir=tmp_path / "data", topic_prefix=f"i{new_id()[:8]}.")
    with root_logging_kept():
        runtime = ServiceRuntime("ingest", settings, bus_factory=InMemoryBroker().bus_factory)
        handlers.register(runtime, settings)
        old, verdict = accepted_upload(runtime.store, tmp_path, 4)
        runtime.store.delete(highlights_path(old))
        Verdicts(runtime.engine).put(old, Topic.FILE_UPLOADED, verdict)  # recorded as ingest records it
        await runtime.start(serve_http=False, handle_signals=False)
        try:
            deadline = time.monotonic() + 20
            while not runtime.store.exists(highlights_path(old)):
                assert time.monotonic() < deadline, "ingest did not build the missing highlights at start"
                await asyncio.sleep(0.05)
        finally:
            await runtime.shutdown()
    stored = read_document(runtime.store, highlights_path(old), AudienceHighlights)
    assert stored.overall_ctr == verdict.info.ctr and stored.min_rows == 30
