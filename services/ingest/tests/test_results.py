"""Verdicts are stored once per upload and read back as typed payloads."""

from __future__ import annotations

from ctrops_common.db import make_engine
from ctrops_common.events import FileRejected, Topic, new_id
from ctrops_ingest.results import Verdicts


def test_first_verdict_stands(tmp_path):
    verdicts = Verdicts(make_engine(f"sqlite:///{tmp_path / 'ingest.sqlite3'}"))
    file_id = new_id()
    assert verdicts.get(file_id) is None
    first = FileRejected(file_id=file_id, filename="a.csv", status_code=400, message="first")
    verdicts.put(file_id, Topic.FILE_REJECTED, first)
    verdicts.put(file_id, Topic.FILE_REJECTED, first.model_copy(update={"message": "second"}))
    topic, payload = verdicts.get(file_id)
    assert topic == Topic.FILE_REJECTED
    assert isinstance(payload, FileRejected) and payload.message == "first"
