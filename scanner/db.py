"""SQL plumbing shared by the advisory database and the service: engines, sessions, schema.

Each owner of tables (the scanner's advisory database, the service's records) has its own
declarative base and its own chain of Alembic migrations with its own version table, so
the scanner never needs the service's models to bring its own tables up to date.
"""

from __future__ import annotations

import fcntl
import functools
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, MetaData, create_engine, event, insert, inspect, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import NullPool
from sqlalchemy.sql import Executable

from scanner.config import Settings
from scanner.private_dirs import private_dir, private_file

# Stable constraint names, so migrations can refer to them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def named_metadata() -> MetaData:
    return MetaData(naming_convention=NAMING_CONVENTION)


def database_url(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    # Created 0600 in a 0700 dir before SQLite opens it (its WAL and SHM files copy the
    # mode): submissions, tokens' hashes and verdicts are nobody else's to read.
    path = private_file(private_dir(settings.data_dir) / "gatehouse.db")
    return f"sqlite:///{path}"


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


_upgraded: set[tuple[str, str]] = set()
_upgrade_lock = threading.Lock()


@contextmanager
def sqlite_file_lock(engine: Engine, purpose: str) -> Iterator[None]:
    """Held by one process at a time for a SQLite database file; a no-op on other backends.

    SQLite runs DDL outside a transaction under pysqlite, so two processes starting on a
    fresh file would both create the same tables; a lock file beside the database orders them.
    """
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    with Path(f"{database}.{purpose}-lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def upgrade_schema(
    engine: Engine,
    script_location: Path,
    version_table: str,
    adopt: Callable[[Connection], str | None] | None = None,
) -> None:
    """Bring one chain of migrations to its head (once per process, database and chain).

    ``adopt`` may name a revision to stamp first, for tables made before the chain kept
    its version table.
    """
    key = (engine.url.render_as_string(hide_password=False), version_table)
    with _upgrade_lock:
        if key in _upgraded:
            return
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(script_location))
        with sqlite_file_lock(engine, "migrate"), engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Web and worker processes start together: one migrates, the others wait.
                lock_id = zlib.crc32(version_table.encode())
                connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock_id})
            config.attributes["connection"] = connection
            config.attributes["version_table"] = version_table
            revision = adopt(connection) if adopt is not None else None
            if revision is not None:
                command.stamp(config, revision)
            command.upgrade(config, "head")
        _upgraded.add(key)


def run_alembic_env(metadata: MetaData, default_version_table: str) -> None:
    """The body of an Alembic env.py: on the caller's connection, or one from the settings."""
    from alembic import context

    def run(connection: Connection) -> None:
        # SQLite cannot ALTER most things in place: batch mode copies the table instead.
        context.configure(
            connection=connection,
            target_metadata=metadata,
            version_table=context.config.attributes.get("version_table", default_version_table),
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()

    connection = context.config.attributes.get("connection")
    if connection is not None:
        run(connection)
        return
    engine = make_engine(database_url(Settings.from_env()))
    with engine.connect() as conn:
        run(conn)
    engine.dispose()


def has_table(connection: Connection, name: str) -> bool:
    return name in inspect(connection).get_table_names()


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: committed whole on success, rolled back whole on any error."""
    factory = sessionmaker(engine, expire_on_commit=False)
    with factory() as session, session.begin():
        yield session


def insert_if_absent(
    db: Session | Connection, model: type[DeclarativeBase], values: dict[str, Any]
) -> bool:
    """INSERT that yields to a concurrent insert of the same unique key instead of failing.

    True when this call inserted the row, False when it was there already.
    """
    dialect = db.get_bind().dialect.name if isinstance(db, Session) else db.dialect.name
    return db.execute(_insert_or_nothing(dialect, model), values).first() is not None


@functools.cache
def _insert_or_nothing(dialect: str, model: type[DeclarativeBase]) -> Executable:
    key = inspect(model).primary_key
    if dialect == "postgresql":
        return postgresql.insert(model).on_conflict_do_nothing().returning(*key)
    if dialect == "sqlite":
        return sqlite.insert(model).on_conflict_do_nothing().returning(*key)
    # Other backends: the caller's transaction retries on the conflict.
    return insert(model).returning(*key)
