"""Blob storage: the local directory, and S3 over HTTP through boto3 (a moto server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service.blobs import BlobNotFoundError, BlobStore, LocalBlobStore, S3BlobStore, bundle_key


@pytest.fixture
def s3_store(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3BlobStore]:
    """A real S3 API on loopback (moto's server), reached the way any S3-compatible store is."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for key, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    store = S3BlobStore("gatehouse-test", "blobs/", endpoint_url=f"http://{host}:{port}")
    store.client.create_bucket(Bucket="gatehouse-test")
    yield store
    server.stop()


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "local":
        return LocalBlobStore(tmp_path / "blobs")
    s3: S3BlobStore = request.getfixturevalue("s3_store")
    return s3


def test_blobs_round_trip(store: BlobStore, tmp_path: Path) -> None:
    src = tmp_path / "bundle.zip"
    src.write_bytes(b"PK" + bytes(range(256)) * 100)
    key = bundle_key("ab" * 32)
    assert not store.exists(key)
    store.put_file(key, src)
    store.put_bytes("artifacts/scan1/report.sarif", b"{}")
    assert store.exists(key)
    assert store.get_bytes(key) == src.read_bytes()
    store.download(key, tmp_path / "copy")
    assert (tmp_path / "copy").read_bytes() == src.read_bytes()
    assert store.get_bytes("artifacts/scan1/report.sarif") == b"{}"
    store.delete(key)
    assert not store.exists(key)
    with pytest.raises(BlobNotFoundError):
        store.get_bytes(key)
    with pytest.raises(BlobNotFoundError):
        store.download(key, tmp_path / "missing")


@pytest.mark.parametrize("key", ["../escape", "/abs", "a//b", "a/./b", ""])
def test_keys_cannot_leave_the_store(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError, match="bad blob key"):
        LocalBlobStore(tmp_path).put_bytes(key, b"x")
    assert [p.name for p in tmp_path.parent.iterdir() if p.name == "escape"] == []


def test_local_writes_leave_no_partial_files(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    store.put_bytes("artifacts/s/a.json", b"1")
    store.put_bytes("artifacts/s/a.json", b"2")
    files = sorted(p.name for p in (tmp_path / "artifacts" / "s").iterdir())
    assert files == ["a.json"] and store.get_bytes("artifacts/s/a.json") == b"2"


def test_local_put_file_links_on_one_filesystem_and_replaces_whole(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    first, second = tmp_path / "first", tmp_path / "second"
    first.write_bytes(b"one")
    second.write_bytes(b"two")
    store.put_file("artifacts/s/a.bin", first)
    target = tmp_path / "blobs" / "artifacts" / "s" / "a.bin"
    assert target.stat().st_ino == first.stat().st_ino  # linked, not copied
    store.put_file("artifacts/s/a.bin", second)
    first.unlink()
    second.unlink()  # the upload's spool goes away; the blob stays
    assert store.get_bytes("artifacts/s/a.bin") == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["a.bin"]


def test_local_put_file_copies_when_it_cannot_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import os

    def cross_device(*_: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    src = tmp_path / "src"
    src.write_bytes(b"bytes")
    store = LocalBlobStore(tmp_path / "blobs")
    store.put_file("artifacts/s/a.bin", src)
    target = tmp_path / "blobs" / "artifacts" / "s" / "a.bin"
    assert target.read_bytes() == b"bytes" and target.stat().st_ino != src.stat().st_ino
    assert [p.name for p in target.parent.iterdir()] == ["a.bin"]
