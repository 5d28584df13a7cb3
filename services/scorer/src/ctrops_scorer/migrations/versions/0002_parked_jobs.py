"""Parked jobs: batch jobs for a run the scorer has not recorded yet (ctrops_scorer/jobs.py).

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
        "scorer_parked",
        sa.Column("job_id", sa.String(64), primary_key=True),
        sa.Column("run_id", sa.String(64), nullable=False, index=True),
        sa.Column("parked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("scorer_parked")
