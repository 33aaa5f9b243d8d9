"""Schema and history rules: migrations match the models, nothing cascades, history stays."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask.testing import FlaskClient
from sqlalchemy import Engine, MetaData, create_engine, inspect, select, text

import service.models
from scanner.advisories.migrations import VERSION_TABLE as ADVISORY_VERSION_TABLE
from scanner.advisories.migrations import migrate_advisories
from scanner.advisories.models import AdvisoryBase
from scanner.db import make_engine, session_scope
from service.audit import TransitionError, transition
from service.db import Base, migrate
from service.models import AppendOnlyError, AuditEntry, Submission, SubmissionEvent
from service.services import Services
from tests.service.conftest import post_submission, zip_bytes


def _diff(engine: Engine, metadata: MetaData, skip: set[str]) -> list[object]:
    def keep(obj: object, name: str | None, kind: str, *_: object) -> bool:
        return not (kind == "table" and name in skip)

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": keep})
        return list(compare_metadata(context, metadata))


def test_migrations_build_exactly_the_models(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    migrate(engine)
    # Each chain's comparison skips the other chain's tables and both version tables.
    versions = {"alembic_version", ADVISORY_VERSION_TABLE}
    assert _diff(engine, Base.metadata, set(AdvisoryBase.metadata.tables) | versions) == []
    assert _diff(engine, AdvisoryBase.metadata, set(Base.metadata.tables) | versions) == []


def test_the_advisory_tables_migrate_without_the_service(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    migrate_advisories(engine)
    assert set(inspect(engine).get_table_names()) == set(AdvisoryBase.metadata.tables) | {
        ADVISORY_VERSION_TABLE
    }


def _advisory_tables_as_of_a0001(engine: Engine) -> None:
    """The advisory tables as the first revision made them (before import warnings)."""
    AdvisoryBase.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE advisory_sources DROP COLUMN digest"))
        conn.execute(text("ALTER TABLE advisory_sources DROP COLUMN warnings"))
        conn.execute(text("ALTER TABLE advisory_sources DROP COLUMN warning_count"))


def test_a_database_from_before_migrations_is_adopted(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = create_engine(url)
    _advisory_tables_as_of_a0001(old)
    old.dispose()
    engine = make_engine(url)
    migrate(engine)
    assert "submissions" in inspect(engine).get_table_names()
    versions = {"alembic_version", ADVISORY_VERSION_TABLE}
    assert _diff(engine, AdvisoryBase.metadata, set(Base.metadata.tables) | versions) == []


def test_a_database_migrated_before_the_split_keeps_upgrading(tmp_path: Path) -> None:
    """One chain used to hold both (0001 advisories, 0002-0003 service): adopt, not redo."""
    url = f"sqlite:///{tmp_path / 'split.db'}"
    old = create_engine(url)
    _advisory_tables_as_of_a0001(old)
    _service_chain_up_to(old, "0003")  # the service's tables as they were then
    old.dispose()
    engine = make_engine(url)
    migrate(engine)
    with engine.connect() as conn:
        advisory = conn.scalar(text("SELECT version_num FROM alembic_version_advisories"))
    assert ADVISORY_VERSION_TABLE == "alembic_version_advisories"
    assert advisory == "a0003"  # adopted at a0001, then upgraded


def _service_chain_up_to(engine: Engine, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    from service.db import MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        config.attributes["version_table"] = "alembic_version"
        command.upgrade(config, revision)


def test_no_foreign_key_cascades_deletes() -> None:
    for table in [*Base.metadata.tables.values(), *AdvisoryBase.metadata.tables.values()]:
        for fk in table.foreign_keys:
            assert fk.ondelete is None, f"{table.name}.{fk.parent.name} cascades"


def test_history_records_refuse_changes(client: FlaskClient, svc: Services) -> None:
    post_submission(client, bundle=zip_bytes())
    with pytest.raises(AppendOnlyError), session_scope(svc.engine) as s:
        entry = s.scalars(select(AuditEntry)).first()
        assert entry is not None
        entry.action = "rewritten"
    with pytest.raises(AppendOnlyError), session_scope(svc.engine) as s:
        event = s.scalars(select(SubmissionEvent)).first()
        s.delete(event)


def test_a_submission_cannot_skip_its_lifecycle(client: FlaskClient, svc: Services) -> None:
    sub_id = post_submission(client, bundle=zip_bytes()).get_json()["id"]
    with pytest.raises(TransitionError), session_scope(svc.engine) as s:
        transition(
            s, s.get_one(Submission, sub_id), service.models.SubmissionStatus.PROMOTED, "test"
        )


def test_a_publisher_inserted_concurrently_is_found_not_duplicated(svc: Services) -> None:
    from scanner.db import insert_if_absent
    from service.models import Publisher, utcnow
    from service.submissions import publisher_named

    with session_scope(svc.engine) as s:
        assert insert_if_absent(s, Publisher, {"external_id": "racer", "created_at": utcnow()})
        assert not insert_if_absent(s, Publisher, {"external_id": "racer", "created_at": utcnow()})
        assert publisher_named(s, "racer", "test").external_id == "racer"
        assert len(list(s.scalars(select(Publisher).where(Publisher.external_id == "racer")))) == 1


@pytest.mark.integration
def test_racing_first_sightings_of_a_publisher_audit_its_creation_once() -> None:
    import threading

    from sqlalchemy import func

    from service.submissions import publisher_named
    from tests.service.live import postgres_database

    with postgres_database() as url:
        engine = make_engine(url)
        migrate(engine)
        with session_scope(engine) as first:
            publisher_named(first, "newcomer", "first")
            # The second sighting's INSERT waits on the first's uncommitted row.
            second = threading.Thread(
                target=lambda: _name_in_own_transaction(engine, "newcomer", "second")
            )
            second.start()
            second.join(timeout=1)
            assert second.is_alive(), "the second insert should wait for the first commit"
        second.join(timeout=30)
        with session_scope(engine) as s:
            created = select(func.count()).where(AuditEntry.action == "publisher.created")
            assert s.scalar(created) == 1
        engine.dispose()


def _name_in_own_transaction(engine: Engine, external_id: str, actor: str) -> None:
    from service.submissions import publisher_named

    with session_scope(engine) as s:
        publisher_named(s, external_id, actor)
