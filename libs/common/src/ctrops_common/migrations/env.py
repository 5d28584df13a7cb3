"""Alembic environment of libs/common's tables (each service's processed events); see
ctrops_common.migrate, which runs it."""

from ctrops_common.migrate import run_environment

run_environment()
