"""The one tree-sitter JavaScript language and parser of the process."""

from __future__ import annotations

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


def compile_query(text: str) -> Query:
    return Query(language(), text)


def parser_versions() -> dict[str, str]:
    return {
        "tree-sitter": version("tree-sitter"),
        "tree-sitter-javascript": version("tree-sitter-javascript"),
    }
