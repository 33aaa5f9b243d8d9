"""Hostile archives: each is refused with a named rule, and nothing lands outside dest."""

from __future__ import annotations

import gzip
import io
import os
import struct
import tarfile
import tracemalloc
import warnings
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from scanner.bench import zeros_bomb
from scanner.config import ArchiveLimits
from scanner.intake import ArchiveViolation, describe_bundle, unpack

LIMITS = ArchiveLimits()


def _zip(path: Path, members: list[tuple[str | zipfile.ZipInfo, bytes]]) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns on the duplicate names we write on purpose
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in members:
                zf.writestr(name, data)
    return path


def _tar(path: Path, members: list[tarfile.TarInfo], data: dict[str, bytes] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for info in members:
            body = (data or {}).get(info.name)
            tf.addfile(info, io.BytesIO(body) if body is not None else None)
    return path


def _violation(bundle: Path, dest: Path, limits: ArchiveLimits = LIMITS) -> ArchiveViolation:
    dest.mkdir(exist_ok=True)
    with pytest.raises(ArchiveViolation) as info:
        unpack(bundle, dest, limits)
    return info.value


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    d = tmp_path / "work" / "bundle"
    d.mkdir(parents=True)
    return d


def test_unpacks_a_plain_zip_and_hashes_each_file(tmp_path: Path, dest: Path) -> None:
    bundle = _zip(tmp_path / "ok.zip", [("plugin.json", b"{}"), ("dist/a.js", b"var a = 1;")])
    files = unpack(bundle, dest, LIMITS)
    assert {f.path for f in files} == {"plugin.json", "dist/a.js"}
    assert (dest / "dist" / "a.js").read_bytes() == b"var a = 1;"
    assert next(f for f in files if f.path == "plugin.json").size == 2
    assert describe_bundle(bundle).size == bundle.stat().st_size


def test_unpacks_a_plain_tar_gz(tmp_path: Path, dest: Path) -> None:
    info = tarfile.TarInfo("dist/a.js")
    info.size = 3
    bundle = _tar(tmp_path / "ok.tgz", [info], {"dist/a.js": b"abc"})
    assert [f.path for f in unpack(bundle, dest, LIMITS)] == ["dist/a.js"]


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("../evil.txt", "archive-path-traversal"),
        ("dist/../../evil.txt", "archive-path-traversal"),
        ("/tmp/gatehouse-test-abs.txt", "archive-absolute-path"),
        ("C:/evil.txt", "archive-absolute-path"),
        ("dist\\..\\evil.txt", "archive-invalid-name"),
        ("dist/a\x07.js", "archive-invalid-name"),
        ("/".join(["d"] * 40) + "/x.js", "archive-too-deep"),
    ],
)
def test_refuses_unsafe_member_names(tmp_path: Path, dest: Path, name: str, rule: str) -> None:
    bundle = _zip(tmp_path / "bad.zip", [("plugin.json", b"{}"), (name, b"pwned")])
    assert _violation(bundle, dest).rule_id == rule
    assert not (tmp_path / "work" / "evil.txt").exists()
    assert not (tmp_path / "evil.txt").exists()
    assert not Path("/tmp/gatehouse-test-abs.txt").exists()
    # Names are all checked before the first byte is written.
    assert list(dest.iterdir()) == []


def test_refuses_nul_in_a_zip_name_that_zipfile_would_truncate(tmp_path: Path, dest: Path) -> None:
    bundle = _zip(tmp_path / "nul.zip", [("dist/a.js", b"1"), ("dist/a.js.png", b"2")])
    raw = bundle.read_bytes().replace(b"dist/a.js.png", b"dist/a.js\x00png")
    bundle.write_bytes(raw)
    assert _violation(bundle, dest).rule_id == "archive-invalid-name"


def test_refuses_zip_symlink(tmp_path: Path, dest: Path) -> None:
    link = zipfile.ZipInfo("dist/link.js")
    link.external_attr = 0o120777 << 16
    bundle = _zip(tmp_path / "link.zip", [(link, b"/etc/passwd")])
    assert _violation(bundle, dest).rule_id == "archive-link"


@pytest.mark.parametrize(
    ("kind", "rule"),
    [
        (tarfile.SYMTYPE, "archive-link"),
        (tarfile.LNKTYPE, "archive-link"),
        (tarfile.CHRTYPE, "archive-special-file"),
        (tarfile.BLKTYPE, "archive-special-file"),
        (tarfile.FIFOTYPE, "archive-special-file"),
    ],
)
def test_refuses_tar_links_and_devices(tmp_path: Path, dest: Path, kind: bytes, rule: str) -> None:
    info = tarfile.TarInfo("dist/thing")
    info.type = kind
    info.linkname = "/etc/passwd"
    bundle = _tar(tmp_path / "t.tgz", [info])
    assert _violation(bundle, dest).rule_id == rule
    assert not (dest / "dist" / "thing").exists()


@pytest.mark.parametrize(
    ("first", "second", "rule"),
    [
        ("dist/a.js", "dist/a.js", "archive-duplicate-name"),
        ("dist/A.js", "dist/a.js", "archive-name-collision"),
        ("caf\u00e9.js", "cafe\u0301.js", "archive-name-collision"),
        ("dist", "dist/a.js", "archive-name-collision"),
    ],
)
def test_refuses_colliding_names(
    tmp_path: Path, dest: Path, first: str, second: str, rule: str
) -> None:
    bundle = _zip(tmp_path / "dup.zip", [(first, b"1"), (second, b"2")])
    assert _violation(bundle, dest).rule_id == rule


