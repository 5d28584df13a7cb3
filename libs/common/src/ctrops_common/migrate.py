"""Schema migrations: every table comes from Alembic revisions, applied when a service starts.

One migration history per owner of tables, kept beside the code that uses them:

- each service's own tables: ``ctrops_<service>/migrations`` (version table
  ``<service>_alembic_version``);
- the processed-events table every consumer has (``ctrops_common.db.ProcessedEvents``):
  ``ctrops_common/migrations``, whose revisions name the table after the service that runs
  them (version table ``<service>_common_alembic_version``).

Without ``CTROPS_DATABASE_URL`` each service has its own SQLite file; with it, every service
shares one PostgreSQL database (each table name starts with its service's name), which is why
each history records where it stands in a version table of its own.

``upgrade(engine, schema)`` brings a database to the newest revision. It is idempotent (a
database at head costs one query) and safe when several replicas start at once: on
PostgreSQL the revisions run in one transaction holding an advisory lock named after the
version table (DDL is transactional there, so a failed upgrade leaves nothing half done); on
SQLite they run in one ``BEGIN IMMEDIATE`` transaction, which other writers wait for. The
replica that waited finds the database at head and does nothing.

The first revision of every history is the baseline: the tables as ``metadata.create_all``
made them before migrations existed. It creates each table only where it is missing, so a
database from before (its tables and rows) is adopted as it is and recorded at the baseline;
later revisions then apply to it like to any other.
"""

from __future__ import annotations

import logging
import threading
import weakref
import zlib
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

log = logging.getLogger(__name__)
# Alembic narrates every connection ("Context impl SQLiteImpl.", its plugins); the one line
# ``upgrade`` logs says what changed.
logging.getLogger("alembic").setLevel(logging.WARNING)


@dataclass(frozen=True)
class Schema:
    """One migration history applied to one database.

    ``location`` is the revisions' folder as Alembic's ``script_location`` (``package:folder``),
    ``service`` the owner whose name starts every table (and the version table).
    """

    location: str
    service: str
    version_table: str

    @classmethod
    def of_service(cls, service: str) -> Schema:
        """The service's own tables: ``ctrops_<service>/migrations``."""
        return cls(f"ctrops_{service}:migrations", service, f"{service}_alembic_version")

    @classmethod
    def common(cls, service: str) -> Schema:
        """The shared library's tables (processed events) of ``service``."""
        return cls("ctrops_common:migrations", service, f"{service}_common_alembic_version")


# Histories already brought to head per engine in this process: the stores of one service
# (the gateway's read model and audit log, say) each ask at start-up; one upgrade is enough.
_done: weakref.WeakKeyDictionary[Engine, set[Schema]] = weakref.WeakKeyDictionary()
_done_lock = threading.Lock()


def _config(schema: Schema, connection: Connection | None = None):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", schema.location)
    config.attributes.update(connection=connection, schema=schema)
    return config


def _script(schema: Schema):
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config(schema))


def head(schema: Schema) -> str:
    """The newest revision of the history."""
    heads = _script(schema).get_heads()
    assert len(heads) == 1, f"{schema.location} has {len(heads)} heads {heads}: merge them into one"
    return heads[0]


def _is_newer(schema: Schema, revision: str | None) -> bool:
    """A revision this code does not know: a newer release migrated the database (a rollback,
    or an old replica restarting mid-rollout)."""
    from alembic.util import CommandError

    if revision is None:
        return False
    try:
        return _script(schema).get_revision(revision) is None
    except CommandError:
        return True


def current(connection: Connection, schema: Schema) -> str | None:
    """The revision the database is at (None: no revision applied yet)."""
    from alembic.runtime.migration import MigrationContext

    context = MigrationContext.configure(connection, opts={"version_table": schema.version_table})
    return context.get_current_revision()


def upgrade(engine: Engine, schema: Schema) -> None:
    """Bring the database to the newest revision of ``schema`` (see the module's docstring).

    A database already past this code's newest revision is left as it is, with a warning:
    revisions only add, so older code keeps working on it (docs/architecture.md)."""
    with _done_lock:
        if schema in _done.get(engine, ()):
            return
    target = head(schema)
    with engine.connect() as conn:
        at = current(conn, schema)
        conn.rollback()
        if at != target and not _is_newer(schema, at):
            at = _upgrade_locked(conn, schema, target)
    if at != target:
        log.warning("%s: the database is at revision %s of %s, newer than this code's %s: left as it is",
                    schema.service, at, schema.location, target)
    with _done_lock:
        _done.setdefault(engine, set()).add(schema)


def _upgrade_locked(conn: Connection, schema: Schema, target: str) -> str | None:
    """Upgrade under the database's lock; the revision the database is at afterwards."""
    from alembic import command

    dialect = conn.dialect.name
    if dialect == "sqlite":
        # pysqlite opens no transaction before DDL: take SQLite's write lock explicitly, so a
        # second process waits here (busy_timeout) instead of racing to create the same tables.
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.begin()
        if dialect == "postgresql":
            key = zlib.crc32(f"ctrops-migrate:{schema.version_table}".encode())
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))
    try:
        before = current(conn, schema)  # another replica may have migrated while we waited
        after = before
        if before != target and not _is_newer(schema, before):
            command.upgrade(_config(schema, conn), "head")
            after = target
            log.info("%s: migrated %s from %s to %s", schema.service, schema.location,
                     before or "an empty database", target)
        conn.commit()
        return after
    except BaseException:
        conn.rollback()
        raise


def run_environment() -> None:
    """The body of every history's ``env.py``: run the revisions on the connection ``upgrade``
    holds (inside its transaction and lock)."""
    from alembic import context

    connection = context.config.attributes.get("connection")
    schema: Schema | None = context.config.attributes.get("schema")
    if connection is None or schema is None:
        raise RuntimeError(
            "these migrations run through ctrops_common.migrate.upgrade(engine, schema), which a service "
            "calls at start-up; the alembic command line has no database of its own here"
        )
    context.configure(connection=connection, version_table=schema.version_table)
    with context.begin_transaction():
        context.run_migrations()


# --- helpers for the revisions ---------------------------------------------------------------------


def service() -> str:
    """Inside a revision: the service whose tables it makes (names the common tables)."""
    from alembic import context

    return context.config.attributes["schema"].service


def create_table(name: str, *elements: Any) -> bool:
    """Baseline revisions: create the table (with its indexes) unless ``create_all`` made it
    before migrations existed, in which case it is adopted as it is. True when created."""
    from alembic import op

    if sa.inspect(op.get_bind()).has_table(name):
        log.info("table %s exists (made before migrations): adopted", name)
        return False
    op.create_table(name, *elements)
    return True
