"""The one tree-sitter JavaScript language and parser of the process."""

from __future__ import annotations

import os
import threading
from functools import lru_cache
from importlib.metadata import version

import tree_sitter_javascript
from tree_sitter import Language, Parser, Query, Tree

_local = threading.local()


@lru_cache(maxsize=1)
def language() -> Language:
    return Language(tree_sitter_javascript.language())


def parse(source: bytes) -> Tree:
    # Parsers are not thread-safe; stages run side by side, so one per thread.
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = Parser(language())
    return parser.parse(source)


# A parse may grow the process by this much per byte of source, plus the slack, and never
# past the cap. Measured: minified code takes about 55 bytes per byte (990 MB for 18 MB);
# an 18 MB array literal of one-character strings took 128 (2.3 GB) and is refused.
PARSE_MEMORY_PER_BYTE = 100
PARSE_MEMORY_SLACK = 128 * 1024 * 1024
PARSE_MEMORY_CAP = 2 * 1024 * 1024 * 1024
UNGUARDED_BYTES = 1024 * 1024
_READ_CHUNK = 4096  # node.text reads through this too: small keeps it cheap
_CHECK_EVERY = 512  # progress callbacks between two looks at the process's memory
_PAGE = os.sysconf("SC_PAGE_SIZE")


class ParseBudgetError(RuntimeError):
    """The parse outgrew its memory budget and was stopped."""


def parse_bounded(source: bytes) -> Tree:
    """Parse, stopping (ParseBudgetError) when the tree outgrows its memory budget."""
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = Parser(language())
    if len(source) <= UNGUARDED_BYTES:
        # Even at the worst density measured this stays within the slack; and a tree
        # parsed from bytes reads node text directly (the guarded one, through ``read``).
        return parser.parse(source)
    start = _rss()
    calls = 0
    stopped = False

    def read(offset: int, _point: object) -> bytes:
        return source[offset : offset + _READ_CHUNK]

    def progress(offset: int, _has_error: bool) -> bool:
        nonlocal calls, stopped
        calls += 1
        if calls % _CHECK_EVERY:
            return False
        grown = _rss() - start
        limit = min(PARSE_MEMORY_CAP, PARSE_MEMORY_SLACK + PARSE_MEMORY_PER_BYTE * offset)
        stopped = grown > limit
        return stopped

    try:
        tree = parser.parse(read, progress_callback=progress)
    except ValueError:  # how tree-sitter reports a parse the callback cancelled
        tree = None
    if stopped or tree is None:
        parser.reset()
        raise ParseBudgetError("the syntax tree outgrew its memory budget")
    return tree


def _rss() -> int:
    """This process's resident memory now (the peak would hide what a parse adds)."""
    with open("/proc/self/statm", "rb") as fh:  # noqa: PTH123 - a hot path, no Path object
        return int(fh.read().split()[1]) * _PAGE


def compile_query(text: str) -> Query:
    return Query(language(), text)


def parser_versions() -> dict[str, str]:
    return {
        "tree-sitter": version("tree-sitter"),
        "tree-sitter-javascript": version("tree-sitter-javascript"),
    }
