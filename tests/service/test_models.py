"""Schema and history rules: migrations match the models, nothing cascades, history stays."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask.testing import FlaskClient
from sqlalchemy import Engine, create_engine, inspect, select

import scanner.advisories.models
import scanner.models
from scanner.audit import TransitionError, transition
from scanner.db import Base, make_engine, migrate, session_scope
from scanner.models import AppendOnlyError, AuditEntry, Submission, SubmissionEvent
from scanner.services import Services
from tests.service.conftest import post_submission, zip_bytes


def test_migrations_build_exactly_the_models(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    migrate(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_a_database_from_before_migrations_is_adopted(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = create_engine(url)
    advisory_tables = [
        t
        for name, t in Base.metadata.tables.items()
        if name.startswith("advisor") or name == "js_detectors"
    ]
    Base.metadata.create_all(old, tables=advisory_tables)
    old.dispose()
    engine = make_engine(url)
    migrate(engine)
    assert "submissions" in inspect(engine).get_table_names()


def test_no_foreign_key_cascades_deletes() -> None:
    for table in Base.metadata.tables.values():
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
            s, s.get_one(Submission, sub_id), scanner.models.SubmissionStatus.PROMOTED, "test"
        )


def test_a_publisher_inserted_concurrently_is_found_not_duplicated(svc: Services) -> None:
    from scanner.db import insert_if_absent
    from scanner.models import Publisher, utcnow
    from scanner.submissions import publisher_named

    with session_scope(svc.engine) as s:
        assert insert_if_absent(s, Publisher, {"external_id": "racer", "created_at": utcnow()})
        assert not insert_if_absent(s, Publisher, {"external_id": "racer", "created_at": utcnow()})
        assert publisher_named(s, "racer", "test").external_id == "racer"
        assert len(list(s.scalars(select(Publisher).where(Publisher.external_id == "racer")))) == 1


@pytest.mark.integration
def test_racing_first_sightings_of_a_publisher_audit_its_creation_once() -> None:
    import threading

    from sqlalchemy import func

    from scanner.submissions import publisher_named
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
    from scanner.submissions import publisher_named

    with session_scope(engine) as s:
        publisher_named(s, external_id, actor)
