"""Hostile archives: each is refused with a named rule, and nothing lands outside dest."""

from __future__ import annotations

import gzip
import io
import os
import struct
import tarfile
import time
import tracemalloc
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from scanner.bench import zeros_bomb
from scanner.config import ArchiveLimits
from scanner.intake import ArchiveViolation, describe_bundle, unpack, unpack_confined
from tests.scanner.archives import (
    DEFLATED,
    DESCRIPTOR,
    HARMLESS,
    PLUGIN,
    STEALER,
    STORED,
    Entry,
    bad_utf8_local_name,
    build_zip,
    deflate,
    descriptor,
    entry,
    huge_pax_header,
    local_entry_missing_from_directory,
    pax_digit_run,
    pax_record,
    stealer_behind_the_directory,
    tar_gz,
    tar_header,
    tar_member,
    unknown_version_needed,
    zip64_million_entries,
)

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
        ("dist/bundle\u202esj.js", "archive-invalid-name"),
        ("dist/a\u200b.js", "archive-invalid-name"),
        ("dist/a\x85.js", "archive-invalid-name"),
        ("dist/a\u2028.js", "archive-invalid-name"),
        ("dist/<img src=x onerror=alert(1)>.js", "archive-invalid-name"),
        ('dist/a"b.js', "archive-invalid-name"),
        ("dist/it's.js", "archive-invalid-name"),
        ("dist/`x`.js", "archive-invalid-name"),
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


# ---------------------------------------------------------------- one archive, one meaning
# Issue 11: each of these got a cookie stealer to `pass`, crashed intake, or kept it busy.

ATTACKS: dict[str, tuple[Callable[[], bytes], str]] = {
    "stored-stealer-behind-directory": (
        lambda: stealer_behind_the_directory(STORED),
        "archive-malformed",
    ),
    "deflated-stealer-behind-directory": (
        lambda: stealer_behind_the_directory(DEFLATED),
        "archive-malformed",
    ),
    "local-entry-missing-from-directory": (
        local_entry_missing_from_directory,
        "archive-malformed",
    ),
    "bad-utf8-local-name": (bad_utf8_local_name, "archive-malformed"),
    "unknown-version-needed": (unknown_version_needed, "archive-unsupported"),
    "zip64-million-entries": (zip64_million_entries, "archive-too-many-files"),
    "pax-80k-digit-run": (lambda: pax_digit_run(80_000), "archive-malformed"),
    "pax-60k-digit-run-under-the-cap": (lambda: pax_digit_run(60_000), "archive-malformed"),
    "pax-header-100mb": (huge_pax_header, "archive-malformed"),
}


def test_the_attacks_fooled_or_crashed_the_standard_library(tmp_path: Path) -> None:
    """Why each attack matters: what zipfile and tarfile make of them."""
    with zipfile.ZipFile(io.BytesIO(stealer_behind_the_directory(STORED))) as zf:
        assert zf.read("dist/bundle.js") == HARMLESS  # the stealer is invisible to zipfile
    with zipfile.ZipFile(io.BytesIO(stealer_behind_the_directory(DEFLATED))) as zf:
        assert zf.read("dist/bundle.js") == HARMLESS
    with zipfile.ZipFile(io.BytesIO(local_entry_missing_from_directory())) as zf:
        assert "dist/hidden.js" not in zf.namelist()
    with (
        zipfile.ZipFile(io.BytesIO(bad_utf8_local_name())) as zf,
        pytest.raises(UnicodeDecodeError),
    ):
        zf.read("dist/bundle.js")
    with pytest.raises(NotImplementedError):
        zipfile.ZipFile(io.BytesIO(unknown_version_needed())).read("plugin.json")


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_each_attack_is_refused_with_its_rule(tmp_path: Path, dest: Path, attack: str) -> None:
    build, rule = ATTACKS[attack]
    bundle = tmp_path / "attack.bin"
    bundle.write_bytes(build())
    tracemalloc.start()
    try:
        violation = _violation(bundle, dest)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert violation.rule_id == rule, violation.message
    assert peak < 16 * 1024 * 1024  # refused without holding the archive's claims in memory
    assert list(dest.iterdir()) == []


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_each_attack_is_refused_fast_by_the_budgeted_child(
    tmp_path: Path, dest: Path, attack: str
) -> None:
    build, rule = ATTACKS[attack]
    bundle = tmp_path / "attack.bin"
    bundle.write_bytes(build())
    start = time.monotonic()
    with pytest.raises(ArchiveViolation) as info:
        unpack_confined(bundle, dest, LIMITS)
    assert time.monotonic() - start < 5
    assert info.value.rule_id == rule, info.value.message
    assert list(dest.iterdir()) == []


