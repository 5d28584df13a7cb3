"""The verdict given for each upload, kept so that handling an upload again repeats it exactly.

A crash can fall between writing the outputs and the bus recording the event as done;
the redelivered upload then republishes the stored verdict instead of working again
(and instead of answering "not found" for an upload that was rejected and removed).
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import Column, DateTime, Engine, MetaData, String, Table, Text, insert, select
from sqlalchemy.exc import IntegrityError

from ctrops_common.events import TOPIC_PAYLOADS, Payload, Topic
from ctrops_common.migrate import Schema, upgrade

metadata = MetaData()

verdicts = Table(
    "ingest_verdicts",
    metadata,
    Column("file_id", String(64), primary_key=True),
    Column("topic", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False),
)


class Verdicts:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        upgrade(engine, Schema.of_service("ingest"))  # ctrops_ingest/migrations

    def get(self, file_id: str) -> tuple[Topic, Payload] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(verdicts).where(verdicts.c.file_id == file_id)).first()
        if row is None:
            return None
        topic = Topic(row.topic)
        return topic, TOPIC_PAYLOADS[topic].model_validate_json(row.payload)

    def put(self, file_id: str, topic: Topic, payload: Payload) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(verdicts).values(
                    file_id=file_id, topic=topic.value, payload=payload.model_dump_json(),
                    decided_at=datetime.now(timezone.utc),
                ))
        except IntegrityError:
            pass  # decided before (a redelivery): the first verdict stands
