"""Baseline: the trainer's tables as ``create_all`` made them before migrations (ctrops_trainer/runs.py).

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
        "trainer_runs",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("worker", sa.String(200)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
        sa.Column("mlflow_run_id", sa.String(64)),
        sa.Column("result", sa.Text),
    )


def downgrade() -> None:
    op.drop_table("trainer_runs")
