"""Migrations of libs/common's tables (each service's processed events) and the pruning of them:
a fresh database gets the table from the revisions, a database made by create_all before
migrations is adopted with its rows, a second run changes nothing, replicas starting at once
do not collide, and rows past the retention are forgotten."""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, DateTime, Engine, MetaData, String, Table, inspect, insert, select, text

from ctrops_common import migrate
from ctrops_common.db import ProcessedEvents, make_engine
from ctrops_common.migrate import Schema, current, head, upgrade
from ctrops_common.testing import until


def sqlite_engine(tmp_path: Path, name: str = "db") -> Engine:
    return make_engine(f"sqlite:///{tmp_path / name}.sqlite3")


def differences(engine: Engine, metadata: MetaData) -> list:
    """What Alembic's autogenerate would change to make the database match ``metadata``."""
    names = set(metadata.tables)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={
            "compare_type": True,
            "include_name": lambda name, type_, _parents: type_ != "table" or name in names,
        })
        return compare_metadata(context, metadata)


def version(engine: Engine, schema: Schema) -> str | None:
    with engine.connect() as conn:
        return current(conn, schema)


def old_processed_events(engine: Engine, service: str) -> Table:
    """The table exactly as ProcessedEvents made it with create_all before migrations."""
    metadata = MetaData()
    table = Table(
        f"{service}_processed_events", metadata,
        Column("group_id", String(200), primary_key=True),
        Column("event_id", String(64), primary_key=True),
        Column("processed_at", DateTime(timezone=True), nullable=False),
    )
    metadata.create_all(engine)
    return table


def test_a_fresh_database_gets_the_table_from_the_revisions(tmp_path: Path) -> None:
    engine = sqlite_engine(tmp_path)
    store = ProcessedEvents(engine, "ingest")
    schema = Schema.common("ingest")
    assert version(engine, schema) == head(schema) == "0002"
    assert differences(engine, store.metadata) == []  # the revisions make what the queries use
    indexes = {i["name"]: i["column_names"] for i in inspect(engine).get_indexes("ingest_processed_events")}
    assert indexes == {"ix_ingest_processed_events_processed_at": ["processed_at"]}
    assert set(inspect(engine).get_table_names()) == {"ingest_processed_events", "ingest_common_alembic_version"}


def test_the_comparison_sees_a_missing_index(tmp_path: Path) -> None:
    """The check above would pass on anything if the comparison saw nothing."""
    engine = sqlite_engine(tmp_path)
    old_processed_events(engine, "ingest")  # no index on processed_at
    wanted = MetaData()
    Table(
        "ingest_processed_events", wanted,
        Column("group_id", String(200), primary_key=True),
        Column("event_id", String(64), primary_key=True),
        Column("processed_at", DateTime(timezone=True), nullable=False, index=True),
    )
    assert [d[0] for d in differences(engine, wanted)] == ["add_index"]


def test_a_database_made_by_create_all_is_adopted_with_its_rows(tmp_path: Path) -> None:
    engine = sqlite_engine(tmp_path)
    table = old_processed_events(engine, "trainer")
    with engine.begin() as conn:
        conn.execute(insert(table).values(group_id="trainer", event_id="e1",
                                          processed_at=datetime.now(timezone.utc)))
    store = ProcessedEvents(make_engine(str(engine.url)), "trainer")
    assert store.seen("trainer", "e1"), "the rows from before migrations are kept"
    assert version(engine, Schema.common("trainer")) == "0002"
    assert differences(engine, store.metadata) == []  # and 0002's index was added to the old table


