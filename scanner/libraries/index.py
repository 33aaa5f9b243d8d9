"""The offline index of published library files: hashes and facts, never their code.

One entry per distinct published file: package name, the versions that ship these exact
bytes, its path in the package, its licence, its sha256, its chunks (hash and length,
``chunks.py``), where its version string sits, and digests of its first and last bytes
(which let the matcher find the file's edges after an edit there). Stored as LZMA-packed
JSON: consecutive versions share most chunks and LZMA's long window folds them up.
"""

from __future__ import annotations

import base64
import hashlib
import json
import lzma
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from scanner.libraries.chunks import CHUNKER, chunk, digest

SCHEMA = 1
INDEX_NAME = "npm-index.json.xz"
# The bytes at each end of a file whose digests are kept, to find its edges after an edit.
EDGE_BYTES = 16
MAX_VERSION_MARKS = 16
_CHUNK = struct.Struct("<8sI")
# A bundler often drops the source map comment; the index keeps the code without it.
_MAP_COMMENTS = (b"//# sourceMappingURL=", b"//@ sourceMappingURL=", b"/*# sourceMappingURL=")


class LibraryIndexError(ValueError):
    """The index file is malformed or made by another chunker."""


def canonical(data: bytes) -> bytes:
    """The published bytes as the index keeps them: without a trailing source map comment
    and trailing whitespace (both of which bundlers drop)."""
    body = data.rstrip()
    last = body.rfind(b"\n") + 1
    if body[last:].lstrip().startswith(_MAP_COMMENTS):
        body = body[:last].rstrip()
    return body


