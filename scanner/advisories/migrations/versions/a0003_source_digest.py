"""source digest: each imported feed's content digest, for the advisory snapshot identity

Revision ID: a0003
Revises: a0002
Create Date: 2026-12-04 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a0003"
down_revision: str | None = "a0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("advisory_sources", schema=None) as batch_op:
        batch_op.add_column(sa.Column("digest", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("advisory_sources", schema=None) as batch_op:
        batch_op.drop_column("digest")
