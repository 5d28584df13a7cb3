"""Baseline: the service's processed-events table, as ``create_all`` made it before migrations.

Revision ID: 0001
Revises: (none)
"""

import sqlalchemy as sa
from alembic import op

from ctrops_common.migrate import create_table, service

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_table(
        f"{service()}_processed_events",
        sa.Column("group_id", sa.String(200), primary_key=True),
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table(f"{service()}_processed_events")