def test_refuses_compression_bomb_by_ratio(tmp_path: Path, dest: Path) -> None:
    bundle = _zip(tmp_path / "bomb.zip", [("dist/zeros.js", b"\0" * (3 * 1024 * 1024))])
    assert _violation(bundle, dest).rule_id == "archive-compression-ratio"


def test_refuses_declared_total_over_limit(tmp_path: Path, dest: Path) -> None:
    bundle = _zip(tmp_path / "big.zip", [("a", b"x" * 800), ("b", b"y" * 800)])
    assert (
        _violation(bundle, dest, replace(LIMITS, max_total_bytes=1000)).rule_id
        == "archive-too-large"
    )


def test_refuses_too_many_files_before_parsing_them(tmp_path: Path, dest: Path) -> None:
    bundle = _zip(tmp_path / "many.zip", [(f"f{i}", b"") for i in range(6)])
    assert (
        _violation(bundle, dest, replace(LIMITS, max_files=5)).rule_id == "archive-too-many-files"
    )


def test_counts_real_tar_stream_bytes_not_headers(tmp_path: Path, dest: Path) -> None:
    info = tarfile.TarInfo("dist/big.js")
    info.size = 5 * 1024 * 1024
    bundle = _tar(tmp_path / "big.tgz", [info], {"dist/big.js": b"\0" * info.size})
    limits = replace(LIMITS, max_total_bytes=1024 * 1024)
    assert _violation(bundle, dest, limits).rule_id == "archive-too-large"


def test_refuses_zip_whose_header_lies_about_size(tmp_path: Path, dest: Path) -> None:
    data = os.urandom(4096)
    bundle = _zip(tmp_path / "lie.zip", [("dist/a.js", data)])
    raw = bytearray(bundle.read_bytes())
    # Shrink the declared uncompressed size in the local and the central header.
    local = raw.find(b"PK\x03\x04")
    central = raw.find(b"PK\x01\x02")
    struct.pack_into("<I", raw, local + 22, 100)
    struct.pack_into("<I", raw, central + 24, 100)
    bundle.write_bytes(bytes(raw))
    assert _violation(bundle, dest).rule_id == "archive-malformed"


def test_refuses_overlapping_zip_entries(tmp_path: Path, dest: Path) -> None:
    bundle = _zip(tmp_path / "overlap.zip", [("a.js", b"A" * 100), ("b.js", b"B" * 100)])
    raw = bytearray(bundle.read_bytes())
    second_central = raw.find(b"PK\x01\x02", raw.find(b"PK\x01\x02") + 4)
    struct.pack_into("<I", raw, second_central + 42, 0)  # b.js now points at a.js's data
    bundle.write_bytes(bytes(raw))
    assert _violation(bundle, dest).rule_id == "archive-overlap"


def test_refuses_encrypted_members(tmp_path: Path, dest: Path) -> None:
    bundle = _zip(tmp_path / "enc.zip", [("a.js", b"secret")])
    raw = bytearray(bundle.read_bytes())
    for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        pos = raw.find(sig)
        flags = struct.unpack_from("<H", raw, pos + off)[0]
        struct.pack_into("<H", raw, pos + off, flags | 0x1)
    bundle.write_bytes(bytes(raw))
    assert _violation(bundle, dest).rule_id == "archive-encrypted"


@pytest.mark.parametrize(
    ("content", "rule"),
    [
        (b"this is plain text, not an archive at all", "archive-not-an-archive"),
        (b"", "archive-not-an-archive"),
        (b"PK\x03\x04" + b"\0" * 40, "archive-malformed"),
        (gzip.compress(b"not a tar stream" * 100), "archive-malformed"),
        (b"\x1f\x8b\x08\x00garbage", "archive-malformed"),
    ],
)
def test_refuses_malformed_input(tmp_path: Path, dest: Path, content: bytes, rule: str) -> None:
    bundle = tmp_path / "bad.zip"
    bundle.write_bytes(content)
    assert _violation(bundle, dest).rule_id == rule


def test_refuses_truncated_zip(tmp_path: Path, dest: Path) -> None:
    bundle = _zip(tmp_path / "t.zip", [("a.js", os.urandom(2000))])
    bundle.write_bytes(bundle.read_bytes()[:-30])
    assert _violation(bundle, dest).rule_id == "archive-malformed"


def test_refuses_oversize_upload(tmp_path: Path, dest: Path) -> None:
    bundle = _zip(tmp_path / "big.zip", [("a.js", os.urandom(5000))])
    limits = replace(LIMITS, max_bundle_bytes=1000)
    assert _violation(bundle, dest, limits).rule_id == "archive-bundle-too-large"


def test_large_bomb_is_refused_in_bounded_memory(tmp_path: Path, dest: Path) -> None:
    """200 MiB of zeros behind honest headers: refused without inflating it into memory."""
    path = tmp_path / "bomb.zip"
    path.write_bytes(zeros_bomb(200 * 1024 * 1024))
    roomy = replace(LIMITS, max_total_bytes=300 * 1024 * 1024, max_file_bytes=300 * 1024 * 1024)
    tracemalloc.start()
    try:
        violation = _violation(path, dest, roomy)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert violation.rule_id == "archive-compression-ratio"
    assert peak < 32 * 1024 * 1024
