"""Alembic environment of the service's records (the connection comes from service.db.migrate)."""

from __future__ import annotations

import service.models  # noqa: F401 - registers the tables on the base
from scanner.db import run_alembic_env
from service.db import VERSION_TABLE, Base

run_alembic_env(Base.metadata, VERSION_TABLE)
