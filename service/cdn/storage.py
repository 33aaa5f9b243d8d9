"""CDN storage: a local directory (served by the service at /cdn) or an S3-compatible
bucket (boto3), behind one protocol.

Objects appear whole or not at all (a temporary name renamed into place; S3 makes an
object visible only once its upload completes). On S3 each object carries its own
``Content-Type`` and ``Cache-Control`` and its sha256 and SRI as metadata, so a CDN
pointed at the bucket serves the same headers the origin does.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import urlparse

from scanner.config import Settings, SettingsError
from scanner.private_dirs import private_dir

CHUNK = 1024 * 1024


class CdnNotFoundError(LookupError):
    """No object under that key."""


class CdnStore(Protocol):
    label: str

    def put(
        self, key: str, data: bytes, content_type: str, cache_control: str, meta: Mapping[str, str]
    ) -> None:
        """Store ``data`` under ``key``, replacing whatever was there, whole or not at all."""

    def get(self, key: str) -> bytes: ...

    def open(self, key: str) -> IO[bytes]:
        """The object as a stream (the origin serves large files without holding them)."""

    def delete(self, key: str) -> None:
        """Remove the object; absent already is fine."""


def check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in {"", ".", ".."} for p in parts):
        raise ValueError(f"bad CDN key {key!r}")
    return key


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class LocalCdnStore:
    """Files under one directory, written to a temporary name and renamed into place."""

    label = "local"

    def __init__(self, root: Path) -> None:
        self.root = root
        private_dir(root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(
        self, key: str, data: bytes, content_type: str, cache_control: str, meta: Mapping[str, str]
    ) -> None:
        # The origin derives headers from the key and the records; nothing to keep here.
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            Path(tmp).replace(target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise CdnNotFoundError(key) from None

    def open(self, key: str) -> IO[bytes]:
        try:
            return self._path(key).open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise CdnNotFoundError(key) from None

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        # Empty version directories go too, so a rolled-back version leaves nothing.
        for parent in path.parents:
            if parent == self.root or not parent.is_relative_to(self.root):
                break
            try:
                parent.rmdir()
            except OSError:
                break


class S3CdnStore:
    """A bucket (and key prefix) on AWS S3 or any S3-compatible store."""

    label = "s3"

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None) -> None:
        import boto3  # optional dependency: pip install gatehouse[s3]

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client: Any = boto3.client("s3", endpoint_url=endpoint_url or None)

    def _key(self, key: str) -> str:
        key = check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(
        self, key: str, data: bytes, content_type: str, cache_control: str, meta: Mapping[str, str]
    ) -> None:
        self.client.put_object(
            Bucket=self.bucket,
            Key=self._key(key),
            Body=data,
            ContentType=content_type,
            CacheControl=cache_control,
            Metadata=dict(meta),
        )

    def get(self, key: str) -> bytes:
        with self.open(key) as body:
            return bytes(body.read())

    def open(self, key: str) -> IO[bytes]:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except self.client.exceptions.NoSuchKey:
            raise CdnNotFoundError(key) from None
        body: IO[bytes] = response["Body"]
        return body

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))


def cdn_store(settings: Settings) -> CdnStore:
    if not settings.cdn_url:
        return LocalCdnStore(settings.data_dir / "cdn")
    parsed = urlparse(settings.cdn_url)
    if parsed.scheme == "s3" and parsed.netloc:
        return S3CdnStore(parsed.netloc, parsed.path, settings.s3_endpoint_url)
    if parsed.scheme == "file":
        return LocalCdnStore(Path(parsed.path))
    raise SettingsError(f"GATEHOUSE_CDN_URL={settings.cdn_url!r}: use s3://bucket/prefix")


def chunks(stream: IO[bytes]) -> Iterator[bytes]:
    """Read a stream to its end in bounded pieces, then close it."""
    try:
        while chunk := stream.read(CHUNK):
            yield chunk
    finally:
        stream.close()
