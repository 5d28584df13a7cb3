"""Baseline: the reporter's tables as ``create_all`` made them before migrations (ctrops_reporter/records.py).

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
        "reporter_runs",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("training_done", sa.Text),
        sa.Column("explanation_done", sa.Text),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    create_table(
        "reporter_epochs",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("epoch", sa.Integer, primary_key=True),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("total_epochs", sa.Integer, nullable=False),
        sa.Column("metrics", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("reporter_epochs")
    op.drop_table("reporter_runs")
