"""advisory database (moved to the scanner's own chain)

The advisory tables are the scanner's and are migrated by scanner.advisories.migrations
(revision a0001, table alembic_version_advisories). This revision stays so databases
stamped 0001, 0002 or 0003 before the split keep upgrading along the same chain.

Revision ID: 0001
Revises:
Create Date: 2026-11-22 04:25:11.204106
"""

from collections.abc import Sequence

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
