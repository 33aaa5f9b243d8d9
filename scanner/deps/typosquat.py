"""Names one typo away from a popular package, or equal to it once confusables are folded."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from scanner.advisories.feeds import normalise_name
from scanner.advisories.versions import NPM, PYPI

MIN_LENGTH = 5  # shorter names are too often a typo apart by chance
_CONFUSABLES = (
    ("rn", "m"),
    ("vv", "w"),
    ("0", "o"),
    ("1", "l"),
    ("5", "s"),
    ("_", "-"),
    (".", "-"),
)


@dataclass(frozen=True)
class _Index:
    names: frozenset[str]
    folded: dict[str, str]  # confusables folded -> popular name
    deletes: dict[str, frozenset[str]]  # each name with one character removed -> names


class PopularNames:
    """Popular names per ecosystem, indexed so a lookup costs a few dict probes."""

    def __init__(self, by_ecosystem: dict[str, frozenset[str]]) -> None:
        self._index = {eco: _build(names) for eco, names in by_ecosystem.items()}

    def near(self, ecosystem: str, name: str) -> str | None:
        """The popular name this one imitates, or None."""
        index = self._index.get(ecosystem)
        norm = normalise_name(ecosystem, name)
        if index is None or norm in index.names or len(norm) < MIN_LENGTH:
            return None
        if (target := index.folded.get(_fold(norm))) is not None:
            return target
        # Names one edit apart share a one-deletion variant; confirm each candidate.
        candidates = set(index.deletes.get(norm, ()))
        for variant in _one_deletions(norm):
            candidates |= index.deletes.get(variant, frozenset())
            if variant in index.names:
                candidates.add(variant)
        return min((c for c in candidates if _one_edit(norm, c)), default=None)


def _build(names: frozenset[str]) -> _Index:
    long_names = {n for n in names if len(n) >= MIN_LENGTH}
    deletes: dict[str, set[str]] = {}
    for n in long_names:
        for variant in _one_deletions(n):
            deletes.setdefault(variant, set()).add(n)
    return _Index(
        names, {_fold(n): n for n in long_names}, {k: frozenset(v) for k, v in deletes.items()}
    )


def _one_deletions(name: str) -> set[str]:
    return {name[:i] + name[i + 1 :] for i in range(len(name))}


@lru_cache(maxsize=4)
def load_popular(path: Path) -> PopularNames:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return PopularNames(
        {
            NPM: frozenset(normalise_name(NPM, n) for n in data.get("npm", [])),
            PYPI: frozenset(normalise_name(PYPI, n) for n in data.get("pypi", [])),
        }
    )


_SCOPE_RE = re.compile(r"^@[^/]+/")


def _fold(name: str) -> str:
    name = _SCOPE_RE.sub("", name)
    for a, b in _CONFUSABLES:
        name = name.replace(a, b)
    return name


def _one_edit(a: str, b: str) -> bool:
    """Damerau-Levenshtein distance exactly 1 (insert, delete, substitute, swap)."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
        if len(diff) == 1:
            return True
        return (
            len(diff) == 2
            and diff[1] == diff[0] + 1
            and a[diff[0]] == b[diff[1]]
            and a[diff[1]] == b[diff[0]]
        )
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    i = 0
    while i < len(short) and short[i] == long_[i]:
        i += 1
    return short[i:] == long_[i + 1 :]
