"""Baseline: the monitor's tables as ``create_all`` made them before migrations (ctrops_monitor/store.py).

Revision ID: 0001
Revises: (none)
"""

import sqlalchemy as sa
from alembic import op

from ctrops_common.migrate import create_table

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_table(
        "monitor_alerts",
        sa.Column("alert_id", sa.String(200), primary_key=True),
        sa.Column("kind", sa.String(40), nullable=False, index=True),
        sa.Column("subject", sa.String(120), nullable=False, index=True),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("severity", sa.String(10), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("metrics", sa.Text, nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True)),
    )
    create_table(
        "monitor_alert_outbox",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("payload", sa.Text, nullable=False),
    )
    create_table(
        "monitor_runs",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
    )
    create_table(
        "monitor_instances",
        sa.Column("service", sa.String(64), primary_key=True),
        sa.Column("instance", sa.String(200), primary_key=True),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
    )
    create_table(
        "monitor_watched_services",
        sa.Column("service", sa.String(64), primary_key=True),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.Float, nullable=False),
    )
    create_table(
        "monitor_periods",
        sa.Column("period_id", sa.String(200), primary_key=True),
        sa.Column("period", sa.String(20), nullable=False),
        sa.Column("bucket", sa.String(10), nullable=False, index=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("model_kind", sa.String(20), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for table in ("monitor_periods", "monitor_watched_services", "monitor_instances", "monitor_runs",
                  "monitor_alert_outbox", "monitor_alerts"):
        op.drop_table(table)
