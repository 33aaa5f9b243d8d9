"""Libraries copied into the bundle's own code, found with RetireJS detectors."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath

from scanner.advisories.feeds import RETIRE_ECOSYSTEM, Detector
from scanner.deps.components import Component
from scanner.workspace import Workspace

VERSION_TOKEN = "§§version§§"  # noqa: S105 - RetireJS's placeholder, not a secret
VERSION_PATTERN = r"[0-9][0-9.a-z_\-]+"
SCANNED_SUFFIXES = frozenset({".js", ".mjs", ".cjs", ".html", ".htm"})
_URL_RE = re.compile(rb"(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}[^\s'\"<>`)\\]*")
# A run of plain characters that every match of a pattern must contain.
_LITERAL_RE = re.compile(r"[A-Za-z0-9_@ -]{4,}")


@dataclass(frozen=True)
class _Pattern:
    library: str
    regex: re.Pattern[bytes]
    literal: bytes | None  # searched first: most libraries are absent from most files


@dataclass(frozen=True)
class VendoredHit:
    component: Component
    how: str  # filecontent | filename | hash | uri


@dataclass(frozen=True)
class BackdoorHit:
    library: str
    path: str
    url: str


class VendoredLibraries:
    """Compiled once per process from the detectors in the advisory database."""

    def __init__(self, detectors: Iterable[Detector]) -> None:
        self.content: list[_Pattern] = []
        self.filename: list[_Pattern] = []
        self.uri: list[_Pattern] = []
        self.backdoor: list[_Pattern] = []
        self.hashes: dict[str, tuple[str, str]] = {}
        self.skipped = 0  # JavaScript-only regex syntax that Python cannot compile
        for d in detectors:
            if d.kind == "hash" and d.version:
                self.hashes[d.pattern.lower()] = (d.library, d.version)
                continue
            compiled = self._compile(d)
            if compiled is not None:
                {
                    "filecontent": self.content,
                    "filename": self.filename,
                    "uri": self.uri,
                    "backdoor": self.backdoor,
                }.get(d.kind, []).append(compiled)

    def _compile(self, d: Detector) -> _Pattern | None:
        source = d.pattern.replace(VERSION_TOKEN, VERSION_PATTERN)
        try:
            regex = re.compile(source.encode())
        except re.error:
            self.skipped += 1
            return None
        return _Pattern(d.library, regex, _required_literal(d.pattern))

    def scan(self, workspace: Workspace) -> tuple[list[VendoredHit], list[BackdoorHit]]:
        hits: dict[tuple[str, str, str], VendoredHit] = {}
        backdoors: list[BackdoorHit] = []
        for f in workspace.files:
            if PurePosixPath(f.path).suffix.lower() not in SCANNED_SUFFIXES:
                continue
            data = workspace.read_bytes(f.path)
            found = list(self._identify(f.path, data))
            for library, version, how in found:
                comp = Component(RETIRE_ECOSYSTEM, library, version, f.path)
                hits.setdefault((library, version, f.path), VendoredHit(comp, how))
            for hit in self._backdoors(f.path, data):
                if hit not in backdoors:  # several patterns of one source may match one URL
                    backdoors.append(hit)
        return list(hits.values()), backdoors

    def _identify(self, path: str, data: bytes) -> Iterable[tuple[str, str, str]]:
        digest = hashlib.sha1(data, usedforsecurity=False).hexdigest()
        if digest in self.hashes:
            library, version = self.hashes[digest]
            yield library, version, "hash"
        name = PurePosixPath(path).name.encode()
        for p in self.filename:
            if (m := p.regex.search(name)) and m.groups():
                yield p.library, m.group(1).decode(), "filename"
        for p in self.content:
            if p.literal is not None and p.literal not in data:
                continue
            if (m := p.regex.search(data)) and m.groups() and m.group(1):
                yield p.library, m.group(1).decode("latin-1"), "filecontent"
        urls = _URL_RE.findall(data) if self.uri else []
        for url in urls:
            for p in self.uri:
                if (m := p.regex.search(url)) and m.groups() and m.group(1):
                    yield p.library, m.group(1).decode("latin-1"), "uri"

    def _backdoors(self, path: str, data: bytes) -> Iterable[BackdoorHit]:
        for raw in _URL_RE.findall(data):
            url = b"https:" + raw if raw.startswith(b"//") else raw
            for p in self.backdoor:
                if p.regex.search(url):
                    yield BackdoorHit(p.library, path, url.decode("latin-1"))


def _required_literal(pattern: str) -> bytes | None:
    """The longest plain run every match must contain, or None when unsure."""
    if "|" in pattern or re.search(r"\)(?:[?*]|\{0)", pattern):
        return None  # alternation or an optional group: no single run is required
    q = r"(?:[*+?]|\{[^}]*\})"
    plain = pattern.replace(VERSION_TOKEN, "\x00")
    plain = re.sub(r"\[[^\]]*\]" + q + "?", "\x00", plain)  # classes vary
    plain = re.sub(r"\\." + q + "?", "\x00", plain)  # escapes stand for several things
    plain = re.sub(r"." + q, "\x00", plain)  # a quantified character may be absent
    plain = re.sub(r"[()^$.]", "\x00", plain)
    runs = _LITERAL_RE.findall(plain)
    return max(runs, key=len).encode() if runs else None
