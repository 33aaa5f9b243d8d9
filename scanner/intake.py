"""Limit-checked unpacking of an untrusted bundle into a private work dir.

Nothing here trusts an archive's headers: the container is parsed by the strict readers
in ``scanner.archive`` (one archive, one meaning), sizes are counted from the
decompressed stream, names are normalised and checked before a byte is written, and
every write goes through ``O_CREAT | O_EXCL | O_NOFOLLOW`` below the work dir.
``unpack_confined`` runs all of it in a child process under OS-enforced budgets.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import unicodedata
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from scanner.archive.tarformat import tar_members
from scanner.archive.violation import ArchiveViolation, malformed
from scanner.archive.zipformat import member_chunks, read_zip
from scanner.config import ArchiveLimits
from scanner.confinement import Budget, BudgetExceededError, ChildFailedError, run_confined

__all__ = [
    "ArchiveViolation",
    "BundleInfo",
    "UnpackedFile",
    "describe_bundle",
    "nested_archives",
    "unpack",
    "unpack_confined",
]

CHUNK = 64 * 1024
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
GZIP_MAGIC = b"\x1f\x8b"
# A path component longer than this fails to be created on every common filesystem.
_MAX_COMPONENT_BYTES = 255
# Unicode categories a name must not hold: controls (C0, DEL, C1), format characters
# (bidi overrides, zero-width), line and paragraph separators.
_INVISIBLE = frozenset({"Cc", "Cf", "Zl", "Zp"})
# errno values that mean our machine is failing, not the bundle.
_ENVIRONMENT_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.ENOMEM, errno.EMFILE, errno.ENFILE}
)


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
            return _unpack_zip(fh, size, dest, budget)
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


_MARKUP = frozenset("<>\"'`")


def normalise_member_name(raw: str, limits: ArchiveLimits) -> str:
    """Return the safe relative posix path of a member, or raise."""
    if "\x00" in raw:
        raise ArchiveViolation("archive-invalid-name", "member name contains a NUL byte", raw)
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        raise ArchiveViolation(
            "archive-invalid-name", "member name contains control characters", raw
        )
    if any(unicodedata.category(c) in _INVISIBLE for c in raw):
        raise ArchiveViolation(
            "archive-invalid-name",
            "member name contains invisible or direction-changing characters (bidi"
            " controls, zero-width characters, C1 controls, line separators) that make it"
            " read as another name",
            raw.encode("unicode_escape").decode("ascii"),
        )
    if "\\" in raw:
        raise ArchiveViolation(
            "archive-invalid-name", "member name uses a backslash (a Windows separator)", raw
        )
    if any(c in _MARKUP for c in raw):
        # A name is shown in the desk, reports, SARIF and terminals; markup and quote
        # characters in it serve no bundle and only help injection where escaping slips.
        raise ArchiveViolation(
            "archive-invalid-name", "member name contains markup or quote characters", raw
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
    if any(len(p.encode("utf-8", "surrogateescape")) > _MAX_COMPONENT_BYTES for p in parts):
        raise ArchiveViolation(
            "archive-invalid-name", "a member path component is over 255 bytes", raw[:80]
        )
    return "/".join(parts)


def _admit(raw: str, is_dir: bool, budget: _Budget) -> str | None:
    """The member's safe path, registered; None for the bundle root itself (``./``, which
    ``tar -c .`` and ``bsdtar -c .`` write first)."""
    if is_dir and not raw.startswith("/") and all(p in ("", ".") for p in raw.split("/")):
        return None
    rel = normalise_member_name(raw, budget.limits)
    _register(rel, is_dir, budget)
    return rel


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
    chunks: Iterable[bytes], dest: Path, rel: str, packed_size: int | None, budget: _Budget
) -> UnpackedFile:
    limits = budget.limits
    digest = hashlib.sha256()
    written = 0
    fd = _open_target(dest, rel)
    with os.fdopen(fd, "wb") as out:
        for chunk in chunks:
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


# ---------------------------------------------------------------- zip and tar.gz


def _unpack_zip(fh: BinaryIO, size: int, dest: Path, budget: _Budget) -> list[UnpackedFile]:
    members = read_zip(fh, size, budget.limits)
    # Every name is checked before the first byte is written.
    plan = [(m, _admit(m.name, m.is_dir, budget)) for m in members]
    declared = sum(m.size for m in members)
    if declared > budget.limits.max_total_bytes:
        raise ArchiveViolation(
            "archive-too-large",
            f"headers declare {declared} unpacked bytes, over {budget.limits.max_total_bytes}",
        )
    out: list[UnpackedFile] = []
    for member, rel in plan:
        if member.is_dir:
            for _ in member_chunks(fh, member):  # checks that it really holds nothing
                raise malformed(f"directory {member.name!r} holds data", member.name)
            if rel is not None:
                dest.joinpath(*rel.split("/")).mkdir(parents=True, exist_ok=True, mode=0o700)
            continue
        assert rel is not None  # only a directory can be the root
        out.append(_copy_stream(member_chunks(fh, member), dest, rel, member.packed, budget))
    return out


def _unpack_tar_gz(fh: BinaryIO, dest: Path, budget: _Budget) -> list[UnpackedFile]:
    out: list[UnpackedFile] = []
    for member, chunks in tar_members(fh, budget.limits):
        rel = _admit(member.name, member.is_dir, budget)
        if member.is_dir:
            if rel is not None:
                dest.joinpath(*rel.split("/")).mkdir(parents=True, exist_ok=True, mode=0o700)
            continue
        assert rel is not None  # only a directory can be the root
        # The ratio is judged on the whole gzip stream for tar, which the reader caps.
        out.append(_copy_stream(chunks, dest, rel, None, budget))
    return out


# ---------------------------------------------------------------- under a budget


def unpack_confined(bundle: Path, dest: Path, limits: ArchiveLimits) -> list[UnpackedFile]:
    """``unpack`` in a child process under the OS-enforced intake budget.

    Time or memory over budget is the refusal ``archive-budget-exceeded``; a child that
    fails in any other way is ``archive-malformed``, unless our own machine failed (disk
    full...), which is an OSError for the caller to record as an error. Whatever the child
    wrote is removed on a refusal.
    """
    budget = Budget(limits.max_seconds, limits.max_memory_bytes, limits.max_file_bytes)
    payload = {"bundle": str(bundle), "dest": str(dest), "limits": asdict(limits)}
    try:
        reply = run_confined("scanner.intake:unpack_request", payload, budget)
        if "violation" in reply:
            raise ArchiveViolation(**reply["violation"])
        return [UnpackedFile(**f) for f in reply["files"]]
    except BudgetExceededError as exc:
        _empty(dest)
        raise ArchiveViolation(
            "archive-budget-exceeded", f"unpacking {exc}: refused, nothing of it is kept"
        ) from None
    except ChildFailedError as exc:
        _empty(dest)
        if exc.errno in _ENVIRONMENT_ERRNOS:
            raise OSError(exc.errno, f"intake failed: {exc}") from None
        raise malformed(f"the archive could not be read ({exc})") from None
    except ArchiveViolation:
        _empty(dest)
        raise


def unpack_request(payload: dict[str, Any]) -> dict[str, Any]:
    """The child's side of ``unpack_confined``: a refusal is an answer, not an error."""
    limits = ArchiveLimits(**payload["limits"])
    try:
        files = unpack(Path(payload["bundle"]), Path(payload["dest"]), limits)
    except ArchiveViolation as v:
        return {"violation": {"rule_id": v.rule_id, "message": v.message, "path": v.path}}
    return {"files": [asdict(f) for f in files]}


def _empty(dest: Path) -> None:
    for child in dest.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
