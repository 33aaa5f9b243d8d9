"""The canonical repack: the same tree gives the same bytes, and reads back to that tree."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from scanner.config import Settings
from scanner.intake import BundleInfo, unpack
from scanner.pipeline import opened_bundle, opened_repack, scan_bundle
from scanner.policy import Policy
from scanner.repack import Repack, RepackError, tree_digest, write_repack
from scanner.reports.json import report_dict
from tests.conftest import BundleMaker

FILES = {"plugin.json": b"{}", "dist/b.js": b"var b;", "dist/a.js": b"var a;", "z\u00e9.js": b""}


def _zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(FILES, reverse=True):
            zf.writestr(zipfile.ZipInfo(name, (2024, 5, 6, 7, 8, 10)), FILES[name])
    return path


def _tgz(path: Path) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in FILES.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 1_700_000_000, 0o755
            tf.addfile(info, io.BytesIO(data))
    return path


def _repack_of(bundle: Path, work: Path) -> tuple[Repack, bytes]:
    root = work / "root"
    root.mkdir(parents=True)
    files = unpack(bundle, root, Settings().archive)
    repack = write_repack(root, files, work / "repack.zip")
    return repack, (work / "repack.zip").read_bytes()


def test_the_same_tree_repacks_to_the_same_bytes_whatever_carried_it(tmp_path: Path) -> None:
    from_zip, zip_bytes = _repack_of(_zip(tmp_path / "a.zip"), tmp_path / "z")
    from_tgz, tgz_bytes = _repack_of(_tgz(tmp_path / "a.tgz"), tmp_path / "t")
    assert zip_bytes == tgz_bytes
    assert from_zip == from_tgz
    assert from_zip.sha256 == hashlib.sha256(zip_bytes).hexdigest()


def test_the_repack_is_sorted_stored_and_timeless(tmp_path: Path) -> None:
    _, data = _repack_of(_zip(tmp_path / "a.zip"), tmp_path / "z")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        infos = zf.infolist()
        assert [i.filename for i in infos] == sorted(FILES, key=str.encode)
        assert {i.compress_type for i in infos} == {zipfile.ZIP_STORED}
        assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
        assert {i.external_attr >> 16 for i in infos} == {0o100644}
        assert {i.filename: zf.read(i) for i in infos} == FILES


def test_the_repack_reads_back_through_intake_to_the_same_tree(tmp_path: Path) -> None:
    repack, _ = _repack_of(_zip(tmp_path / "a.zip"), tmp_path / "z")
    again = tmp_path / "again"
    again.mkdir()
    files = unpack(tmp_path / "z" / "repack.zip", again, Settings().archive)
    assert tree_digest(files) == repack.tree_sha256


def test_the_tree_digest_is_sorted_path_size_sha256_lines() -> None:
    from scanner.intake import UnpackedFile

    a = UnpackedFile("b.js", 1, "0" * 64)
    b = UnpackedFile("a.js", 2, "f" * 64)
    lines = f"a.js\t2\t{'f' * 64}\nb.js\t1\t{'0' * 64}\n".encode()
    assert tree_digest([a, b]) == hashlib.sha256(lines).hexdigest()


def test_a_tree_that_changed_after_intake_is_not_repacked(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    files = unpack(_zip(tmp_path / "a.zip"), root, Settings().archive)
    (root / "dist" / "a.js").chmod(0o644)
    (root / "dist" / "a.js").write_bytes(b"var evil;")
    with pytest.raises(RepackError, match="changed after intake"):
        write_repack(root, files, tmp_path / "r1.zip")
    (root / "dist" / "a.js").write_bytes(b"var a;")
    (root / "dist" / "extra.js").write_bytes(b"planted")
    with pytest.raises(RepackError, match="differs from intake's inventory"):
        write_repack(root, files, tmp_path / "r2.zip")


def test_a_repack_that_is_not_the_recorded_one_is_refused(
    tmp_path: Path, settings: Settings
) -> None:
    repack, _ = _repack_of(_zip(tmp_path / "a.zip"), tmp_path / "z")
    path = tmp_path / "z" / "repack.zip"
    forged = replace(repack, sha256="0" * 64)
    with (
        pytest.raises(RepackError),
        opened_repack(path, forged, BundleInfo("", 0), settings),
    ):
        pass
    with opened_repack(path, repack, BundleInfo("", 0), settings) as opened:
        assert opened.workspace is not None
        assert {f.path for f in opened.workspace.files} == set(FILES)


def test_reports_carry_the_tree_digest_and_repack_hash(
    make_bundle: BundleMaker, settings: Settings
) -> None:
    policy = Policy.load(settings.policy_path)
    bundle = make_bundle()
    result = scan_bundle(bundle, settings, [], policy)
    with opened_bundle(bundle, settings) as opened:
        assert opened.repack is not None
        assert result.repack_sha256 == opened.repack.sha256
        assert result.tree_sha256 == tree_digest(opened.files)
    report = report_dict(result)["bundle"]
    assert report["tree_sha256"] == result.tree_sha256
    assert report["repack_sha256"] == result.repack_sha256


def test_a_refused_bundle_has_no_repack(tmp_path: Path, settings: Settings) -> None:
    bundle = tmp_path / "bad.zip"
    bundle.write_bytes(b"PK\x03\x04 not really")
    result = scan_bundle(bundle, settings, [], Policy.load(settings.policy_path))
    assert result.repack_sha256 is None and result.tree_sha256 is None
    assert not list(settings.work_root.iterdir())
