"""The SQL database: one declarative base, engines from settings (SQLite by default)."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, MetaData, create_engine, event, insert, inspect, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import NullPool
from sqlalchemy.sql import Executable

from scanner.config import Settings

# Stable constraint names, so migrations can refer to them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def database_url(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{settings.data_dir / 'gatehouse.db'}"


def make_engine(url: str, pooled: bool = True) -> Engine:
    """``pooled=False`` for a process that forks: no connection is kept to be inherited."""
    engine = create_engine(url, future=True, **({} if pooled else {"poolclass": NullPool}))
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers (scans) go on while an import writes; foreign keys are off by default.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # The web server and the workers are separate processes writing to the same file:
    # wait for the lock instead of failing with "database is locked".
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_migrated: set[str] = set()
_migrate_lock = threading.Lock()


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration (once per process and database)."""
    key = engine.url.render_as_string(hide_password=False)
    with _migrate_lock:
        if key in _migrated:
            return
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Web and worker processes start together: one migrates, the others wait.
                connection.execute(text("SELECT pg_advisory_xact_lock(4242)"))
            config.attributes["connection"] = connection
            if _created_before_migrations(connection):
                # Databases from before the migrations hold exactly revision 0001.
                command.stamp(config, "0001")
            command.upgrade(config, "head")
        _migrated.add(key)


def _created_before_migrations(connection: Connection) -> bool:
    tables = set(inspect(connection).get_table_names())
    return "advisory_sources" in tables and "alembic_version" not in tables


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: committed whole on success, rolled back whole on any error."""
    factory = sessionmaker(engine, expire_on_commit=False)
    with factory() as session, session.begin():
        yield session


def insert_if_absent(db: Session | Connection, model: type[Base], values: dict[str, Any]) -> bool:
    """INSERT that yields to a concurrent insert of the same unique key instead of failing.

    True when this call inserted the row, False when it was there already.
    """
    dialect = db.get_bind().dialect.name if isinstance(db, Session) else db.dialect.name
    return db.execute(_insert_or_nothing(dialect, model), values).first() is not None


@functools.cache
def _insert_or_nothing(dialect: str, model: type[Base]) -> Executable:
    key = inspect(model).primary_key
    if dialect == "postgresql":
        return postgresql.insert(model).on_conflict_do_nothing().returning(*key)
    if dialect == "sqlite":
        return sqlite.insert(model).on_conflict_do_nothing().returning(*key)
    # Other backends: the caller's transaction retries on the conflict.
    return insert(model).returning(*key)
