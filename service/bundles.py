"""Bundles are stored once, by content: the bytes in blob storage, one row per sha256."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from scanner.db import insert_if_absent
from service.blobs import BlobStore, bundle_key, sha256_file
from service.models import Bundle, utcnow


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
