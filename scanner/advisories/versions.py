"""Version order per ecosystem and OSV's affected-range semantics."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial, total_ordering
from typing import Any

from packaging.version import InvalidVersion, Version

PYPI = "PyPI"
NPM = "npm"

_SEMVER_RE = re.compile(
    r"^\s*v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:\.(\d+))?"  # a 4th number appears in old RetireJS data
    r"(?:-?([0-9A-Za-z.-]+?))?(?:\+([0-9A-Za-z.-]+))?\s*$"
)


class VersionError(ValueError):
    """A version string that the ecosystem's rules cannot order."""


@total_ordering
@dataclass(frozen=True)
class NpmVersion:
    """npm's semver order; lenient about the `1.9.0b1` forms found in RetireJS data."""

    release: tuple[int, int, int, int]
    prerelease: tuple[int | str, ...]

    @classmethod
    def parse(cls, text: str) -> NpmVersion:
        if text.endswith("-*"):
            # RetireJS writes "1.3.0-*" for "1.3.0 and its pre-releases": the lowest
            # version of that release is its first possible pre-release, 1.3.0-0.
            text = text[:-1] + "0"
        m = _SEMVER_RE.fullmatch(text)
        if m is None:
            raise VersionError(f"not a semantic version: {text!r}")
        numbers = tuple(int(g) if g else 0 for g in m.groups()[:4])
        pre = m.group(5)
        parts: tuple[int | str, ...] = ()
        if pre:
            # Identifiers are separated by dots only: "rc-1" is one identifier, not two.
            parts = tuple(int(p) if p.isdigit() else p for p in pre.split(".") if p)
        return cls((numbers[0], numbers[1], numbers[2], numbers[3]), parts)

    def _key(self) -> tuple[Any, ...]:
        # A release sorts after its prereleases; numeric identifiers before alphanumeric ones.
        pre = tuple((0, p, "") if isinstance(p, int) else (1, 0, p) for p in self.prerelease)
        return (self.release, 0 if self.prerelease else 1, pre)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, NpmVersion):
            return NotImplemented
        return self._key() < other._key()


def parse_version(ecosystem: str, text: str) -> Version | NpmVersion:
    if ecosystem == PYPI:
        try:
            return Version(text)
        except InvalidVersion:
            raise VersionError(f"not a PEP 440 version: {text!r}") from None
    return NpmVersion.parse(text)


@dataclass(frozen=True)
class AffectedRange:
    """One OSV range: events of introduced / fixed / last_affected / limit."""

    events: tuple[tuple[str, str], ...]


def is_affected(
    ecosystem: str,
    version: str,
    ranges: Sequence[AffectedRange],
    versions: Sequence[str] = (),
) -> bool:
    """OSV's evaluation: listed explicitly, or inside any range of the ecosystem's order."""
    if version in versions:
        return True
    parse: Callable[[str], Any] = partial(parse_version, ecosystem)
    installed = parse(version)  # VersionError: the caller reports it as a coverage gap
    return any(_in_range(installed, r, parse) for r in ranges)


def _in_range(installed: Any, rng: AffectedRange, parse: Callable[[str], Any]) -> bool:
    events = []
    for kind, raw in rng.events:
        if kind == "introduced" and raw == "0":
            events.append((None, 0, kind))
            continue
        try:
            events.append((parse(raw), _ORDER[kind], kind))
        except VersionError:
            continue  # an unparseable bound cannot be ordered; the versions list still applies
    # Sort by version; at equal versions an introduction comes before its fix.
    events.sort(key=lambda e: (e[0] is not None, e[0] if e[0] is not None else 0, e[1]))
    affected = False
    for bound, _, kind in events:
        if kind == "introduced":
            if bound is None or installed >= bound:
                affected = True
        elif kind in ("fixed", "limit"):
            if installed >= bound:
                affected = False
        elif kind == "last_affected" and installed > bound:
            affected = False
    return affected


_ORDER = {"introduced": 0, "last_affected": 1, "fixed": 2, "limit": 3}


def unreadable_bounds(ecosystem: str, rng: AffectedRange) -> list[str]:
    """The bounds of ``rng`` that the ecosystem's order cannot place."""
    bad = []
    for kind, raw in rng.events:
        if kind == "introduced" and raw == "0":
            continue
        try:
            parse_version(ecosystem, raw)
        except VersionError:
            bad.append(f"{kind} {raw!r}")
    return bad


def fixed_versions(ranges: Sequence[AffectedRange]) -> list[str]:
    return sorted({raw for r in ranges for kind, raw in r.events if kind == "fixed"})