def _members(**overrides: object) -> list[Entry]:
    js = entry("dist/bundle.js", HARMLESS, DEFLATED)
    for key, value in overrides.items():
        setattr(js, key, value)
    return [entry("plugin.json", PLUGIN), js]


def _with_descriptor(signed: bool = True, **override: int) -> bytes:
    js = entry("dist/bundle.js", HARMLESS, DEFLATED, flags=DESCRIPTOR)
    js.local = {"crc": 0, "csize": 0, "usize": 0}
    js.after = descriptor(js, signed=signed, **override)
    return build_zip([entry("plugin.json", PLUGIN), js])


def _stored_descriptor_with_signature_inside() -> bytes:
    content = b"var a = 'PK\x07\x08';"
    js = entry("dist/bundle.js", content, STORED, flags=DESCRIPTOR)
    js.after = descriptor(js)
    return build_zip([entry("plugin.json", PLUGIN), js])


def _deflate_with_slack() -> bytes:
    js = entry("dist/bundle.js", HARMLESS, DEFLATED)
    js.local = {"data": deflate(HARMLESS) + STEALER}
    js.central = {"csize": len(js.data)}
    return build_zip([entry("plugin.json", PLUGIN), js])


def _two_entries_one_offset() -> bytes:
    base = build_zip(_members())
    first = base.index(b"PK\x01\x02")
    second = base.index(b"PK\x01\x02", first + 4)
    patched = bytearray(base)
    struct.pack_into("<I", patched, second + 42, 0)
    return bytes(patched)


def _directory_out_of_order() -> bytes:
    a, b = entry("a.js", b"1"), entry("b.js", b"2")
    zipped = build_zip([a, b])
    cd = zipped.index(b"PK\x01\x02")
    second = zipped.index(b"PK\x01\x02", cd + 4)
    end = zipped.index(b"PK\x05\x06")
    return zipped[:cd] + zipped[second:end] + zipped[cd:second] + zipped[end:]


CANONICAL = {
    "prepended data": lambda: build_zip(_members(), prepend=b"PK\x03\x04" + bytes(60)),
    "appended data": lambda: build_zip(_members(), append=b"<script>evil()</script>"),
    "an archive comment": lambda: build_zip(_members(), comment=b"PK\x05\x06 hidden"),
    "a gap between members": lambda: build_zip(_members(after=STEALER)),
    "a descriptor that is missing": lambda: build_zip(
        [entry("dist/bundle.js", HARMLESS, DEFLATED, flags=DESCRIPTOR)]
    ),
    "an unsigned descriptor": lambda: _with_descriptor(signed=False),
    "a descriptor that disagrees": lambda: _with_descriptor(usize=1),
    "stored data holding the descriptor signature": _stored_descriptor_with_signature_inside,
    "local sizes that disagree without a descriptor": lambda: build_zip(
        _members(local={"usize": 1})
    ),
    "local flags that disagree": lambda: build_zip(_members(local={"flags": 2})),
    "local method that disagrees": lambda: build_zip(_members(local={"method": 0})),
    "local time that disagrees": lambda: build_zip(_members(local={"time": 99})),
    "a local name that differs": lambda: build_zip(_members(local={"name": b"dist/bundle.jz"})),
    "a deflate stream that ends early": _deflate_with_slack,
    "two entries at one offset": _two_entries_one_offset,
    "a directory out of order": _directory_out_of_order,
    "a Unicode path extra field (unzip renames)": lambda: build_zip(
        _members(central_extra=struct.pack("<HHB", 0x7075, 1, 1))
    ),
    "an extra field twice": lambda: build_zip(
        _members(local_extra=struct.pack("<HH", 0x5455, 0) * 2)
    ),
    "a non-ASCII name without the UTF-8 flag": lambda: build_zip(
        [Entry(b"dist/caf\x82.js", b"1", local={"flags": 0}, central={"flags": 0})]
    ),
    "a directory attribute on a file": lambda: build_zip(_members(attrs=0x10)),
    "a regular-file mode on a directory": lambda: build_zip(
        [entry("dist/", b"", attrs=0o100644 << 16)]
    ),
    "an unknown host system": lambda: build_zip(_members(made_by=0x1314)),
    "unknown flags": lambda: build_zip(_members(flags=0x0010)),
}


# Cases refused under a more specific rule than archive-malformed.
CANONICAL_RULES = {
    "a non-ASCII name without the UTF-8 flag": "archive-invalid-name",
    "two entries at one offset": "archive-overlap",
}


