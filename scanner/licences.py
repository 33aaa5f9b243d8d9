"""Licences: SPDX expressions parsed, and judged against the policy in rules/licences.toml.

An ``OR`` lets the licensee choose, so its best branch counts; an ``AND`` binds them all,
so its worst does; ``WITH`` an exception and ``+`` (or later) keep the licence's class.
"""

from __future__ import annotations

import enum
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_EXPRESSION = 500
_TOKEN = re.compile(r"\s*(\(|\)|[A-Za-z0-9.+:-]+)")
_ID = re.compile(r"(?:DocumentRef-[A-Za-z0-9.-]+:)?(?:LicenseRef-)?[A-Za-z0-9.-]+\+?")


class LicenceError(ValueError):
    """Not an SPDX licence expression."""


class Standing(enum.IntEnum):
    """Ordered from best to worst, so ``min`` chooses and ``max`` binds."""

    ALLOWED = 0
    COPYLEFT = 1
    UNKNOWN = 2
    DENIED = 3


@dataclass(frozen=True)
class LicencePolicy:
    allowed: frozenset[str]
    copyleft: frozenset[str]
    denied: frozenset[str]
    # Markers of a licence that is not open source (npm's UNLICENSED and friends).
    proprietary: frozenset[str]

    @classmethod
    def load(cls, path: Path) -> LicencePolicy:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise LicenceError(f"cannot read licence policy {path}: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LicencePolicy:
        def ids(key: str) -> frozenset[str]:
            return frozenset(str(x).upper() for x in data.get(key, ()))

        policy = cls(ids("allow"), ids("copyleft"), ids("deny"), ids("proprietary"))
        overlap = (policy.allowed & policy.denied) | (policy.allowed & policy.copyleft)
        if overlap:
            raise LicenceError(f"licences in two lists: {sorted(overlap)}")
        return policy

    def standing(self, licence_id: str) -> Standing:
        key = licence_id.upper().removesuffix("+")
        if key in self.denied:
            return Standing.DENIED
        if key in self.copyleft:
            return Standing.COPYLEFT
        if key in self.allowed:
            return Standing.ALLOWED
        return Standing.UNKNOWN

    def is_proprietary(self, text: str) -> bool:
        upper = text.strip().upper()
        return upper in self.proprietary or upper.startswith("SEE LICENSE IN")


@dataclass(frozen=True)
class Judgement:
    standing: Standing
    ids: tuple[str, ...]  # the licences the standing rests on

    def describe(self) -> str:
        return " AND ".join(self.ids) if self.ids else "none"


Node = tuple[str, Any]  # ("id", name) | ("and"|"or", [nodes]) | ("with", (node, exception))


def parse(expression: str) -> Node:
    """An SPDX licence expression as a tree; operators in any case, as npm data has them."""
    if not expression.strip() or len(expression) > MAX_EXPRESSION:
        raise LicenceError("empty or overlong licence expression")
    tokens, pos = [], 0
    text = expression.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise LicenceError(f"unexpected {text[pos : pos + 10]!r} in {expression!r}")
        tokens.append(m.group(1))
        pos = m.end()
    parser = _Parser(tokens, expression)
    node = parser.expr(0)
    if parser.pos != len(tokens):
        raise LicenceError(f"unexpected {tokens[parser.pos]!r} in {expression!r}")
    return node


class _Parser:
    def __init__(self, tokens: list[str], text: str) -> None:
        self.tokens, self.text, self.pos = tokens, text, 0

    def _peek(self) -> str | None:
        return self.tokens[self.pos].upper() if self.pos < len(self.tokens) else None

    def expr(self, depth: int) -> Node:
        if depth > 20:
            raise LicenceError("licence expression nested too deep")
        parts = [self.conj(depth)]
        while self._peek() == "OR":
            self.pos += 1
            parts.append(self.conj(depth))
        return parts[0] if len(parts) == 1 else ("or", parts)

    def conj(self, depth: int) -> Node:
        parts = [self.term(depth)]
        while self._peek() == "AND":
            self.pos += 1
            parts.append(self.term(depth))
        return parts[0] if len(parts) == 1 else ("and", parts)

    def term(self, depth: int) -> Node:
        tok = self._peek()
        if tok is None:
            raise LicenceError(f"{self.text!r} ends early")
        if tok == "(":
            self.pos += 1
            node = self.expr(depth + 1)
            if self._peek() != ")":
                raise LicenceError(f"unbalanced parentheses in {self.text!r}")
            self.pos += 1
        elif tok in ("AND", "OR", "WITH", ")") or not _ID.fullmatch(self.tokens[self.pos]):
            raise LicenceError(f"expected a licence at {self.tokens[self.pos]!r} in {self.text!r}")
        else:
            node = ("id", self.tokens[self.pos])
            self.pos += 1
        if self._peek() == "WITH":
            self.pos += 1
            if self._peek() is None or not _ID.fullmatch(self.tokens[self.pos]):
                raise LicenceError(f"WITH needs an exception in {self.text!r}")
            node = ("with", (node, self.tokens[self.pos]))
            self.pos += 1
        return node


def judge(node: Node, policy: LicencePolicy) -> Judgement:
    kind, value = node
    if kind == "id":
        return Judgement(policy.standing(value), (value,))
    if kind == "with":
        return judge(value[0], policy)
    parts = [judge(n, policy) for n in value]
    if kind == "or":
        best = min(parts, key=lambda j: j.standing)
        return best
    worst = max(p.standing for p in parts)
    return Judgement(worst, tuple(i for p in parts if p.standing == worst for i in p.ids))


def judge_text(text: str, policy: LicencePolicy) -> Judgement:
    """Judge a licence string; raises LicenceError when it is not an expression."""
    return judge(parse(text), policy)
