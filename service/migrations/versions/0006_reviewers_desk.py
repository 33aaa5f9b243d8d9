"""the reviewers' desk: users, queue items, marks, allowlists, canned reasons

Another branch adds 0004; the chain is joined when both land.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 08:30:01.520494
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


SEED_REASONS = (
    (
        "malicious-code",
        "Malicious or deceptive code",
        "The bundle contains code that acts against the users or the host page.",
    ),
    (
        "undeclared-capability",
        "Undeclared capability",
        "The plugin uses capabilities (network origins, storage, cookies...) that its"
        " plugin.json does not declare. Declare them or remove the code that uses them.",
    ),
    (
        "obfuscated-code",
        "Obfuscated code",
        "Code must be reviewable: ship readable or minified code, not obfuscated code.",
    ),
    (
        "vulnerable-dependency",
        "Vulnerable dependency",
        "A bundled dependency has a known vulnerability. Upgrade it to a fixed version.",
    ),
    (
        "dom-escape",
        "Writes outside its container",
        "The plugin changes the host page outside the element it was given.",
    ),
)


def upgrade() -> None:
    op.create_table(
        "canned_reasons",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_canned_reasons")),
        sa.UniqueConstraint("code", name=op.f("uq_canned_reasons_code")),
    )
    op.create_table(
        "desk_switches",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("changed_by", sa.String(length=200), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_desk_switches")),
    )
    op.create_table(
        "login_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_attempts")),
    )
    with op.batch_alter_table("login_attempts", schema=None) as batch_op:
        batch_op.create_index("ix_login_attempts_ip_at", ["ip", "at"], unique=False)
        batch_op.create_index("ix_login_attempts_name_at", ["name", "at"], unique=False)

    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=12), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("must_change_password", sa.Boolean(), nullable=False),
        sa.Column("session_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("name", name=op.f("uq_users_name")),
    )
    op.create_table(
        "review_items",
        sa.Column("submission_id", sa.String(length=32), nullable=False),
        sa.Column("scan_id", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("publisher_id", sa.Integer(), nullable=False),
        sa.Column("plugin_name", sa.String(length=214), nullable=False),
        sa.Column("plugin_version", sa.String(length=64), nullable=False),
        sa.Column("verdict", sa.String(length=10), nullable=True),
        sa.Column("risk_score", sa.Integer(), nullable=False),
        sa.Column("categories", sa.String(length=500), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_overridden", sa.Boolean(), nullable=False),
        sa.Column("first_version", sa.Boolean(), nullable=False),
        sa.Column("claimed_by", sa.Integer(), nullable=True),
        sa.Column("claim_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["claimed_by"], ["users.id"], name=op.f("fk_review_items_claimed_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["publisher_id"],
            ["publishers.id"],
            name=op.f("fk_review_items_publisher_id_publishers"),
        ),
        sa.ForeignKeyConstraint(
            ["scan_id"], ["scans.id"], name=op.f("fk_review_items_scan_id_scans")
        ),
        sa.ForeignKeyConstraint(
            ["submission_id"],
            ["submissions.id"],
            name=op.f("fk_review_items_submission_id_submissions"),
        ),
        sa.PrimaryKeyConstraint("submission_id", name=op.f("pk_review_items")),
    )
    with op.batch_alter_table("review_items", schema=None) as batch_op:
        batch_op.create_index(
            "ix_review_items_plugin", ["publisher_id", "plugin_name"], unique=False
        )
        batch_op.create_index(
            "ix_review_items_status_due", ["status", "due_at", "risk_score"], unique=False
        )

    op.create_table(
        "scan_facts",
        sa.Column("scan_id", sa.String(length=32), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["scan_id"], ["scans.id"], name=op.f("fk_scan_facts_scan_id_scans")
        ),
        sa.PrimaryKeyConstraint("scan_id", name=op.f("pk_scan_facts")),
    )
    op.create_table(
        "allowlist_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rule_id", sa.String(length=120), nullable=False),
        sa.Column("rule_version", sa.String(length=120), nullable=False),
        sa.Column("publisher_id", sa.Integer(), nullable=False),
        sa.Column("plugin_name", sa.String(length=214), nullable=True),
        sa.Column("file_sha256", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source_finding_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_allowlist_entries_created_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["publisher_id"],
            ["publishers.id"],
            name=op.f("fk_allowlist_entries_publisher_id_publishers"),
        ),
        sa.ForeignKeyConstraint(
            ["source_finding_id"],
            ["findings.id"],
            name=op.f("fk_allowlist_entries_source_finding_id_findings"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_allowlist_entries")),
    )
    with op.batch_alter_table("allowlist_entries", schema=None) as batch_op:
        batch_op.create_index("ix_allowlist_scope", ["publisher_id", "rule_id"], unique=False)

    op.create_table(
        "finding_marks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("finding_id", sa.Integer(), nullable=False),
        sa.Column("scan_id", sa.String(length=32), nullable=False),
        sa.Column("rule_id", sa.String(length=120), nullable=False),
        sa.Column("mark", sa.String(length=4), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["finding_id"], ["findings.id"], name=op.f("fk_finding_marks_finding_id_findings")
        ),
        sa.ForeignKeyConstraint(
            ["scan_id"], ["scans.id"], name=op.f("fk_finding_marks_scan_id_scans")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_finding_marks_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_finding_marks")),
    )
    with op.batch_alter_table("finding_marks", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_finding_marks_finding_id"), ["finding_id"], unique=False
        )
        batch_op.create_index("ix_finding_marks_rule", ["rule_id", "finding_id"], unique=False)

    op.create_table(
        "allowlist_revocations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.Column("revoked_by", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["allowlist_entries.id"],
            name=op.f("fk_allowlist_revocations_entry_id_allowlist_entries"),
        ),
        sa.ForeignKeyConstraint(
            ["revoked_by"], ["users.id"], name=op.f("fk_allowlist_revocations_revoked_by_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_allowlist_revocations")),
        sa.UniqueConstraint("entry_id", name=op.f("uq_allowlist_revocations_entry_id")),
    )
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("user_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_api_tokens_user_id_users"), "users", ["user_id"], ["id"]
        )

    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("action", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("user_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("bundle_sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("ruleset", sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column("tree_sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("message", sa.Text(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_decisions_user_id_users"), "users", ["user_id"], ["id"]
        )

    with op.batch_alter_table("publishers", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("trust", sa.String(length=12), server_default="new", nullable=False)
        )

    # The canned rejection reasons a fresh desk starts with (admins edit them as data).
    reasons = sa.table(
        "canned_reasons",
        sa.column("code", sa.String),
        sa.column("title", sa.String),
        sa.column("body", sa.Text),
        sa.column("active", sa.Boolean),
        sa.column("updated_by", sa.String),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    now = datetime.now(UTC)
    op.bulk_insert(
        reasons,
        [
            {
                "code": code,
                "title": title,
                "body": body,
                "active": True,
                "updated_by": "migration",
                "updated_at": now,
            }
            for code, title, body in SEED_REASONS
        ],
    )


def downgrade() -> None:
    with op.batch_alter_table("publishers", schema=None) as batch_op:
        batch_op.drop_column("trust")

    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_decisions_user_id_users"), type_="foreignkey")
        batch_op.drop_column("message")
        batch_op.drop_column("tree_sha256")
        batch_op.drop_column("ruleset")
        batch_op.drop_column("bundle_sha256")
        batch_op.drop_column("user_id")
        batch_op.drop_column("action")

    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_api_tokens_user_id_users"), type_="foreignkey")
        batch_op.drop_column("user_id")

    op.drop_table("allowlist_revocations")
    with op.batch_alter_table("finding_marks", schema=None) as batch_op:
        batch_op.drop_index("ix_finding_marks_rule")
        batch_op.drop_index(batch_op.f("ix_finding_marks_finding_id"))

    op.drop_table("finding_marks")
    with op.batch_alter_table("allowlist_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_allowlist_scope")

    op.drop_table("allowlist_entries")
    op.drop_table("scan_facts")
    with op.batch_alter_table("review_items", schema=None) as batch_op:
        batch_op.drop_index("ix_review_items_status_due")
        batch_op.drop_index("ix_review_items_plugin")

    op.drop_table("review_items")
    op.drop_table("users")
    with op.batch_alter_table("login_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_login_attempts_name_at")
        batch_op.drop_index("ix_login_attempts_ip_at")

    op.drop_table("login_attempts")
    op.drop_table("desk_switches")
    op.drop_table("canned_reasons")
