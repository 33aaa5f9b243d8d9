"""Alembic migrations of the advisory database, with a version table of their own."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, Engine

from scanner.db import has_table, upgrade_schema

VERSION_TABLE = "alembic_version_advisories"
HERE = Path(__file__).resolve().parent


def migrate_advisories(engine: Engine) -> None:
    """Create or upgrade the advisory tables."""
    upgrade_schema(engine, HERE, VERSION_TABLE, adopt=_adopt)


def _adopt(connection: Connection) -> str | None:
    # Databases from before this chain had its own version table hold exactly its first
    # revision (it was the service chain's 0001 then).
    if has_table(connection, "advisory_sources") and not has_table(connection, VERSION_TABLE):
        return "a0001"
    return None
