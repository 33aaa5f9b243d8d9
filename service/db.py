"""The service's tables: their declarative base, and the migration of the whole database."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import DeclarativeBase

from scanner.advisories.migrations import migrate_advisories
from scanner.db import named_metadata, upgrade_schema

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "alembic_version"


class Base(DeclarativeBase):
    metadata = named_metadata()


def migrate(engine: Engine) -> None:
    """Bring the advisory tables, then the service's records, to their newest migration."""
    migrate_advisories(engine)
    upgrade_schema(engine, MIGRATIONS, VERSION_TABLE)
