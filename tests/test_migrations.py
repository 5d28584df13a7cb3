"""Every service's migrations (ctrops_<service>/migrations) against the tables its code queries:
a fresh database gets exactly those tables, a database made by create_all before migrations
is adopted with its rows (not re-created), a second start changes nothing, and on PostgreSQL
all services share one database as compose and Kubernetes run them. No service creates a table
with create_all any more."""

from __future__ import annotations

import importlib
import logging
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, MetaData, inspect, text

from ctrops_common.db import make_engine
from ctrops_common.migrate import Schema, current, head

ROOT = Path(__file__).resolve().parents[1]

# service -> the modules whose ``metadata`` holds its tables, and the store that opens them.
TABLES = {
    "gateway": (["ctrops_gateway.views", "ctrops_gateway.audit", "ctrops_gateway.rate_limit_store"],
                "ctrops_gateway.views:ReadModel"),
    "trainer": (["ctrops_trainer.runs"], "ctrops_trainer.runs:RunStore"),
    "reporter": (["ctrops_reporter.records"], "ctrops_reporter.records:Records"),
    "monitor": (["ctrops_monitor.store"], "ctrops_monitor.store:MonitorStore"),
    "scorer": (["ctrops_scorer.catalogue", "ctrops_scorer.jobs"], "ctrops_scorer.catalogue:RunCatalogue"),
    "ingest": (["ctrops_ingest.results"], "ctrops_ingest.results:Verdicts"),
}
NOT_YET_MIGRATED: set[str] = set()


def service_metadata(service: str) -> MetaData:
    """One MetaData with every table the service's code declares."""
    merged = MetaData()
    for module in TABLES[service][0]:
        for table in importlib.import_module(module).metadata.tables.values():
            table.to_metadata(merged)
    return merged


def open_store(service: str, engine: Engine) -> object:
    module, _, name = TABLES[service][1].partition(":")
    return getattr(importlib.import_module(module), name)(engine)


def differences(engine: Engine, metadata: MetaData) -> list:
    names = set(metadata.tables)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={
            "compare_type": True,
            "include_name": lambda name, type_, _parents: type_ != "table" or name in names,
        })
        return compare_metadata(context, metadata)


def version(engine: Engine, service: str) -> str | None:
    with engine.connect() as conn:
        return current(conn, Schema.of_service(service))


@pytest.fixture(params=sorted(TABLES))
def service(request) -> str:
    return request.param


def test_no_service_creates_tables_with_create_all() -> None:
    found = {path.relative_to(ROOT).as_posix()
             for path in [*ROOT.glob("services/*/src/**/*.py"), *ROOT.glob("libs/common/src/**/*.py")]
             if "create_all(" in path.read_text()}
    assert {p.split("/")[1] for p in found} <= NOT_YET_MIGRATED, sorted(found)
    assert set(TABLES) | NOT_YET_MIGRATED == {p.parent.name for p in ROOT.glob("services/*/pyproject.toml")} - {
        "explainer"}, "every service with tables has migrations (the explainer keeps none)"


def test_the_explainer_keeps_no_tables() -> None:
    code = "\n".join(p.read_text() for p in ROOT.glob("services/explainer/src/**/*.py"))
    assert not re.search(r"\bTable\(\s*\"", code)


def test_a_fresh_database_gets_exactly_the_tables_the_code_uses(service: str, tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / service}.sqlite3")
    open_store(service, engine)
    metadata = service_metadata(service)
    assert version(engine, service) == head(Schema.of_service(service))
    assert differences(engine, metadata) == []
    assert set(inspect(engine).get_table_names()) == set(metadata.tables) | {f"{service}_alembic_version"}
    assert all(name.startswith(f"{service}_") for name in metadata.tables), "table names start with the service's"


