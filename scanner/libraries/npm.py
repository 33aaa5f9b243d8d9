"""Build or extend the library index from the npm registry (``gatehouse libraries build``).

For each package: its last few stable releases, each tarball checked against the
registry's integrity hash, and from it the files a browser loads (the ``unpkg``,
``jsdelivr`` and ``browser`` entries, then minified builds under dist-like folders).
Only hashes and facts are kept (``index.py``); the tarballs are read in memory.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import re
import tarfile
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Protocol

from scanner.libraries.index import LibraryFile, LibraryIndex, describe_file

log = logging.getLogger(__name__)

REGISTRY = "https://registry.npmjs.org"
MAX_TARBALL_BYTES = 40 * 1024 * 1024
MIN_FILE_BYTES = 1024
MAX_FILE_BYTES = 4 * 1024 * 1024
FILES_PER_VERSION = 4
BROWSER_DIRS = frozenset({"dist", "umd", "build", "bundles", "browser", "min", "cdn", "js"})
_STABLE = re.compile(r"\d+\.\d+\.\d+")
_SKIP_PARTS = frozenset({"test", "tests", "__tests__", "node_modules", "examples", "docs", "src"})


class RegistryError(RuntimeError):
    """The registry could not be reached or answered something unusable."""


class Registry(Protocol):
    def packument(self, name: str) -> dict[str, Any]: ...

    def tarball(self, url: str) -> bytes: ...


@dataclass
class HttpRegistry:
    """The public npm registry over HTTPS."""

    base: str = REGISTRY
    timeout: float = 60.0

    def _get(self, url: str, limit: int) -> bytes:
        if not url.startswith("https://"):
            raise RegistryError(f"refusing a non-https URL: {url}")
        # https only (checked above): never file:// or another scheme.
        req = urllib.request.Request(url, headers={"User-Agent": "gatehouse-libraries"})  # noqa: S310
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
                data: bytes = resp.read(limit + 1)
        except OSError as exc:
            raise RegistryError(f"{url}: {exc}") from None
        if len(data) > limit:
            raise RegistryError(f"{url}: larger than {limit} bytes")
        return data

    def packument(self, name: str) -> dict[str, Any]:
        quoted = urllib.parse.quote(name, safe="@")
        doc = json.loads(self._get(f"{self.base}/{quoted}", 64 * 1024 * 1024))
        if not isinstance(doc, dict):
            raise RegistryError(f"{name}: the registry's answer is not an object")
        return doc

    def tarball(self, url: str) -> bytes:
        return self._get(url, MAX_TARBALL_BYTES)


def split_spec(spec: str) -> tuple[str, str | None]:
    """``name`` or ``name@version`` (scoped names start with their own "@")."""
    at = spec.rfind("@")
    if at > 0:
        return spec[:at], spec[at + 1 :]
    return spec, None


def recent_versions(packument: dict[str, Any], count: int, majors: int = 2) -> list[str]:
    """The ``count`` highest stable versions, and the last release of each of the
    ``majors`` major lines below them (where many sites still are).

    By version, not by publication time: the registry's times are rewritten by
    republications and backports, which would pick a 0.x from years ago as "recent"."""
    versions = [v for v in packument.get("versions", {}) if _STABLE.fullmatch(v)]
    versions.sort(key=_key, reverse=True)
    picked = versions[:count]
    newest = {_major(v) for v in picked}
    lines: dict[int, str] = {}
    for v in versions:  # highest first: the first of each major line is its last release
        lines.setdefault(_major(v), v)
    older = [m for m in sorted(lines, reverse=True) if m not in newest][:majors]
    return picked + [lines[m] for m in older]


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in version.split("."))


def _major(version: str) -> int:
    return _key(version)[0]


def licence_of(meta: dict[str, Any]) -> str | None:
    """The package.json ``license`` (or the legacy ``licenses`` list) as one expression."""
    lic = meta.get("license")
    if isinstance(lic, dict):
        lic = lic.get("type")
    if isinstance(lic, str) and lic.strip():
        return lic.strip()
    old = meta.get("licenses")
    if isinstance(old, list):
        raw = [x.get("type") if isinstance(x, dict) else x for x in old]
        names = [n for n in raw if isinstance(n, str) and n]
        if names:
            return " OR ".join(names) if len(names) > 1 else names[0]
    return None


def browser_files(meta: dict[str, Any], members: dict[str, int]) -> list[str]:
    """Which files of a package a page would load, most likely first, at most a few."""
    named: list[str] = []
    for key in ("unpkg", "jsdelivr", "browser", "main"):
        value = meta.get(key)
        if isinstance(value, str):
            path = str(PurePosixPath(value.removeprefix("./")))
            for candidate in (path, f"{path}.js"):
                if candidate in members and candidate not in named:
                    named.append(candidate)
    others = [p for p in members if p not in named and _looks_browser(p)]
    others.sort(key=lambda p: (not p.endswith(".min.js"), -members[p], p))
    picked = [p for p in named if MIN_FILE_BYTES <= members[p] <= MAX_FILE_BYTES]
    for p in others:
        if len(picked) >= FILES_PER_VERSION:
            break
        picked.append(p)
    return picked[:FILES_PER_VERSION]


def _looks_browser(path: str) -> bool:
    parts = PurePosixPath(path).parts
    if len(parts) == 1:
        return path.endswith(".min.js")  # lodash.min.js, underscore-min... at the top
    return (
        path.endswith(".js")
        and not path.endswith((".d.ts", ".test.js", ".spec.js"))
        and parts[0] in BROWSER_DIRS
        and not _SKIP_PARTS.intersection(parts)
        and (path.endswith(".min.js") or len(parts) == 2)
    )


def read_tarball(data: bytes, integrity: str | None) -> dict[str, bytes]:
    """The regular files of an npm tarball (``package/`` stripped), checked first."""
    if integrity and integrity.startswith("sha512-"):
        want = base64.b64decode(integrity.removeprefix("sha512-"))
        if hashlib.sha512(data).digest() != want:
            raise RegistryError("tarball does not match the registry's integrity hash")
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar:
            if not member.isreg() or member.size > MAX_FILE_BYTES:
                continue
            path = member.name.split("/", 1)[-1] if "/" in member.name else member.name
            if not path.endswith(".js") and path != "package.json":
                continue
            fh = tar.extractfile(member)
            if fh is not None:
                files[path] = fh.read()
    return files


def index_version(
    registry: Registry, name: str, version: str, meta: dict[str, Any]
) -> list[LibraryFile]:
    dist = meta.get("dist", {})
    files = read_tarball(registry.tarball(dist["tarball"]), dist.get("integrity"))
    members = {p: len(b) for p, b in files.items() if p.endswith(".js")}
    licence = licence_of(meta)
    return [
        describe_file(name, version, path, licence, files[path])
        for path in browser_files(meta, members)
    ]


def build_index(
    registry: Registry,
    packages: Iterable[str],
    versions: int = 3,
    into: LibraryIndex | None = None,
    workers: int = 6,
    progress: Callable[[str], None] = lambda _: None,
) -> tuple[LibraryIndex, list[str]]:
    """Index the recent releases of ``packages``; returns the index and what failed."""
    index = into if into is not None else LibraryIndex()
    failures: list[str] = []

    def one(spec: str) -> list[LibraryFile]:
        name, pinned = split_spec(spec)
        doc = registry.packument(name)
        out: list[LibraryFile] = []
        wanted = [pinned] if pinned else recent_versions(doc, versions)
        for version in wanted:
            if version not in doc.get("versions", {}):
                raise RegistryError(f"{name} has no version {version}")
            meta = doc["versions"][version]
            if int(meta.get("dist", {}).get("unpackedSize") or 0) > 8 * MAX_TARBALL_BYTES:
                continue
            out.extend(index_version(registry, name, version, meta))
        return out

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {name: pool.submit(one, name) for name in dict.fromkeys(packages)}
        for name, future in futures.items():
            try:
                entries = future.result()
            except (RegistryError, KeyError, ValueError, tarfile.TarError, OSError) as exc:
                failures.append(f"{name}: {exc}")
                progress(f"{name}: failed ({exc})")
                continue
            for entry in entries:
                index.add(entry)
            progress(f"{name}: {len(entries)} files")
    return index, failures
