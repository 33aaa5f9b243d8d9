"""Alembic environment of the advisory tables (the connection comes from migrate_advisories)."""

from __future__ import annotations

from scanner.advisories.migrations import VERSION_TABLE
from scanner.advisories.models import AdvisoryBase
from scanner.db import run_alembic_env

run_alembic_env(AdvisoryBase.metadata, VERSION_TABLE)
