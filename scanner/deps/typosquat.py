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
class PopularNames:
    by_ecosystem: dict[str, frozenset[str]]

    def near(self, ecosystem: str, name: str) -> str | None:
        """The popular name this one imitates, or None."""
        popular = self.by_ecosystem.get(ecosystem, frozenset())
        norm = normalise_name(ecosystem, name)
        if norm in popular or len(norm) < MIN_LENGTH:
            return None
        folded = _fold(norm)
        for target in popular:
            if len(target) < MIN_LENGTH:
                continue
            if _fold(target) == folded or _one_edit(norm, target):
                return target
        return None


@lru_cache(maxsize=4)
def load_popular(path: Path) -> PopularNames:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return PopularNames(
        {
            NPM: frozenset(normalise_name(NPM, n) for n in data.get("npm", [])),
            PYPI: frozenset(normalise_name(PYPI, n) for n in data.get("pypi", [])),
        }
    )


def _fold(name: str) -> str:
    name = re.sub(r"^@[^/]+/", "", name)
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
