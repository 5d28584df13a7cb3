"""Rate limits in the database: the moving windows of CTROPS_RATE_LIMIT_STORAGE=database://
(ctrops_gateway/rate_limit_store.py).

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
        "gateway_rate_limits",
        sa.Column("key", sa.String(512), primary_key=True),
        sa.Column("hits", sa.Text, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Index("ix_gateway_rate_limits_expires_at", "expires_at"),
    )


def downgrade() -> None:
    op.drop_table("gateway_rate_limits")
