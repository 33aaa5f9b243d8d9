"""The index shipped as package data, and the `gatehouse libraries` command."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from scanner.config import Settings
from scanner.libraries import index_paths, library_index
from scanner.libraries.index import INDEX_NAME, LibraryIndex
from service.cli import main
from tests.paths import PROJECT_ROOT
from tests.scanner.libraries.conftest import make_index, synthetic_library

SHIPPED = PROJECT_ROOT / "rules" / "libraries" / INDEX_NAME


def test_the_shipped_index_covers_popular_libraries_and_stays_small() -> None:
    index = LibraryIndex.load(SHIPPED)
    packages = index.packages()
    assert len(index) >= 300 and len(packages) >= 80
    assert SHIPPED.stat().st_size < 2 * 1024 * 1024
    assert all(f.chunks and f.versions for f in index)


def test_a_local_index_extends_the_shipped_one(tmp_path: Path) -> None:
    settings = replace(Settings(), data_dir=tmp_path, rules_dir=PROJECT_ROOT / "rules")
    local = index_paths(settings)[1]
    local.parent.mkdir(parents=True)
    make_index(("tinylib", "1.2.3", "t.js", synthetic_library(), "MIT")).save(local)
    merged = library_index(settings)
    assert "tinylib" in merged.packages()
    assert len(merged.packages()) == len(LibraryIndex.load(SHIPPED).packages()) + 1


def test_libraries_status_prints_both_indexes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GATEHOUSE_DATA_DIR", str(tmp_path))
    assert main(["libraries", "status"]) == 0
    out = capsys.readouterr().out
    assert "shipped:" in out and "packages" in out
    assert f"local: {tmp_path / 'libraries' / INDEX_NAME} (none)" in out
