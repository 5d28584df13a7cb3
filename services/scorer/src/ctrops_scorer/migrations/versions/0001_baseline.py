"""Baseline: the scorer's tables as ``create_all`` made them before migrations
(ctrops_scorer/catalogue.py, ctrops_scorer/jobs.py).

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
        "scorer_runs",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("promoted", sa.Boolean, nullable=False, index=True),
        sa.Column("payload", sa.Text, nullable=False),
    )
    create_table(
        "scorer_importance",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("features", sa.Text, nullable=False),
    )
    create_table(
        "scorer_jobs",
        sa.Column("job_id", sa.String(64), primary_key=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for table in ("scorer_jobs", "scorer_importance", "scorer_runs"):
        op.drop_table(table)