def test_running_again_is_a_no_op(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    engine = sqlite_engine(tmp_path)
    with caplog.at_level(logging.INFO, logger="ctrops_common.migrate"):
        ProcessedEvents(engine, "monitor")
    assert "migrated ctrops_common:migrations from an empty database to 0002" in caplog.text
    caplog.clear()
    ProcessedEvents(engine, "monitor").mark("g", "e")
    again = make_engine(str(engine.url))  # a new process: no cache, the version table says head
    with caplog.at_level(logging.INFO, logger="ctrops_common.migrate"):
        store = ProcessedEvents(again, "monitor")
    assert "migrated" not in caplog.text
    assert store.seen("g", "e")


def test_services_sharing_a_database_keep_their_own_tables_and_versions(tmp_path: Path) -> None:
    engine = sqlite_engine(tmp_path)
    ingest, trainer = ProcessedEvents(engine, "ingest"), ProcessedEvents(engine, "trainer")
    ingest.mark("g", "e")
    assert not trainer.seen("g", "e")
    assert version(engine, Schema.common("ingest")) == version(engine, Schema.common("trainer")) == "0002"
    assert {"ingest_common_alembic_version", "trainer_common_alembic_version"} <= set(inspect(engine).get_table_names())


def start_together(engines: list[Engine], schema: Schema) -> list[BaseException]:
    """``upgrade`` from several threads released at the same instant; the errors they raised."""
    barrier = threading.Barrier(len(engines))
    errors: list[BaseException] = []

    def one(engine: Engine) -> None:
        barrier.wait()
        try:
            upgrade(engine, schema)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return errors


def test_replicas_starting_at_once_on_sqlite(tmp_path: Path) -> None:
    engines = [sqlite_engine(tmp_path) for _ in range(4)]  # four processes' engines, one file
    assert start_together(engines, Schema.common("scorer")) == []
    assert version(engines[0], Schema.common("scorer")) == "0002"
    with engines[0].connect() as conn:
        assert conn.execute(text("select count(*) from scorer_common_alembic_version")).scalar() == 1


def test_a_connection_opened_while_another_holds_a_new_files_write_lock_waits_for_it(tmp_path: Path) -> None:
    """Switching a file to WAL needs it alone, and SQLite refuses at once ("database is locked"), without
    its busy timeout, while another connection writes: the failure of replicas starting together
    (one of them in a full run). The connection waits for the lock instead."""
    import sqlite3
    import time

    path = tmp_path / "db.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # a replica creating its tables, the file not yet in WAL mode
    holder.execute("CREATE TABLE first_replica (x)")
    release = threading.Timer(0.5, lambda: holder.execute("COMMIT"))
    release.start()
    started = time.monotonic()
    try:
        with make_engine(f"sqlite:///{path}").connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("select count(*) from first_replica")).scalar() == 0
    finally:
        release.join()
        holder.close()
    assert time.monotonic() - started >= 0.4  # it waited for the other's commit


