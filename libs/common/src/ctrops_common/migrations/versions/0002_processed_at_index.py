"""An index on processed_at: the hourly prune deletes rows older than the retention without
reading the whole table.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

from ctrops_common.migrate import service

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = f"{service()}_processed_events"
    op.create_index(f"ix_{table}_processed_at", table, ["processed_at"])


def downgrade() -> None:
    table = f"{service()}_processed_events"
    op.drop_index(f"ix_{table}_processed_at", table_name=table)
