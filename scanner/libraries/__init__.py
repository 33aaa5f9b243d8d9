"""Known-library recognition: published npm files found inside a bundle by their hashes.

``chunks`` cuts code into content-defined chunks, ``index`` keeps the hashes of published
files (shipped in rules/libraries/, extended in <data_dir>/libraries/), ``matcher`` finds
copies and edits, ``npm`` builds the index from the registry, ``blanking`` lets the JS
analysis skip verified library code.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from scanner.config import Settings
from scanner.libraries.index import INDEX_NAME, LibraryIndex, load_indexes


def index_paths(settings: Settings) -> tuple[Path, Path]:
    """The shipped index, then the local one ``gatehouse libraries build`` writes."""
    return (
        settings.rules_dir / "libraries" / INDEX_NAME,
        settings.data_dir / "libraries" / INDEX_NAME,
    )


def library_index(settings: Settings) -> LibraryIndex:
    """Loaded once per process (and again when a file changes)."""
    paths = index_paths(settings)
    stamps = tuple((str(p), p.stat().st_mtime_ns if p.is_file() else 0) for p in paths)
    return _cached(stamps)


@lru_cache(maxsize=2)
def _cached(stamps: tuple[tuple[str, int], ...]) -> LibraryIndex:
    return load_indexes(Path(p) for p, _ in stamps)
