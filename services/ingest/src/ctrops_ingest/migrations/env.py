"""Alembic environment of ingest's tables; ctrops_common.migrate runs it at start-up."""

from ctrops_common.migrate import run_environment

run_environment()