@pytest.mark.parametrize("case", sorted(CANONICAL))
def test_refuses_archives_with_more_than_one_meaning(tmp_path: Path, dest: Path, case: str) -> None:
    bundle = tmp_path / "case.zip"
    bundle.write_bytes(CANONICAL[case]())
    violation = _violation(bundle, dest)
    assert violation.rule_id == CANONICAL_RULES.get(case, "archive-malformed"), violation.message


def test_the_base_of_the_canonical_cases_is_accepted(tmp_path: Path, dest: Path) -> None:
    bundle = tmp_path / "base.zip"
    bundle.write_bytes(build_zip(_members()))
    assert {f.path for f in unpack(bundle, dest, LIMITS)} == {"plugin.json", "dist/bundle.js"}
    signed = tmp_path / "signed.zip"
    signed.write_bytes(_with_descriptor())
    assert len(unpack(signed, dest / "again", LIMITS)) == 2


def _gnu_sparse() -> bytes:
    return tar_gz(tar_member(b"dist/bundle.js", HARMLESS, b"S", magic=b"ustar  \x00"))


TAR_CASES: dict[str, tuple[Callable[[], bytes], str]] = {
    "two gzip members": (
        lambda: tar_gz(tar_member(b"a.js", b"1")) + tar_gz(tar_member(b"a.js", STEALER)),
        "archive-malformed",
    ),
    "bytes after the gzip member": (
        lambda: tar_gz(tar_member(b"a.js", b"1")) + b"junk",
        "archive-malformed",
    ),
    "data after the end blocks": (
        lambda: tar_gz(tar_member(b"a.js", b"1"), end=bytes(1024) + tar_member(b"b.js", STEALER)),
        "archive-malformed",
    ),
    "no end blocks": (lambda: tar_gz(tar_member(b"a.js", b"1"), end=b""), "archive-malformed"),
    "one end block only": (
        lambda: tar_gz(tar_member(b"a.js", b"1"), end=bytes(512)),
        "archive-malformed",
    ),
    "a global pax header": (
        lambda: tar_gz(tar_member(b"g", pax_record(b"path", b"x.js"), b"g")),
        "archive-malformed",
    ),
    "a pax size override": (
        lambda: tar_gz(
            tar_member(b"x", pax_record(b"size", b"3"), b"x"), tar_member(b"a.js", b"1")
        ),
        "archive-malformed",
    ),
    "a pax link target": (
        lambda: tar_gz(
            tar_member(b"x", pax_record(b"linkpath", b"/etc"), b"x"), tar_member(b"a.js", b"1")
        ),
        "archive-link",
    ),
    "an unknown pax key": (
        lambda: tar_gz(
            tar_member(b"x", pax_record(b"SCHILY.fflags", b"schg"), b"x"),
            tar_member(b"a.js", b"1"),
        ),
        "archive-malformed",
    ),
    "a pax key twice": (
        lambda: tar_gz(
            tar_member(b"x", pax_record(b"path", b"a.js") + pax_record(b"path", b"b.js"), b"x"),
            tar_member(b"a.js", b"1"),
        ),
        "archive-malformed",
    ),
    "two extended headers for one member": (
        lambda: tar_gz(
            tar_member(b"x", pax_record(b"path", b"a.js"), b"x"),
            tar_member(b"././@LongLink", b"b.js\x00", b"L", magic=b"ustar  \x00"),
            tar_member(b"a.js", b"1"),
        ),
        "archive-malformed",
    ),
    "a GNU sparse file": (_gnu_sparse, "archive-special-file"),
    "a GNU long link": (
        lambda: tar_gz(tar_member(b"././@LongLink", b"x\x00", b"K", magic=b"ustar  \x00")),
        "archive-link",
    ),
    "a multi-volume header": (
        lambda: tar_gz(tar_member(b"a.js", b"1", b"M", magic=b"ustar  \x00")),
        "archive-unsupported",
    ),
    "a base-256 size": (
        lambda: tar_gz(tar_header(b"a.js", 1, size_field=b"\x80" + bytes(10) + b"\x01")),
        "archive-malformed",
    ),
    "digits after a terminator in the size": (
        lambda: tar_gz(tar_header(b"a.js", 0, size_field=b"0000000000\x001")),
        "archive-malformed",
    ),
    "a bad checksum": (
        lambda: tar_gz(tar_header(b"a.js", 0)[:148] + b"000000\x00 " + bytes(356)),
        "archive-malformed",
    ),
    "a V7 header without magic": (
        lambda: tar_gz(tar_member(b"a.js", b"1", magic=bytes(8))),
        "archive-malformed",
    ),
    "a directory with data": (
        lambda: tar_gz(tar_member(b"dist/", STEALER, b"5")),
        "archive-malformed",
    ),
    "a file named like a directory": (
        lambda: tar_gz(tar_member(b"dist/", STEALER, b"0")),
        "archive-malformed",
    ),
    "non-zero padding": (
        lambda: tar_gz(tar_header(b"a.js", 1) + b"1" + b"X" * 511),
        "archive-malformed",
    ),
    "a link target on a file": (
        lambda: tar_gz(tar_member(b"a.js", b"1", linkname=b"/etc/passwd")),
        "archive-malformed",
    ),
    "a name that is not UTF-8": (
        lambda: tar_gz(tar_member(b"caf\xe9.js", b"1")),
        "archive-invalid-name",
    ),
}


