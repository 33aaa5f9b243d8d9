"""The canonical repack of exactly the tree intake admitted, and the tree's digest.

Whatever reads the bundle after intake (the service's stage workers, the conclusion,
promotion to the CDN) reads this repack, never the uploaded bytes through another
parser: an upload with two meanings cannot matter once only the scanned one is kept.

The repack is a zip with the files in sorted order (by UTF-8 bytes), stored (so its
bytes depend on nothing but the tree, not on a zlib version), one fixed time stamp, mode
0644, no directories and no extra fields. The tree digest is the sha256 of the lines
``path<TAB>size<TAB>sha256<LF>`` in the same order: the identity of the scanned content
whatever archive carried it.
"""

from __future__ import annotations

import hashlib
import os
import stat
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from scanner.intake import UnpackedFile

CHUNK = 1024 * 1024
REPACK_TIME = (1980, 1, 1, 0, 0, 0)
FILE_MODE = stat.S_IFREG | 0o644


class RepackError(Exception):
    """The tree on disk is not the tree intake reported, or a repack is not the one recorded."""


@dataclass(frozen=True)
class Repack:
    sha256: str
    size: int
    tree_sha256: str


def tree_digest(files: Iterable[UnpackedFile]) -> str:
    digest = hashlib.sha256()
    for f in sorted(files, key=_order):
        digest.update(f"{f.path}\t{f.size}\t{f.sha256}\n".encode())
    return digest.hexdigest()


def write_repack(root: Path, files: Sequence[UnpackedFile], dest: Path) -> Repack:
    """Repack the tree under ``root``; each file's bytes are checked against intake's
    record on the way, and the tree must hold nothing else."""
    _check_tree(root, files)
    with zipfile.ZipFile(dest, "x", zipfile.ZIP_STORED) as zf:
        for f in sorted(files, key=_order):
            info = zipfile.ZipInfo(f.path, REPACK_TIME)
            info.create_system = 3  # Unix: the mode bits below are read as such
            info.external_attr = FILE_MODE << 16
            info.file_size = f.size
            digest = hashlib.sha256()
            with root.joinpath(*f.path.split("/")).open("rb") as src, zf.open(info, "w") as out:
                while chunk := src.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != f.sha256:
                raise RepackError(f"{f.path!r} changed after intake hashed it")
    return Repack(_sha256_file(dest), dest.stat().st_size, tree_digest(files))


def verify_repack(path: Path, expected_sha256: str) -> None:
    actual = _sha256_file(path)
    if actual != expected_sha256:
        raise RepackError(f"the repack's sha256 is {actual}, the scan recorded {expected_sha256}")


def _check_tree(root: Path, files: Sequence[UnpackedFile]) -> None:
    """Exactly the reported files, all regular: nothing extra for a stage to trip over."""
    found: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        for name in dirnames + filenames:
            mode = (base / name).lstat().st_mode
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                raise RepackError(f"{(base / name).relative_to(root)} is not a file or directory")
        found.update((base / name).relative_to(root).as_posix() for name in filenames)
    reported = {f.path for f in files}
    if found != reported:
        extra = sorted(found ^ reported)[:3]
        raise RepackError(f"the unpacked tree differs from intake's inventory: {extra}")


def _order(f: UnpackedFile) -> bytes:
    return f.path.encode()


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
