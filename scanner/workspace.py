"""The unpacked bundle as stages see it: a read-only tree and its file inventory."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath

from scanner.intake import BundleInfo, UnpackedFile
from scanner.manifest import ManifestLoad, load_manifest

TEXT_SNIFF_BYTES = 8192
JS_SUFFIXES = frozenset({".js", ".mjs", ".cjs"})


@dataclass
class Workspace:
    """An unpacked bundle. Stages read from it and never write to it."""

    root: Path
    files: tuple[UnpackedFile, ...]
    bundle: BundleInfo = field(default_factory=lambda: BundleInfo("", 0))

    @classmethod
    def from_directory(cls, root: Path, bundle: BundleInfo | None = None) -> Workspace:
        """Inventory an existing tree (for tests and tools; intake builds it directly)."""
        files = []
        for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
            data = path.read_bytes()
            rel = path.relative_to(root).as_posix()
            files.append(UnpackedFile(rel, len(data), hashlib.sha256(data).hexdigest()))
        return cls(root, tuple(files), bundle or BundleInfo("", 0))

    def subset(self, paths: Iterable[str]) -> Workspace:
        """The same bundle seen through some of its files (one shard of a per-file stage);
        the manifest stays the whole bundle's."""
        wanted = set(paths)
        part = Workspace(self.root, tuple(f for f in self.files if f.path in wanted), self.bundle)
        part.__dict__["manifest"] = self.manifest  # the cached property, shared
        return part

    def path_of(self, rel: str) -> Path:
        return self.root.joinpath(*PurePosixPath(rel).parts)

    def read_bytes(self, rel: str) -> bytes:
        return self.path_of(rel).read_bytes()

    def read_text(self, rel: str) -> str:
        return self.read_bytes(rel).decode("utf-8", errors="replace")

    def has(self, rel: str) -> bool:
        return rel in self.paths

    @cached_property
    def paths(self) -> frozenset[str]:
        return frozenset(f.path for f in self.files)

    def with_suffix(self, suffixes: Iterable[str]) -> Iterator[UnpackedFile]:
        wanted = {s.lower() for s in suffixes}
        return (f for f in self.files if PurePosixPath(f.path).suffix.lower() in wanted)

    def is_text(self, rel: str) -> bool:
        with self.path_of(rel).open("rb") as fh:
            head = fh.read(TEXT_SNIFF_BYTES)
        return b"\x00" not in head

    def javascript_files(self) -> list[UnpackedFile]:
        """JS by suffix, plus the declared entry whatever its suffix (the browser runs it)."""
        found = {f.path: f for f in self.with_suffix(JS_SUFFIXES)}
        manifest = self.manifest.manifest
        if manifest is not None and manifest.entry in self.paths:
            entry = next(f for f in self.files if f.path == manifest.entry)
            found.setdefault(entry.path, entry)
        return [found[p] for p in sorted(found)]

    @cached_property
    def manifest(self) -> ManifestLoad:
        return load_manifest(self.root, self.paths)