def test_a_database_made_by_create_all_is_adopted_not_recreated(service: str, tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / service}.sqlite3")
    metadata = service_metadata(service)
    metadata.create_all(engine)  # as the service did before migrations
    marker = next(iter(metadata.tables))
    with engine.begin() as conn:
        conn.execute(text(f"CREATE TABLE {service}_kept (n INTEGER)"))  # a sign the file was not replaced
        conn.execute(text(f"INSERT INTO {service}_kept VALUES (1)"))
        rows_before = conn.execute(text(f"SELECT count(*) FROM {marker}")).scalar()
    with caplog.at_level(logging.INFO, logger="ctrops_common.migrate"):
        open_store(service, make_engine(str(engine.url)))
    newest = head(Schema.of_service(service))
    assert f"{service}: migrated ctrops_{service}:migrations from an empty database to {newest}" in caplog.text
    assert caplog.text.count("exists (made before migrations): adopted") == len(metadata.tables)
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT n FROM {service}_kept")).scalar() == 1
        assert conn.execute(text(f"SELECT count(*) FROM {marker}")).scalar() == rows_before
    assert version(engine, service) == newest
    assert differences(engine, metadata) == []


def test_the_scorer_at_its_baseline_gains_the_parked_jobs_table(tmp_path: Path) -> None:
    """A second revision on a database already at the first: the new table added, the rows kept."""
    from alembic import command

    from ctrops_common.migrate import _config
    from ctrops_scorer.jobs import ParkedJobs

    url = f"sqlite:///{tmp_path}/scorer.sqlite3"
    engine = make_engine(url)
    schema = Schema.of_service("scorer")
    with engine.begin() as conn:
        command.upgrade(_config(schema, conn), "0001")
        conn.execute(text("INSERT INTO scorer_jobs VALUES ('j1', '2026-03-01 00:00:00', '{}')"))
    assert version(engine, "scorer") == "0001" and "scorer_parked" not in inspect(engine).get_table_names()
    ParkedJobs(make_engine(url))
    assert version(engine, "scorer") == "0002" and "scorer_parked" in inspect(engine).get_table_names()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT job_id FROM scorer_jobs")).scalars().all() == ["j1"]
    assert differences(engine, service_metadata("scorer")) == []


def test_the_adoption_keeps_the_rows(tmp_path: Path) -> None:
    """One service in detail: a trainer run recorded before migrations is still there after."""
    from ctrops_trainer.runs import RunStore, metadata, trainer_runs

    engine = make_engine(f"sqlite:///{tmp_path}/trainer.sqlite3")
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(trainer_runs.insert().values(run_id="r1", status="completed", attempts=1,
                                                  updated_at=datetime.now(timezone.utc), cancel_requested=False))
    store = RunStore(make_engine(str(engine.url)))
    assert store.get("r1")["status"] == "completed"


def test_starting_again_is_a_no_op(service: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    url = f"sqlite:///{tmp_path / service}.sqlite3"
    open_store(service, make_engine(url))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ctrops_common.migrate"):
        open_store(service, make_engine(url))  # a restart: a new engine, the version table at head
    assert "migrated" not in caplog.text


def test_the_service_package_ships_its_migrations(service: str) -> None:
    folder = ROOT / "services" / service / "src" / f"ctrops_{service}" / "migrations"
    assert (folder / "env.py").is_file()
    revisions = sorted(p.name for p in (folder / "versions").glob("*.py"))
    assert revisions and revisions[0].startswith("0001_"), revisions


def test_every_service_shares_one_postgres_database(postgres_url: str) -> None:
    """As compose and Kubernetes run them: one database, each service's tables and version table."""
    engine = make_engine(postgres_url)
    for service in TABLES:
        open_store(service, engine)
    for service in TABLES:
        assert version(engine, service) == head(Schema.of_service(service))
        assert differences(engine, service_metadata(service)) == []
    versions = {t for t in inspect(engine).get_table_names() if t.endswith("_alembic_version")}
    assert versions == {f"{s}_alembic_version" for s in TABLES}
    engine.dispose()


def test_a_postgres_database_made_by_create_all_is_adopted(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    for service in TABLES:
        service_metadata(service).create_all(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO monitor_alert_outbox (payload) VALUES ('{}')"))
    again = make_engine(postgres_url)
    for service in TABLES:
        open_store(service, again)
        assert version(again, service) == head(Schema.of_service(service))
        assert differences(again, service_metadata(service)) == []
    with again.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM monitor_alert_outbox")).scalar() == 1
    engine.dispose()
    again.dispose()
