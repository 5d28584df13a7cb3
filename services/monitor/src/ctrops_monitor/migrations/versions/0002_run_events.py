"""Run events: the time of each run's pipeline events, for the stages in monitor.snapshot
(ctrops_monitor/store.py ``monitor_run_events``, ctrops_monitor/pipeline.py).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from ctrops_common.migrate import create_table

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_table(  # adopted where a database made by create_all from the current tables has it
        "monitor_run_events",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("topic", sa.String(64), primary_key=True),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("monitor_run_events")
