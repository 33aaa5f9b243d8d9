"""scans record the canonical repack of the admitted tree and the tree digest

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("scans", schema=None) as batch_op:
        batch_op.add_column(sa.Column("repack_sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("repack_size", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("tree_sha256", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("scans", schema=None) as batch_op:
        batch_op.drop_column("tree_sha256")
        batch_op.drop_column("repack_size")
        batch_op.drop_column("repack_sha256")
