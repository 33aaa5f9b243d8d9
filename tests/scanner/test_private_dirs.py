"""The data dir and work root are ours alone: created 0700, databases 0600, and a
directory another user owns (or anyone may write to) is refused (issue 11, section 6)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from scanner.config import Settings
from scanner.db import database_url, make_engine
from scanner.pipeline import opened_bundle
from scanner.private_dirs import UnsafeDirectoryError, private_dir
from service.blobs import LocalBlobStore
from tests.conftest import BundleMaker

OTHER_UID = 54321


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    old = os.umask(0o022)  # the default that made the data dir 0755 before
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_data_dir_and_its_parents_are_created_0700_and_the_database_0600(
    tmp_path: Path,
) -> None:
    settings = replace(Settings(), data_dir=tmp_path / "new" / "gatehouse")
    engine = make_engine(database_url(settings))
    with engine.connect() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x)")
        conn.commit()
    engine.dispose()
    assert _mode(tmp_path / "new") == 0o700
    assert _mode(settings.data_dir) == 0o700
    db = settings.data_dir / "gatehouse.db"
    assert _mode(db) == 0o600
    for sidecar in settings.data_dir.glob("gatehouse.db-*"):
        assert _mode(sidecar) & 0o077 == 0, sidecar


def test_a_database_left_world_readable_by_an_older_version_is_tightened(tmp_path: Path) -> None:
    settings = replace(Settings(), data_dir=tmp_path / "data")
    settings.data_dir.mkdir(mode=0o700)
    db = settings.data_dir / "gatehouse.db"
    db.write_bytes(b"")
    db.chmod(0o644)
    database_url(settings)
    assert _mode(db) == 0o600


def test_the_blob_store_under_a_new_data_dir_is_private(tmp_path: Path) -> None:
    LocalBlobStore(tmp_path / "data" / "blobs")
    assert _mode(tmp_path / "data") == 0o700


def test_a_work_root_owned_by_another_user_is_refused(
    tmp_path: Path, settings: Settings, make_bundle: BundleMaker
) -> None:
    hostile = tmp_path / "planted"
    hostile.mkdir(mode=0o755)
    os.chown(hostile, OTHER_UID, OTHER_UID)
    with (
        pytest.raises(UnsafeDirectoryError, match="belongs to uid 54321"),
        opened_bundle(make_bundle(), replace(settings, work_root=hostile)),
    ):
        pass
    assert list(hostile.iterdir()) == []  # nothing was unpacked there


@pytest.mark.parametrize("mode", [0o777, 0o773])
def test_a_world_writable_work_root_without_sticky_bit_is_refused(
    tmp_path: Path, mode: int
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(mode)
    with pytest.raises(UnsafeDirectoryError, match="world-writable"):
        private_dir(shared)


def test_a_symlinked_work_root_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(UnsafeDirectoryError, match="symbolic link"):
        private_dir(tmp_path / "link")


def test_roots_sticky_tmpfs_is_accepted_as_a_parent_like_tmp(tmp_path: Path) -> None:
    # A container's tmpfs mount (mode 1777, root's) holds each scan's own 0700 dir.
    shared = tmp_path / "tmpfs"
    shared.mkdir()
    shared.chmod(0o1777)
    assert private_dir(shared) == shared
    hostile_sticky = tmp_path / "theirs"
    hostile_sticky.mkdir()
    hostile_sticky.chmod(0o1777)
    os.chown(hostile_sticky, OTHER_UID, OTHER_UID)  # its owner may still rename our dirs
    with pytest.raises(UnsafeDirectoryError):
        private_dir(hostile_sticky)
