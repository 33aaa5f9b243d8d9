"""Alembic environment: the connection comes from scanner.db.migrate (or the settings)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

import scanner.advisories.models
import scanner.models
from scanner.config import Settings
from scanner.db import Base, database_url, make_engine

target_metadata = Base.metadata
del scanner  # only imported for the side effect above


def _run(connection: Connection) -> None:
    # SQLite cannot ALTER most things in place: batch mode copies the table instead.
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = make_engine(database_url(Settings.from_env()))
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()
