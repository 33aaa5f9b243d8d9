"""Limit-checked unpacking of an untrusted bundle into a private work dir.

Nothing here trusts an archive's headers: sizes are counted from the decompressed
stream, names are normalised and checked before a byte is written, and every write
goes through ``O_CREAT | O_EXCL | O_NOFOLLOW`` below the work dir.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import struct
import tarfile
import unicodedata
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import IO, BinaryIO, Protocol

from scanner.config import ArchiveLimits

CHUNK = 64 * 1024
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
GZIP_MAGIC = b"\x1f\x8b"
# zip overhead bounds used to cap the central directory before zipfile parses it.
_MAX_CENTRAL_DIR_BYTES = 16 * 1024 * 1024
_TAR_HEADER_SLACK = 1024  # bytes of tar header/padding allowed per member on top of content


class ArchiveViolation(Exception):  # noqa: N818 - a verdict about input, not a program error
    """The bundle breaks a rule of safe intake; becomes a critical ``archive`` finding."""

    def __init__(self, rule_id: str, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.rule_id = rule_id
        self.message = message
        self.path = path


@dataclass(frozen=True)
class UnpackedFile:
    path: str  # posix, relative to the bundle root
    size: int
    sha256: str


@dataclass(frozen=True)
class BundleInfo:
    sha256: str
    size: int


@dataclass
class _Budget:
    limits: ArchiveLimits
    total: int = 0
    members: int = 0
    seen: dict[str, str] = field(default_factory=dict)  # collision key -> original name
    files: set[str] = field(default_factory=set)
    dirs: set[str] = field(default_factory=set)


def describe_bundle(bundle: Path) -> BundleInfo:
    digest = hashlib.sha256()
    size = 0
    with bundle.open("rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
    return BundleInfo(digest.hexdigest(), size)


def unpack(bundle: Path, dest: Path, limits: ArchiveLimits) -> list[UnpackedFile]:
    """Unpack ``bundle`` into the empty directory ``dest`` or raise ArchiveViolation."""
    size = bundle.stat().st_size
    if size > limits.max_bundle_bytes:
        raise ArchiveViolation(
            "archive-bundle-too-large",
            f"bundle is {size} bytes, over the limit of {limits.max_bundle_bytes}",
        )
    with bundle.open("rb") as fh:
        magic = fh.read(4)
        fh.seek(0)
        budget = _Budget(limits)
        if magic in ZIP_MAGIC:
            return _unpack_zip(fh, dest, budget)
        if magic[:2] == GZIP_MAGIC:
            return _unpack_tar_gz(fh, dest, budget)
    raise ArchiveViolation(
        "archive-not-an-archive",
        "not a zip or gzip-compressed tar archive (checked by content, not by file name)",
    )


ARCHIVE_MAGIC = (
    (0, b"PK\x03\x04"),
    (0, b"\x1f\x8b"),
    (0, b"7z\xbc\xaf\x27\x1c"),
    (0, b"Rar!\x1a\x07"),
    (0, b"BZh"),
    (0, b"\xfd7zXZ\x00"),
    (257, b"ustar"),
)


def nested_archives(dest: Path, files: list[UnpackedFile]) -> list[str]:
    """Members that are archives themselves: intake does not recurse into them."""
    found = []
    for f in files:
        with dest.joinpath(*f.path.split("/")).open("rb") as fh:
            head = fh.read(262)
        if any(head[off : off + len(magic)] == magic for off, magic in ARCHIVE_MAGIC):
            found.append(f.path)
    return found


# ---------------------------------------------------------------- names


def normalise_member_name(raw: str, limits: ArchiveLimits) -> str:
    """Return the safe relative posix path of a member, or raise."""
    if "\x00" in raw:
        raise ArchiveViolation("archive-invalid-name", "member name contains a NUL byte", raw)
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        raise ArchiveViolation(
            "archive-invalid-name", "member name contains control characters", raw
        )
    if "\\" in raw:
        raise ArchiveViolation(
            "archive-invalid-name", "member name uses a backslash (a Windows separator)", raw
        )
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":" and raw[0].isalpha()):
        raise ArchiveViolation("archive-absolute-path", f"absolute member path {raw!r}", raw)
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveViolation(
            "archive-path-traversal", f"member path {raw!r} escapes the bundle", raw
        )
    if not parts:
        raise ArchiveViolation("archive-invalid-name", f"empty member name {raw!r}", raw)
    if len(parts) > limits.max_depth:
        raise ArchiveViolation(
            "archive-too-deep", f"member {raw!r} is nested deeper than {limits.max_depth}", raw
        )
    if len(raw.encode("utf-8", "surrogateescape")) > limits.max_path_bytes:
        raise ArchiveViolation("archive-invalid-name", "member name is too long", raw[:80])
    return "/".join(parts)


def _register(name: str, is_dir: bool, budget: _Budget) -> None:
    """Reject duplicates, case/Unicode collisions and file-versus-directory clashes."""
    budget.members += 1
    if budget.members > budget.limits.max_files:
        raise ArchiveViolation(
            "archive-too-many-files", f"more than {budget.limits.max_files} members"
        )
    key = unicodedata.normalize("NFKC", name).casefold()
    if key in budget.seen:
        if is_dir and key in budget.dirs and budget.seen[key] == name:
            return  # the same directory listed twice is harmless
        rule = "archive-duplicate-name" if budget.seen[key] == name else "archive-name-collision"
        raise ArchiveViolation(rule, f"member {name!r} collides with {budget.seen[key]!r}", name)
    parents = key.split("/")[:-1]
    for i in range(1, len(parents) + 1):
        parent = "/".join(parents[:i])
        if parent in budget.files:
            raise ArchiveViolation(
                "archive-name-collision", f"member {name!r} is below a file of the same name", name
            )
        budget.dirs.add(parent)
    if not is_dir and key in budget.dirs:
        raise ArchiveViolation(
            "archive-name-collision", f"file {name!r} clashes with a directory", name
        )
    budget.seen[key] = name
    (budget.dirs if is_dir else budget.files).add(key)


# ---------------------------------------------------------------- writing


def _open_target(dest: Path, rel: str) -> int:
    target = dest.joinpath(*rel.split("/"))
    # Parents are only ever created by us, so none of them can be a link.
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not target.resolve().is_relative_to(dest.resolve()):
        raise ArchiveViolation("archive-path-traversal", f"member {rel!r} escapes the bundle", rel)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    return os.open(target, flags, 0o600)


def _copy_stream(
    src: IO[bytes], dest: Path, rel: str, packed_size: int | None, budget: _Budget
) -> UnpackedFile:
    limits = budget.limits
    digest = hashlib.sha256()
    written = 0
    fd = _open_target(dest, rel)
    with os.fdopen(fd, "wb") as out:
        while chunk := src.read(CHUNK):
            written += len(chunk)
            budget.total += len(chunk)
            if written > limits.max_file_bytes:
                raise ArchiveViolation(
                    "archive-file-too-large",
                    f"{rel!r} unpacks to more than {limits.max_file_bytes} bytes",
                    rel,
                )
            if budget.total > limits.max_total_bytes:
                raise ArchiveViolation(
                    "archive-too-large",
                    f"bundle unpacks to more than {limits.max_total_bytes} bytes",
                    rel,
                )
            if (
                packed_size is not None
                and written > limits.ratio_grace_bytes
                and written > limits.max_ratio * max(packed_size, 1)
            ):
                raise ArchiveViolation(
                    "archive-compression-ratio",
                    f"{rel!r} expands more than {limits.max_ratio:g}x (a decompression bomb)",
                    rel,
                )
            digest.update(chunk)
            out.write(chunk)
    dest.joinpath(*rel.split("/")).chmod(0o444)
    return UnpackedFile(rel, written, digest.hexdigest())


# ---------------------------------------------------------------- zip


def _unpack_zip(fh: BinaryIO, dest: Path, budget: _Budget) -> list[UnpackedFile]:
    _check_central_directory_size(fh, budget.limits)
    try:
        zf = zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise ArchiveViolation("archive-malformed", f"malformed zip: {exc}") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > budget.limits.max_files:
            raise ArchiveViolation(
                "archive-too-many-files", f"{len(infos)} members, over {budget.limits.max_files}"
            )
        plan = [(info, _check_zip_member(info, budget)) for info in infos]
        _check_zip_overlap(fh, infos, zf.start_dir)
        declared = sum(i.file_size for i in infos)
        if declared > budget.limits.max_total_bytes:
            raise ArchiveViolation(
                "archive-too-large",
                f"headers declare {declared} unpacked bytes, over {budget.limits.max_total_bytes}",
            )
        out: list[UnpackedFile] = []
        for info, rel in plan:
            if info.is_dir():
                dest.joinpath(*rel.split("/")).mkdir(parents=True, exist_ok=True, mode=0o700)
                continue
            try:
                with zf.open(info) as src:
                    out.append(_copy_stream(src, dest, rel, info.compress_size, budget))
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
                raise ArchiveViolation("archive-malformed", f"{rel!r}: {exc}", rel) from None
        return out


def _check_zip_member(info: zipfile.ZipInfo, budget: _Budget) -> str:
    # zipfile cuts names at a NUL; a browser-side unzip may not, so check the raw name.
    rel = normalise_member_name(info.orig_filename, budget.limits)
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if kind == stat.S_IFLNK:
        raise ArchiveViolation("archive-link", f"{rel!r} is a symbolic link", rel)
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise ArchiveViolation("archive-special-file", f"{rel!r} is a special file", rel)
    if info.flag_bits & 0x1:
        raise ArchiveViolation(
            "archive-encrypted", f"{rel!r} is encrypted and cannot be scanned", rel
        )
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ArchiveViolation(
            "archive-unsupported", f"{rel!r} uses compression method {info.compress_type}", rel
        )
    if info.file_size > budget.limits.max_file_bytes:
        raise ArchiveViolation(
            "archive-file-too-large",
            f"{rel!r} declares {info.file_size} bytes, over {budget.limits.max_file_bytes}",
            rel,
        )
    _register(rel, info.is_dir(), budget)
    return rel


def _check_central_directory_size(fh: BinaryIO, limits: ArchiveLimits) -> None:
    """Read the end record ourselves so a million-entry directory is refused unparsed."""
    fh.seek(0, io.SEEK_END)
    size = fh.tell()
    tail_len = min(size, 22 + 65535)
    fh.seek(size - tail_len)
    tail = fh.read(tail_len)
    fh.seek(0)
    pos = tail.rfind(b"PK\x05\x06")
    if pos < 0 or pos + 22 > len(tail):
        raise ArchiveViolation("archive-malformed", "zip end-of-central-directory record not found")
    _, _, _, entries, cd_size, _, _ = struct.unpack("<HHHHIIH", tail[pos + 4 : pos + 22])
    if entries != 0xFFFF and entries > limits.max_files:
        raise ArchiveViolation(
            "archive-too-many-files", f"{entries} members, over {limits.max_files}"
        )
    if cd_size != 0xFFFFFFFF and cd_size > _MAX_CENTRAL_DIR_BYTES:
        raise ArchiveViolation("archive-malformed", f"central directory of {cd_size} bytes")


def _check_zip_overlap(fh: BinaryIO, infos: list[zipfile.ZipInfo], central_dir: int) -> None:
    """Refuse members whose data overlap (quoted-overlap bombs) or hide in the directory."""
    spans: list[tuple[int, int, str]] = []
    for info in infos:
        fh.seek(info.header_offset)
        header = fh.read(30)
        if len(header) < 30 or header[:4] != b"PK\x03\x04":
            raise ArchiveViolation(
                "archive-malformed", f"{info.filename!r}: local header missing", info.filename
            )
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        start = info.header_offset
        end = start + 30 + name_len + extra_len + info.compress_size
        if end > central_dir:
            raise ArchiveViolation(
                "archive-overlap",
                f"{info.filename!r} runs into the central directory",
                info.filename,
            )
        spans.append((start, end, info.filename))
    spans.sort()
    for (_, prev_end, prev_name), (start, _, name) in pairwise(spans):
        if start < prev_end:
            raise ArchiveViolation(
                "archive-overlap", f"{name!r} overlaps the data of {prev_name!r}", name
            )
    fh.seek(0)


# ---------------------------------------------------------------- tar.gz


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _CountingReader(io.RawIOBase):
    """Caps the decompressed tar stream, headers and padding included."""

    def __init__(self, inner: _Readable, cap: int) -> None:
        self._inner = inner
        self._cap = cap
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._inner.read(len(buffer))
        self.count += len(data)
        if self.count > self._cap:
            raise ArchiveViolation(
                "archive-too-large", f"archive stream unpacks to more than {self._cap} bytes"
            )
        buffer[: len(data)] = data
        return len(data)


def _tar_members(tf: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    while True:
        member = tf.next()
        if member is None:
            return
        yield member


def _unpack_tar_gz(fh: BinaryIO, dest: Path, budget: _Budget) -> list[UnpackedFile]:
    limits = budget.limits
    cap = limits.max_total_bytes + (limits.max_files + 2) * _TAR_HEADER_SLACK + 1024 * 1024
    counting = _CountingReader(gzip.GzipFile(fileobj=fh, mode="rb"), cap)
    stream = io.BufferedReader(counting, buffer_size=CHUNK)
    out: list[UnpackedFile] = []
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tf:
            for member in _tar_members(tf):
                out.extend(_unpack_tar_member(tf, member, dest, budget))
    except (tarfile.TarError, EOFError, OSError, zlib.error, UnicodeError) as exc:
        raise ArchiveViolation("archive-malformed", f"malformed tar.gz: {exc}") from None
    return out


def _unpack_tar_member(
    tf: tarfile.TarFile, member: tarfile.TarInfo, dest: Path, budget: _Budget
) -> list[UnpackedFile]:
    rel = normalise_member_name(member.name, budget.limits)
    if member.issym() or member.islnk():
        raise ArchiveViolation("archive-link", f"{rel!r} is a link to {member.linkname!r}", rel)
    if member.isdir():
        _register(rel, True, budget)
        dest.joinpath(*rel.split("/")).mkdir(parents=True, exist_ok=True, mode=0o700)
        return []
    if not member.isreg() or member.issparse():
        raise ArchiveViolation("archive-special-file", f"{rel!r} is not a regular file", rel)
    if member.size > budget.limits.max_file_bytes:
        raise ArchiveViolation(
            "archive-file-too-large",
            f"{rel!r} declares {member.size} bytes, over {budget.limits.max_file_bytes}",
            rel,
        )
    _register(rel, False, budget)
    src = tf.extractfile(member)
    if src is None:  # pragma: no cover - isreg() members always have a reader
        raise ArchiveViolation("archive-malformed", f"{rel!r} has no data", rel)
    # Ratio is judged on the whole gzip stream for tar, which the counting reader caps.
    return [_copy_stream(src, dest, rel, None, budget)]
