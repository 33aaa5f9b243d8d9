"""the CDN: promotions, yanks, the blocklist serial, retro-scan plans; scans record their
advisory snapshot, queue items their retro flag

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 10:08:40.349078
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cdn_documents",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("serial", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_cdn_documents")),
    )
    op.create_table(
        "retro_generations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ruleset", sa.String(length=80), nullable=False),
        sa.Column("advisories", sa.String(length=80), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("planned", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retro_generations")),
    )
    op.create_table(
        "cdn_plugins",
        sa.Column("name", sa.String(length=214), nullable=False),
        sa.Column("publisher_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["publisher_id"], ["publishers.id"], name=op.f("fk_cdn_plugins_publisher_id_publishers")
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_cdn_plugins")),
    )
    op.create_table(
        "retro_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("generation_id", sa.Integer(), nullable=False),
        sa.Column("submission_id", sa.String(length=32), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("scan_id", sa.String(length=32), nullable=True),
        sa.Column("outcome", sa.String(length=10), nullable=True),
        sa.Column("planned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["generation_id"],
            ["retro_generations.id"],
            name=op.f("fk_retro_items_generation_id_retro_generations"),
        ),
        sa.ForeignKeyConstraint(
            ["scan_id"], ["scans.id"], name=op.f("fk_retro_items_scan_id_scans")
        ),
        sa.ForeignKeyConstraint(
            ["submission_id"],
            ["submissions.id"],
            name=op.f("fk_retro_items_submission_id_submissions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retro_items")),
        sa.UniqueConstraint("generation_id", "submission_id", name="uq_retro_items_generation"),
    )
    with op.batch_alter_table("retro_items", schema=None) as batch_op:
        batch_op.create_index("ix_retro_items_state_rank", ["state", "rank"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_retro_items_submission_id"), ["submission_id"], unique=False
        )

    op.create_table(
        "promotions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("submission_id", sa.String(length=32), nullable=False),
        sa.Column("scan_id", sa.String(length=32), nullable=False),
        sa.Column("decision_id", sa.Integer(), nullable=False),
        sa.Column("publisher_id", sa.Integer(), nullable=False),
        sa.Column("plugin_name", sa.String(length=214), nullable=False),
        sa.Column("plugin_version", sa.String(length=64), nullable=False),
        sa.Column("repack_sha256", sa.String(length=64), nullable=False),
        sa.Column("tree_sha256", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("store_synced", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("files", sa.JSON(), nullable=True),
        sa.Column("entry", sa.Text(), nullable=True),
        sa.Column("csp", sa.Text(), nullable=True),
        sa.Column("manifest_sha256", sa.String(length=64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("hits", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("yanked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("yank_reason", sa.Text(), nullable=True),
        sa.Column("yanked_by", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["decision_id"], ["decisions.id"], name=op.f("fk_promotions_decision_id_decisions")
        ),
        sa.ForeignKeyConstraint(
            ["publisher_id"], ["publishers.id"], name=op.f("fk_promotions_publisher_id_publishers")
        ),
        sa.ForeignKeyConstraint(
            ["scan_id"], ["scans.id"], name=op.f("fk_promotions_scan_id_scans")
        ),
        sa.ForeignKeyConstraint(
            ["submission_id"],
            ["submissions.id"],
            name=op.f("fk_promotions_submission_id_submissions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_promotions")),
        sa.UniqueConstraint("plugin_name", "plugin_version", name="uq_promotions_plugin_version"),
        sa.UniqueConstraint("submission_id", name=op.f("uq_promotions_submission_id")),
    )
    with op.batch_alter_table("promotions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_promotions_synced_updated", ["store_synced", "updated_at"], unique=False
        )

    op.create_table(
        "yank_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("promotion_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=8), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["promotion_id"], ["promotions.id"], name=op.f("fk_yank_events_promotion_id_promotions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_yank_events")),
    )
    with op.batch_alter_table("yank_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_yank_events_promotion_id"), ["promotion_id"], unique=False
        )

    with op.batch_alter_table("review_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("retro_state", sa.String(length=12), nullable=True))
        batch_op.add_column(sa.Column("retro_scan_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("retro_delta", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("retro_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_review_items_retro_state"), ["retro_state"], unique=False
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_review_items_retro_scan_id_scans"), "scans", ["retro_scan_id"], ["id"]
        )

    with op.batch_alter_table("scans", schema=None) as batch_op:
        batch_op.add_column(sa.Column("advisories", sa.String(length=80), nullable=True))

    with op.batch_alter_table("submissions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_submissions_plugin_version", ["plugin_name", "plugin_version"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("submissions", schema=None) as batch_op:
        batch_op.drop_index("ix_submissions_plugin_version")

    with op.batch_alter_table("scans", schema=None) as batch_op:
        batch_op.drop_column("advisories")

    with op.batch_alter_table("review_items", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_review_items_retro_scan_id_scans"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_review_items_retro_state"))
        batch_op.drop_column("retro_at")
        batch_op.drop_column("retro_delta")
        batch_op.drop_column("retro_scan_id")
        batch_op.drop_column("retro_state")

    with op.batch_alter_table("yank_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_yank_events_promotion_id"))

    op.drop_table("yank_events")
    with op.batch_alter_table("promotions", schema=None) as batch_op:
        batch_op.drop_index("ix_promotions_synced_updated")

    op.drop_table("promotions")
    with op.batch_alter_table("retro_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_retro_items_submission_id"))
        batch_op.drop_index("ix_retro_items_state_rank")

    op.drop_table("retro_items")
    op.drop_table("cdn_plugins")
    op.drop_table("retro_generations")
    op.drop_table("cdn_documents")
