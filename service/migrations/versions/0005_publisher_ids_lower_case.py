"""publisher ids lower-cased: the webhook now treats them case-insensitively

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 09:10:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A publisher recorded as "Acme" keeps its limit and its tokens once the webhook
    # looks it up as "acme". Two rows that differ only by case are left as they are
    # (merging them is a person's decision); the lower-case one is the one used.
    op.execute(
        """
        UPDATE publishers SET external_id = lower(external_id)
        WHERE external_id <> lower(external_id)
          AND (SELECT count(*) FROM publishers AS other
               WHERE lower(other.external_id) = lower(publishers.external_id)) = 1
        """
    )


def downgrade() -> None:
    pass  # the original case is not kept; lower-case ids work with the older code too
