"""import warnings: each source counts the ranges it could not read

Revision ID: a0002
Revises: a0001
Create Date: 2026-12-03 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a0002"
down_revision: str | None = "a0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("advisory_sources", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("warning_count", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("warnings", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("advisory_sources", schema=None) as batch_op:
        batch_op.drop_column("warnings")
        batch_op.drop_column("warning_count")