def test_a_failed_revision_leaves_the_database_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite: the revisions run in one transaction, so a failure in 0002 rolls back 0001 too."""
    engine = sqlite_engine(tmp_path)
    from alembic import op

    def broken(*_args, **_kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(op, "create_index", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        upgrade(engine, Schema.common("reporter"))
    assert inspect(engine).get_table_names() == []
    monkeypatch.undo()
    upgrade(engine, Schema.common("reporter"))
    assert version(engine, Schema.common("reporter")) == "0002"


def test_a_database_migrated_by_a_newer_release_is_left_alone(tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """A rollback (or an old replica restarting mid-rollout) meets a revision it does not know:
    it starts on the database as it is, since revisions only add."""
    engine = sqlite_engine(tmp_path)
    store = ProcessedEvents(engine, "trainer")
    with engine.begin() as conn:
        conn.execute(text("UPDATE trainer_common_alembic_version SET version_num = '0099'"))
    caplog.clear()  # the first start's "migrated" line is captured too where an earlier test set INFO
    with caplog.at_level(logging.INFO, logger="ctrops_common.migrate"):
        older = ProcessedEvents(make_engine(str(engine.url)), "trainer")
    assert "at revision 0099 of ctrops_common:migrations, newer than this code's 0002" in caplog.text
    assert "migrated" not in caplog.text
    older.mark("g", "e")
    assert store.seen("g", "e")
    assert version(engine, Schema.common("trainer")) == "0099"


def test_the_alembic_command_line_is_told_how_these_run(tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "ctrops_common:migrations")
    with pytest.raises(RuntimeError, match="ctrops_common.migrate.upgrade"):
        command.upgrade(config, "head")


# --- PostgreSQL: one database shared by every service, as compose and Kubernetes run it --------------


def test_on_postgres_fresh_adopted_and_again(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    table = old_processed_events(engine, "ingest")  # ingest from before migrations...
    with engine.begin() as conn:
        conn.execute(insert(table).values(group_id="ingest", event_id="old", processed_at=datetime.now(timezone.utc)))
    ingest = ProcessedEvents(engine, "ingest")
    trainer = ProcessedEvents(engine, "trainer")  # ...and a trainer new to this database
    assert ingest.seen("ingest", "old")
    for store, service in ((ingest, "ingest"), (trainer, "trainer")):
        assert version(engine, Schema.common(service)) == "0002"
        assert differences(engine, store.metadata) == []
    again = make_engine(postgres_url)
    ProcessedEvents(again, "ingest")
    assert ProcessedEvents(again, "ingest").seen("ingest", "old")
    engine.dispose()
    again.dispose()


def test_replicas_starting_at_once_on_postgres(postgres_url: str) -> None:
    engines = [make_engine(postgres_url) for _ in range(4)]
    assert start_together(engines, Schema.common("gateway")) == []
    with engines[0].connect() as conn:
        assert current(conn, Schema.common("gateway")) == "0002"
        assert conn.execute(text("select count(*) from gateway_common_alembic_version")).scalar() == 1
    for engine in engines:
        engine.dispose()


# --- pruning ----------------------------------------------------------------------------------------


def mark_at(store: ProcessedEvents, event_id: str, when: datetime) -> None:
    with store.engine.begin() as conn:
        conn.execute(insert(store.table).values(group_id="g", event_id=event_id, processed_at=when))


def remembered(store: ProcessedEvents) -> set[str]:
    with store.engine.connect() as conn:
        return set(conn.execute(select(store.table.c.event_id)).scalars())


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_prune_forgets_only_what_is_older_than_the_cut(tmp_path: Path, backend: str, request) -> None:
    url = f"sqlite:///{tmp_path / 'db'}.sqlite3" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    store = ProcessedEvents(make_engine(url), "monitor")
    now = datetime.now(timezone.utc)
    mark_at(store, "month-old", now - timedelta(days=30))
    mark_at(store, "just-past", now - timedelta(days=14, minutes=1))
    mark_at(store, "within", now - timedelta(days=13, hours=23))
    store.mark("g", "now")
    # The cut in another zone is the same instant (SQLite compares the stored UTC text).
    cut = (now - timedelta(days=14)).astimezone(timezone(timedelta(hours=9)))
    assert store.prune(cut) == 2
    assert remembered(store) == {"within", "now"}
    assert store.prune(cut) == 0
    store.engine.dispose()


def test_the_runtime_prunes_at_start_and_then_every_interval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ctrops_common.service import PRUNE_INTERVAL_S, ServiceRuntime
    from ctrops_common.settings import ServiceSettings

    assert PRUNE_INTERVAL_S == 3600
    monkeypatch.setenv("CTROPS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CTROPS_PROCESSED_EVENTS_RETENTION_DAYS", "3")
    monkeypatch.delenv("CTROPS_DATABASE_URL", raising=False)
    runtime = ServiceRuntime("explainer", ServiceSettings())
    store = runtime.processed
    now = datetime.now(timezone.utc)
    mark_at(store, "four-days", now - timedelta(days=4))
    mark_at(store, "two-days", now - timedelta(days=2))

    rounds: list[int] = []  # what each pruning round removed, in order
    prune = runtime.prune_processed

    def counted() -> int:
        rounds.append(prune())
        return rounds[-1]

    runtime.prune_processed = counted  # type: ignore[method-assign]

    async def run() -> None:  # polled, not slept: a loaded machine runs the pruning thread late
        runtime.prune_interval_s = 0.2
        job = asyncio.create_task(runtime._prune_processed_events())
        await until(lambda: rounds, "the first round", timeout_s=10)
        assert rounds[0] == 1 and remembered(store) == {"two-days"}  # at start
        mark_at(store, "five-days", now - timedelta(days=5))  # e.g. a clock that jumped
        await until(lambda: remembered(store) == {"two-days"}, "a later round", timeout_s=10)
        assert len(rounds) >= 2  # and again an interval later
        runtime.stop_event.set()
        await asyncio.wait_for(job, 2)

    asyncio.run(run())


def test_retention_is_a_setting_with_a_safe_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from ctrops_common.settings import CommonSettings

    monkeypatch.delenv("CTROPS_PROCESSED_EVENTS_RETENTION_DAYS", raising=False)
    assert CommonSettings().processed_events_retention_days == 14
    monkeypatch.setenv("CTROPS_PROCESSED_EVENTS_RETENTION_DAYS", "0.5")
    with pytest.raises(ValidationError):
        CommonSettings()


def test_schema_names() -> None:
    assert Schema.of_service("trainer") == Schema("ctrops_trainer:migrations", "trainer", "trainer_alembic_version")
    assert Schema.common("trainer").version_table == "trainer_common_alembic_version"
    assert migrate.head(Schema.common("x")) == "0002"
