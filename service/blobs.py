"""Blob storage for bundles and artifacts: a local directory, or any S3-compatible store."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import uuid
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import urlparse

from scanner.config import Settings, SettingsError
from scanner.private_dirs import private_dir

CHUNK = 1024 * 1024


class BlobNotFoundError(LookupError):
    """No blob under that key."""


class BlobStore(Protocol):
    def put_file(self, key: str, path: Path) -> None:
        """Store the file's bytes under ``key``; the blob appears whole or not at all.

        The file is handed over: a local store may link it rather than copy it.
        """

    def put_bytes(self, key: str, data: bytes) -> None: ...

    def get_bytes(self, key: str) -> bytes: ...

    def download(self, key: str, dest: Path) -> None: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...


def bundle_key(sha256: str) -> str:
    # Content-addressed: the same bytes are stored once, whoever uploads them.
    return f"bundles/{sha256[:2]}/{sha256}"


def repack_key(sha256: str) -> str:
    # The canonical repack of a scanned tree (scanner/repack.py), content-addressed too.
    return f"repacks/{sha256[:2]}/{sha256}"


def artifact_key(scan_id: str, name: str) -> str:
    return f"artifacts/{scan_id}/{name}"


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in {"", ".", ".."} for p in parts):
        raise ValueError(f"bad blob key {key!r}")
    return key


class LocalBlobStore:
    """Files under one directory; written to a temporary name and renamed into place."""

    def __init__(self, root: Path) -> None:
        self.root = root
        private_dir(root)

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def put_file(self, key: str, path: Path) -> None:
        # A hard link stores the bytes without copying them (uploads are spooled on the same
        # filesystem); the caller hands the file over and does not write to it again.
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".tmp-{uuid.uuid4().hex}")
        try:
            os.link(path, tmp)
        except OSError:  # another filesystem, or links not allowed: copy
            with path.open("rb") as src:
                self._write(key, src)
            return
        try:
            tmp.replace(target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def put_bytes(self, key: str, data: bytes) -> None:
        self._write(key, io.BytesIO(data))

    def _write(self, key: str, src: IO[bytes]) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := src.read(CHUNK):
                    out.write(chunk)
            Path(tmp).replace(target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise BlobNotFoundError(key) from None

    def download(self, key: str, dest: Path) -> None:
        try:
            src = self._path(key).open("rb")
        except FileNotFoundError:
            raise BlobNotFoundError(key) from None
        # A destination that cannot be written is our error, not a missing blob.
        with src, dest.open("wb") as out:
            while chunk := src.read(CHUNK):
                out.write(chunk)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


class S3BlobStore:
    """A bucket (and key prefix) on AWS S3 or any S3-compatible store, through boto3."""

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None) -> None:
        import boto3  # optional dependency: pip install gatehouse[s3]

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client: Any = boto3.client("s3", endpoint_url=endpoint_url or None)

    def _key(self, key: str) -> str:
        key = _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_file(self, key: str, path: Path) -> None:
        # S3 makes an object visible only once the upload completes: whole or absent.
        self.client.upload_file(str(path), self.bucket, self._key(key))

    def put_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def get_bytes(self, key: str) -> bytes:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except self.client.exceptions.NoSuchKey:
            raise BlobNotFoundError(key) from None
        return bytes(response["Body"].read())

    def download(self, key: str, dest: Path) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.download_file(self.bucket, self._key(key), str(dest))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey"}:
                raise BlobNotFoundError(key) from None
            raise

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError:
            return False
        return True

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))


def blob_store(settings: Settings) -> BlobStore:
    if not settings.blob_url:
        return LocalBlobStore(settings.data_dir / "blobs")
    parsed = urlparse(settings.blob_url)
    if parsed.scheme == "s3" and parsed.netloc:
        return S3BlobStore(parsed.netloc, parsed.path, settings.s3_endpoint_url)
    if parsed.scheme == "file":
        return LocalBlobStore(Path(parsed.path))
    raise SettingsError(f"GATEHOUSE_BLOB_URL={settings.blob_url!r}: use s3://bucket/prefix")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
