"""advisory database

Revision ID: a0001
Revises:
Create Date: 2026-11-22 04:25:11.204106
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "advisory_sources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("snapshot", sa.String(length=40), nullable=True),
        sa.Column("newest_modified", sa.String(length=40), nullable=True),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("advisory_count", sa.Integer(), nullable=False),
        sa.Column("licence", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_advisory_sources")),
        sa.UniqueConstraint("name", name=op.f("uq_advisory_sources_name")),
    )
    op.create_table(
        "advisories",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("advisory_id", sa.String(length=100), nullable=False),
        sa.Column("aliases", sa.JSON(), nullable=False),
        sa.Column("severity", sa.String(length=20), nullable=True),
        sa.Column("cvss", sa.String(length=200), nullable=True),
        sa.Column("modified", sa.String(length=40), nullable=True),
        sa.Column("published", sa.String(length=40), nullable=True),
        sa.Column("references", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["advisory_sources.id"],
            name=op.f("fk_advisories_source_id_advisory_sources"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_advisories")),
    )
    with op.batch_alter_table("advisories", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_advisories_advisory_id"), ["advisory_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_advisories_source_id"), ["source_id"], unique=False)

    op.create_table(
        "js_detectors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("library", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("pattern", sa.String(length=2000), nullable=False),
        sa.Column("version", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["advisory_sources.id"],
            name=op.f("fk_js_detectors_source_id_advisory_sources"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_js_detectors")),
    )
    with op.batch_alter_table("js_detectors", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_js_detectors_source_id"), ["source_id"], unique=False)

    op.create_table(
        "advisory_packages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("advisory_pk", sa.Integer(), nullable=False),
        sa.Column("ecosystem", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("ranges", sa.JSON(), nullable=False),
        sa.Column("versions", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["advisory_pk"],
            ["advisories.id"],
            name=op.f("fk_advisory_packages_advisory_pk_advisories"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_advisory_packages")),
    )
    with op.batch_alter_table("advisory_packages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_advisory_packages_advisory_pk"), ["advisory_pk"], unique=False
        )
        batch_op.create_index(
            "ix_advisory_packages_ecosystem_name", ["ecosystem", "name"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("advisory_packages", schema=None) as batch_op:
        batch_op.drop_index("ix_advisory_packages_ecosystem_name")
        batch_op.drop_index(batch_op.f("ix_advisory_packages_advisory_pk"))

    op.drop_table("advisory_packages")
    with op.batch_alter_table("js_detectors", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_js_detectors_source_id"))

    op.drop_table("js_detectors")
    with op.batch_alter_table("advisories", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_advisories_source_id"))
        batch_op.drop_index(batch_op.f("ix_advisories_advisory_id"))

    op.drop_table("advisories")
    op.drop_table("advisory_sources")
