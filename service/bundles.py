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
from scanner.intake import BundleInfo
from scanner.pipeline import OpenedBundle, opened_repack
from scanner.private_dirs import private_dir
from scanner.repack import Repack
from service.blobs import BlobNotFoundError, BlobStore, bundle_key, repack_key, sha256_file
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
def downloaded(svc: Services, key: str) -> Iterator[Path]:
    work_root = private_dir(svc.settings.work_root)
    with tempfile.TemporaryDirectory(prefix="blob-", dir=work_root) as tmp:
        path = Path(tmp) / "blob"
        svc.blobs.download(key, path)
        yield path


@contextmanager
def materialized(svc: Services, scan: Scan) -> Iterator[OpenedBundle]:
    """The scanned tree, unpacked from the scan's canonical repack into a private work
    dir: after intake, nothing reads the uploaded bytes again (another parser could find
    another tree in them)."""
    if scan.repack_sha256 is None or scan.repack_size is None or scan.tree_sha256 is None:
        raise BlobNotFoundError("the scan has no repack: intake did not admit its bundle")
    recorded = Repack(scan.repack_sha256, scan.repack_size, scan.tree_sha256)
    with (
        downloaded(svc, repack_key(recorded.sha256)) as path,
        opened_repack(path, recorded, bundle_info(svc, scan), svc.settings) as opened,
    ):
        yield opened


def bundle_info(svc: Services, scan: Scan) -> BundleInfo:
    """The upload's identity for the report, from its row (its bytes are not read)."""
    if scan.bundle_sha256 is None:
        return BundleInfo(sha256="", size=0)
    with svc.session() as s:
        row = s.get(Bundle, scan.bundle_sha256)
        return BundleInfo(scan.bundle_sha256, row.size if row is not None else 0)
