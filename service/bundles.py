"""Bundles are stored once, by content: the bytes in blob storage, one row per sha256."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from scanner.db import insert_if_absent
from scanner.pipeline import OpenedBundle, opened_bundle
from service.blobs import BlobStore, bundle_key, sha256_file
from service.models import Bundle, Scan, utcnow
from service.services import Services


@dataclass(frozen=True)
class StoredBundle:
    sha256: str
    size: int

    @property
    def key(self) -> str:
        return bundle_key(self.sha256)


def store_bytes(blobs: BlobStore, path: Path, sha256: str | None = None) -> StoredBundle:
    """Put the file in blob storage unless those bytes are there already."""
    stored = StoredBundle(sha256 or sha256_file(path), path.stat().st_size)
    if not blobs.exists(stored.key):
        blobs.put_file(stored.key, path)
    return stored


def record(db: Session | Connection, stored: StoredBundle) -> None:
    """The bundle's row, in the caller's transaction; a concurrent insert of it is fine."""
    values = {"sha256": stored.sha256, "size": stored.size, "blob_key": stored.key}
    insert_if_absent(db, Bundle, {**values, "created_at": utcnow()})


@contextmanager
def materialized(svc: Services, scan: Scan) -> Iterator[OpenedBundle]:
    """The scan's bundle, downloaded and unpacked into a private work dir (with intake's
    limits: a bundle is never opened any other way)."""
    svc.settings.work_root.mkdir(parents=True, exist_ok=True, mode=0o700)
    with tempfile.TemporaryDirectory(prefix="blob-", dir=svc.settings.work_root) as tmp:
        path = Path(tmp) / scan.bundle_name
        assert scan.bundle_sha256 is not None
        svc.blobs.download(bundle_key(scan.bundle_sha256), path)
        with opened_bundle(path, svc.settings) as opened:
            yield opened