@dataclass(frozen=True)
class LibraryFile:
    """One published file (the same bytes may ship in several versions)."""

    name: str
    versions: tuple[str, ...]
    path: str
    licence: str | None
    sha256: str
    chunks: tuple[tuple[bytes, int], ...]  # (digest, length), in order
    version_marks: tuple[int, ...] = ()  # offsets of the version string in the file
    head: bytes = b""  # digest of the first EDGE_BYTES
    tail: bytes = b""  # digest of the last EDGE_BYTES

    @property
    def size(self) -> int:
        return sum(n for _, n in self.chunks)

    @property
    def label(self) -> str:
        return f"{self.name}@{'/'.join(self.versions)}"

    def offsets(self) -> list[int]:
        out, pos = [], 0
        for _, n in self.chunks:
            out.append(pos)
            pos += n
        return out

    def to_dict(self) -> dict[str, Any]:
        packed = b"".join(_CHUNK.pack(d, n) for d, n in self.chunks)
        return {
            "name": self.name,
            "versions": list(self.versions),
            "path": self.path,
            "licence": self.licence,
            "sha256": self.sha256,
            "chunks": base64.b64encode(packed).decode(),
            "version_marks": list(self.version_marks),
            "head": self.head.hex(),
            "tail": self.tail.hex(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LibraryFile:
        raw = base64.b64decode(d["chunks"])
        if len(raw) % _CHUNK.size:
            raise LibraryIndexError(f"{d.get('name')}: chunk table of {len(raw)} bytes")
        return cls(
            name=str(d["name"]),
            versions=tuple(str(v) for v in d["versions"]),
            path=str(d["path"]),
            licence=d.get("licence"),
            sha256=str(d["sha256"]),
            chunks=tuple(_CHUNK.iter_unpack(raw)),
            version_marks=tuple(int(x) for x in d.get("version_marks", ())),
            head=bytes.fromhex(d.get("head", "")),
            tail=bytes.fromhex(d.get("tail", "")),
        )


def describe_file(
    name: str, version: str, path: str, licence: str | None, data: bytes
) -> LibraryFile:
    """The index entry of one published file (its code is not kept)."""
    body = canonical(data)
    marks: list[int] = []
    needle = version.encode()
    pos = body.find(needle)
    while pos != -1 and len(marks) < MAX_VERSION_MARKS:
        marks.append(pos)
        pos = body.find(needle, pos + 1)
    return LibraryFile(
        name=name,
        versions=(version,),
        path=path,
        licence=licence,
        sha256=hashlib.sha256(body).hexdigest(),
        chunks=tuple((c.digest, c.length) for c in chunk(body)),
        version_marks=tuple(marks),
        head=digest(body[:EDGE_BYTES]),
        tail=digest(body[-EDGE_BYTES:]),
    )


@dataclass
class LibraryIndex:
    """The entries and a digest -> (entry, chunk) map for lookups."""

    files: list[LibraryFile] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # digest -> entry << 20 | chunk for a digest met once; digests met more often
        # (chunks shared by releases) keep every place in ``_multi``. Built on first use:
        # one int per chunk keeps the build near 0.1 s for the shipped index.
        self._refs: dict[bytes, int] | None = None
        self._multi: dict[bytes, list[int]] = {}
        self._where = {(f.name, f.path, f.sha256): i for i, f in enumerate(self.files)}

    def refs(self, d: bytes) -> Sequence[tuple[int, int]]:
        if self._refs is None:
            self._build_refs()
        assert self._refs is not None
        if d in self._multi:
            return [(code >> 20, code & 0xFFFFF) for code in self._multi[d]]
        code = self._refs.get(d)
        return () if code is None else ((code >> 20, code & 0xFFFFF),)

    def _build_refs(self) -> None:
        refs: dict[bytes, int] = {}
        multi: dict[bytes, list[int]] = {}
        for i, f in enumerate(self.files):
            base = i << 20
            for k, (h, _) in enumerate(f.chunks):
                code = base | k
                first = refs.setdefault(h, code)
                if first != code:
                    multi.setdefault(h, [first]).append(code)
        self._refs, self._multi = refs, multi

    def add(self, entry: LibraryFile) -> None:
        """Add a file; the same bytes at the same path in another version join its entry."""
        key = (entry.name, entry.path, entry.sha256)
        if (i := self._where.get(key)) is not None:
            f = self.files[i]
            versions = tuple(dict.fromkeys((*f.versions, *entry.versions)))
            self.files[i] = replace(f, versions=versions)
            return
        if len(entry.chunks) >= 1 << 20:
            raise LibraryIndexError(f"{entry.name} {entry.path}: too many chunks")
        self._where[key] = len(self.files)
        self.files.append(entry)
        self._refs = None

    def merge(self, other: LibraryIndex) -> None:
        for f in other.files:
            self.add(f)

    def packages(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for f in self.files:
            out.setdefault(f.name, set()).update(f.versions)
        return out

    def licences(self) -> dict[tuple[str, str], str | None]:
        return {(f.name, v): f.licence for f in self.files for v in f.versions}

    def __iter__(self) -> Iterator[LibraryFile]:
        return iter(self.files)

    def __len__(self) -> int:
        return len(self.files)

    def dumps(self) -> bytes:
        doc = {
            "schema": SCHEMA,
            "chunker": CHUNKER,
            "meta": self.meta,
            "files": [f.to_dict() for f in sorted(self.files, key=_order)],
        }
        text = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
        return lzma.compress(text, preset=9 | lzma.PRESET_EXTREME)

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(self.dumps())
        tmp.replace(path)

    @classmethod
    def loads(cls, data: bytes) -> LibraryIndex:
        try:
            doc = json.loads(lzma.decompress(data))
        except (lzma.LZMAError, ValueError) as exc:
            raise LibraryIndexError(f"unreadable library index: {exc}") from None
        if doc.get("schema") != SCHEMA or doc.get("chunker") != CHUNKER:
            raise LibraryIndexError(
                f"library index of schema {doc.get('schema')} / chunker {doc.get('chunker')}"
                f" (this version reads {SCHEMA} / {CHUNKER}): rebuild it"
            )
        try:
            files = [LibraryFile.from_dict(d) for d in doc["files"]]
        except (KeyError, TypeError, ValueError, struct.error) as exc:
            raise LibraryIndexError(f"malformed library index: {exc}") from None
        return cls(files, dict(doc.get("meta", {})))

    @classmethod
    def load(cls, path: Path) -> LibraryIndex:
        return cls.loads(path.read_bytes())


def _order(f: LibraryFile) -> tuple[str, str, tuple[str, ...]]:
    return (f.name, f.path, f.versions)


def load_indexes(paths: Iterable[Path]) -> LibraryIndex:
    """The shipped index extended by local ones; a missing file is no entries."""
    out = LibraryIndex()
    for path in paths:
        if path.is_file():
            part = LibraryIndex.load(path)
            if not len(out):
                out = LibraryIndex(part.files, {})
            else:
                out.merge(part)
            out.meta.setdefault("sources", []).append({"path": str(path), **part.meta})
    return out
