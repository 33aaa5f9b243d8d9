"""What every service process holds once: settings, database, blob store, job queue."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from scanner.config import Settings
from scanner.db import database_url, make_engine, session_scope
from scanner.policy import Policy
from service.blobs import BlobStore, blob_store
from service.cdn.signing import Signer, load_signer
from service.cdn.storage import CdnStore, cdn_store
from service.db import migrate
from service.jobs import JobQueue


@dataclass
class Services:
    settings: Settings
    engine: Engine
    blobs: BlobStore
    jobs: JobQueue

    @classmethod
    def from_settings(cls, settings: Settings, jobs: JobQueue) -> Services:
        engine = make_engine(database_url(settings))
        migrate(engine)
        return cls(settings, engine, blob_store(settings), jobs)

    @functools.cached_property
    def policy(self) -> Policy:
        return Policy.load(self.settings.policy_path)

    @functools.cached_property
    def cdn(self) -> CdnStore:
        """Where promoted files go (assign another store in tests)."""
        return cdn_store(self.settings)

    @functools.cached_property
    def signer(self) -> Signer:
        return load_signer(self.settings)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with session_scope(self.engine) as session:
            yield session