@pytest.mark.parametrize("case", sorted(TAR_CASES))
def test_refuses_tar_gz_with_more_than_one_meaning(tmp_path: Path, dest: Path, case: str) -> None:
    build, rule = TAR_CASES[case]
    bundle = tmp_path / "case.tgz"
    bundle.write_bytes(build())
    violation = _violation(bundle, dest)
    assert violation.rule_id == rule, violation.message


def test_accepts_pax_paths_and_gnu_long_names(tmp_path: Path, dest: Path) -> None:
    long_name = "dist/" + "d" * 120 + "/bundle.js"
    bundle = tmp_path / "long.tgz"
    bundle.write_bytes(
        tar_gz(
            tar_member(b"x", pax_record(b"path", long_name.encode()), b"x"),
            tar_member(long_name.encode()[:99], b"1"),
            tar_member(
                b"././@LongLink", b"dist/l" + b"o" * 120 + b".js\x00", b"L", magic=b"ustar  \x00"
            ),
            tar_member(b"dist/looo", b"2", magic=b"ustar  \x00"),
            tar_member(
                b"x", pax_record(b"mtime", b"1796286957.36") + pax_record(b"uid", b"0"), b"x"
            ),
            tar_member(b"plain.js", b"3"),
        )
    )
    files = {f.path: f.size for f in unpack(bundle, dest, LIMITS)}
    assert files == {long_name: 1, "dist/l" + "o" * 120 + ".js": 1, "plain.js": 1}


def test_the_root_directory_entry_of_tar_c_dot_is_accepted(tmp_path: Path, dest: Path) -> None:
    bundle = tmp_path / "dot.tgz"
    bundle.write_bytes(
        tar_gz(
            tar_member(b"./", b"", b"5"),
            tar_member(b"./dist/", b"", b"5"),
            tar_member(b"./dist/a.js", b"1"),
        )
    )
    assert [f.path for f in unpack(bundle, dest, LIMITS)] == ["dist/a.js"]


def test_refuses_a_path_component_no_filesystem_can_create(tmp_path: Path, dest: Path) -> None:
    bundle = _zip(tmp_path / "long.zip", [("d/" + "x" * 256 + ".js", b"1")])
    assert _violation(bundle, dest).rule_id == "archive-invalid-name"


def test_intake_over_its_wall_clock_is_refused_and_leaves_nothing(
    tmp_path: Path, dest: Path
) -> None:
    bundle = _zip(tmp_path / "ok.zip", [(f"dist/f{i}.js", os.urandom(2000)) for i in range(300)])
    limits = replace(LIMITS, max_seconds=0.001)  # far less than an interpreter takes to start
    with pytest.raises(ArchiveViolation) as info:
        unpack_confined(bundle, dest, limits)
    assert info.value.rule_id == "archive-budget-exceeded"
    assert list(dest.iterdir()) == []


def test_the_budgeted_child_unpacks_what_unpack_does(tmp_path: Path, dest: Path) -> None:
    (tmp_path / "again").mkdir()
    bundle = _zip(tmp_path / "ok.zip", [("plugin.json", b"{}"), ("dist/a.js", b"var a = 1;")])
    assert sorted(unpack_confined(bundle, dest, LIMITS), key=lambda f: f.path) == sorted(
        unpack(bundle, tmp_path / "again", LIMITS), key=lambda f: f.path
    )


def test_a_deflated_empty_directory_entry_is_accepted(tmp_path: Path, dest: Path) -> None:
    bundle = tmp_path / "dir.zip"
    bundle.write_bytes(
        build_zip([entry("dist/", b"", DEFLATED, attrs=0o40755 << 16 | 0x10), entry("a.js", "1")])
    )
    assert [f.path for f in unpack(bundle, dest, LIMITS)] == ["a.js"]
    assert (dest / "dist").is_dir()
