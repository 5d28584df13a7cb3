"""Baseline: the gateway's tables as ``create_all`` made them before migrations
(ctrops_gateway/views.py, ctrops_gateway/audit.py).

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
        "gateway_event_log",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(64), nullable=False, unique=True),
        sa.Column("topic", sa.String(64), nullable=False),
        sa.Column("correlation_id", sa.String(64)),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Index("ix_gateway_event_log_topic_corr", "topic", "correlation_id"),
        sa.Index("ix_gateway_event_log_topic_seq", "topic", "seq"),
    )
    create_table(
        "gateway_heartbeats",
        sa.Column("service", sa.String(64), primary_key=True),
        sa.Column("instance", sa.String(200), primary_key=True),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
    )
    create_table(
        "gateway_audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("client_id", sa.String(200), nullable=False),
        sa.Column("auth_method", sa.String(16), nullable=False),
        sa.Column("role", sa.String(16)),
        sa.Column("remote_addr", sa.String(100), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("route", sa.String(200), nullable=False),
        sa.Column("resource", sa.String(64)),
        sa.Column("run_id", sa.String(64)),
        sa.Column("file_id", sa.String(64)),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text),
        sa.Column("duration_ms", sa.Float, nullable=False),
        sa.Index("ix_gateway_audit_action_at", "action", "at"),
        sa.Index("ix_gateway_audit_resource", "resource"),
        sa.Index("ix_gateway_audit_client_at", "client_id", "at"),
    )


def downgrade() -> None:
    for table in ("gateway_audit", "gateway_heartbeats", "gateway_event_log"):
        op.drop_table(table)
