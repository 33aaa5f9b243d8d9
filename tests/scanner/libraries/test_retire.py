"""The RetireJS second opinion on modified copies (a detector made in the test)."""

from __future__ import annotations

import pytest

from scanner.advisories.feeds import VERSION_TOKEN, Detector
from scanner.deps.vendored import VendoredLibraries
from scanner.libraries.index import LibraryIndex, canonical
from scanner.libraries.matcher import CopyKind, recognise
from scanner.libraries.retire import ReleaseCheck
from tests.paths import PROJECT_ROOT
from tests.scanner.libraries.conftest import make_index, synthetic_library

CHECK = ReleaseCheck(
    VendoredLibraries([Detector("tinylib", "filecontent", rf"tinylib v({VERSION_TOKEN})")])
)
# Indexed as 7.7.7, a version its text never names: the matcher alone cannot tell.
BODY = canonical(synthetic_library(30_000, seed=21, version="0"))


@pytest.fixture(scope="module")
def index() -> LibraryIndex:
    return make_index(("tinylib", "7.7.7", "dist/tiny.min.js", BODY, "MIT"))


def _bundle(banner_version: str) -> bytes:
    at = len(BODY) // 2
    banner = f"/*! tinylib v{banner_version} */\n".encode()
    return banner + BODY[:at] + b"alert(1);" + BODY[at:]


@pytest.mark.parametrize(
    ("version", "kind"), [("9.9.9", CopyKind.OTHER_RELEASE), ("7.7.7", CopyKind.MODIFIED)]
)
def test_a_modified_copy_naming_another_release_is_re_judged(
    index: LibraryIndex, version: str, kind: CopyKind
) -> None:
    data = _bundle(version)
    copies = recognise(data, index)
    assert [c.kind for c in copies] == [CopyKind.MODIFIED]
    CHECK.settle("a.js", data, copies)
    assert [c.kind for c in copies] == [kind]


def test_without_detectors_nothing_is_re_judged(index: LibraryIndex) -> None:
    data = _bundle("9.9.9")
    copies = recognise(data, index)
    ReleaseCheck(None).settle("a.js", data, copies)
    assert [c.kind for c in copies] == [CopyKind.MODIFIED]


def test_the_shipped_retirejs_repository_loads() -> None:
    assert ReleaseCheck.from_rules(PROJECT_ROOT / "rules").vendored is not None
