"""Libraries copied into the bundle's own code, found with RetireJS detectors."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import PurePosixPath

from scanner.advisories.feeds import (
    RETIRE_ECOSYSTEM,
    VERSION_PATTERN,
    VERSION_TOKEN,
    Detector,
    detector_regex,
)
from scanner.deps.components import Component
from scanner.regex import Match, Regex, RegexRefusedError, compile_linear
from scanner.workspace import Workspace

__all__ = ["VERSION_PATTERN", "VERSION_TOKEN", "VendoredLibraries"]
SCANNED_SUFFIXES = frozenset({".js", ".mjs", ".cjs", ".html", ".htm"})
# Starts with the literal "//" so RE2 searches for it; the caller puts the scheme back.
_URL_RE = compile_linear(rb"//[A-Za-z0-9.-]+\.[A-Za-z]{2,}[^\s'\"<>`)\\]*", rule="vendored:url")
WINDOW = 2048
MAX_WINDOWS = 32
# A run of plain characters that every match of a pattern must contain.
_LITERAL_RE = re.compile(r"[A-Za-z0-9_@ -]{4,}")


@dataclass(frozen=True)
class _Pattern:
    detector: Detector
    literal: bytes | None  # searched first: most libraries are absent from most files

    @property
    def library(self) -> str:
        return self.detector.library

    @cached_property
    def compiled(self) -> Regex[bytes] | RegexRefusedError:
        """Compiled on first need: most of the 300+ patterns never are."""
        try:
            return detector_regex(self.detector)
        except RegexRefusedError as exc:
            return exc  # reported where its library's text is met (``unusable_in``)

    @property
    def regex(self) -> Regex[bytes] | None:
        return self.compiled if isinstance(self.compiled, Regex) else None

    def unusable_in(self, data: bytes) -> str | None:
        """Why this pattern could not look at ``data`` that may hold its library, or None."""
        # The literal first: asking for ``compiled`` compiles, and on a cold scan compiling
        # all 300+ patterns to look at a file that holds none of their libraries was 0.5 s.
        if self.literal is not None and self.literal not in data:
            return None
        if isinstance(self.compiled, Regex):
            return None
        return str(self.compiled)

    def search(self, data: bytes) -> Match[bytes] | None:
        """Search only near the literal: a match must contain it (a regex scan of a 1 MB
        file costs milliseconds per pattern; a window around each occurrence, microseconds)."""
        if self.regex is None:
            return None
        if self.literal is None or len(data) < 4 * WINDOW:
            return (
                None
                if self.literal is not None and self.literal not in data
                else self.regex.search(data)
            )
        pos = data.find(self.literal)
        for _ in range(MAX_WINDOWS):
            if pos < 0:
                return None
            if m := self.regex.search(data, max(0, pos - WINDOW), pos + len(self.literal) + WINDOW):
                return m
            pos = data.find(self.literal, pos + 1)
        return self.regex.search(data)  # a literal this common: one full scan


@dataclass(frozen=True)
class VendoredHit:
    component: Component
    how: str  # filecontent | filename | hash | uri


@dataclass(frozen=True)
class DetectorGap:
    """A file that may hold ``library``, which a detector RE2 cannot run did not check."""

    library: str
    path: str
    reason: str


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

    def _compile(self, d: Detector) -> _Pattern:
        return _Pattern(d, _required_literal(d.pattern))

    def scan(self, workspace: Workspace) -> tuple[list[VendoredHit], list[BackdoorHit]]:
        hits, backdoors, _ = self.scan_with_gaps(workspace)
        return hits, backdoors

    def scan_with_gaps(
        self, workspace: Workspace
    ) -> tuple[list[VendoredHit], list[BackdoorHit], list[DetectorGap]]:
        hits: dict[tuple[str, str, str], VendoredHit] = {}
        backdoors: list[BackdoorHit] = []
        gaps: list[DetectorGap] = []
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
            gaps.extend(self._gaps(f.path, data, {lib for lib, _, _ in found}))
        return list(hits.values()), backdoors, gaps

    def _gaps(self, path: str, data: bytes, identified: set[str]) -> Iterable[DetectorGap]:
        """Unusable content patterns whose library text is here and was not identified."""
        seen = set()
        lowered: bytes | None = None
        for p in self.content:
            if p.library in identified or p.library in seen:
                continue
            if (reason := p.unusable_in(data)) is not None:
                # A pattern's longest literal can be a common word ("prototype" for
                # jQuery): without the library's name in the file it is no sign of it.
                lowered = data.lower() if lowered is None else lowered
                if _name_token(p.library) not in lowered:
                    continue
                seen.add(p.library)
                yield DetectorGap(p.library, path, reason)

    def identify(self, path: str, data: bytes) -> list[tuple[str, str, str]]:
        """(library, version, how) for each library the detectors find in ``data``."""
        return list(self._identify(path, data))

    def _identify(self, path: str, data: bytes) -> Iterable[tuple[str, str, str]]:
        digest = hashlib.sha1(data, usedforsecurity=False).hexdigest()
        if digest in self.hashes:
            library, version = self.hashes[digest]
            yield library, version, "hash"
        name = PurePosixPath(path).name.encode()
        for p in self.filename:
            if (m := p.search(name)) and m.groups():
                yield p.library, m.group(1).decode(), "filename"
        for p in self.content:
            if (m := p.search(data)) and m.groups() and m.group(1):
                yield p.library, m.group(1).decode("latin-1"), "filecontent"
        urls = _URL_RE.findall(data) if self.uri else []
        for url in urls:
            for p in self.uri:
                if (m := p.search(url)) and m.groups() and m.group(1):
                    yield p.library, m.group(1).decode("latin-1"), "uri"

    def _backdoors(self, path: str, data: bytes) -> Iterable[BackdoorHit]:
        for raw in _URL_RE.findall(data):
            url = b"https:" + raw
            for p in self.backdoor:
                if p.search(url):
                    yield BackdoorHit(p.library, path, url.decode("latin-1"))


_QUANTIFIER = r"(?:[*+?]|\{[^}]*\})"
_INNER_GROUP = re.compile(r"\(([^()]*)\)(" + _QUANTIFIER + ")?")


def _name_token(library: str) -> bytes:
    """``jquery-ui-dialog`` -> ``jquery``: the part of a library's name its code mentions."""
    return re.split(r"[-_.]", library.lower().removesuffix(".js"))[0].encode()


def _required_literal(pattern: str) -> bytes | None:
    """The longest plain run every match must contain, or None when unsure."""
    p = pattern.replace(VERSION_TOKEN, "\x00")
    p = re.sub(r"\\.", "\x00", p)  # an escape stands for one of several characters
    p = re.sub(r"\[[^\]]*\]", "\x00", p)  # so does a class
    while "(" in p:  # innermost groups first
        m = _INNER_GROUP.search(p)
        if m is None:
            return None  # unbalanced: unsure
        body, quant = m.group(1), m.group(2) or ""
        optional = quant[:1] in ("?", "*") or quant.startswith("{0")
        lookaround = body.startswith(("?=", "?!", "?<"))
        kept = "\x00" if "|" in body or optional or lookaround else body.removeprefix("?:")
        p = p[: m.start()] + kept + p[m.end() :]
    if "|" in p:
        return None  # top-level alternation: no run is required
    p = re.sub(r"." + _QUANTIFIER, "\x00", p)  # a quantified character may be absent
    p = re.sub(r"[\^$.]", "\x00", p)
    runs = _LITERAL_RE.findall(p)
    return max(runs, key=len).encode() if runs else None
