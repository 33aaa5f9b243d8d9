"""Building the index from a registry: an in-memory fake, never the network."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from typing import Any

from scanner.libraries.index import LibraryIndex
from scanner.libraries.npm import (
    RegistryError,
    browser_files,
    build_index,
    licence_of,
    recent_versions,
    split_spec,
)
from tests.scanner.libraries.conftest import synthetic_library


def _tarball(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@dataclass
class FakeRegistry:
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)

    def publish(
        self, name: str, version: str, when: str, files: dict[str, bytes], **meta: Any
    ) -> None:
        blob = _tarball({"package.json": json.dumps({"name": name, **meta}).encode(), **files})
        url = f"https://registry.test/{name}/-/{name}-{version}.tgz"
        self.blobs[url] = blob
        integrity = "sha512-" + base64.b64encode(hashlib.sha512(blob).digest()).decode()
        doc = self.docs.setdefault(name, {"name": name, "versions": {}, "time": {}})
        doc["versions"][version] = {
            "name": name,
            "version": version,
            "dist": {"tarball": url, "integrity": integrity},
            **meta,
        }
        doc["time"][version] = when

    def packument(self, name: str) -> dict[str, Any]:
        if name not in self.docs:
            raise RegistryError(f"{name}: 404")
        return self.docs[name]

    def tarball(self, url: str) -> bytes:
        return self.blobs[url]


def test_the_highest_stable_versions_whatever_their_publication_time() -> None:
    doc = {
        "versions": {v: {} for v in ("1.0.0", "2.0.0-beta.1", "1.1.0", "0.9.0", "1.0.10")},
        # Republished long after: the registry's time says nothing about how recent it is.
        "time": {"0.9.0": "2026-05-18", "1.1.0": "2024-03"},
    }
    assert recent_versions(doc, 2, majors=0) == ["1.1.0", "1.0.10"]


def test_the_last_release_of_earlier_major_lines_is_indexed_too() -> None:
    versions = ["4.1.0", "4.0.0", "3.7.1", "3.7.0", "3.6.4", "2.2.4", "2.2.3", "1.12.4"]
    doc = {"versions": {v: {} for v in versions}, "time": {}}
    assert recent_versions(doc, 2) == ["4.1.0", "4.0.0", "3.7.1", "2.2.4"]
    assert recent_versions(doc, 3, majors=3) == ["4.1.0", "4.0.0", "3.7.1", "2.2.4", "1.12.4"]


def test_licence_fields_old_and_new() -> None:
    assert licence_of({"license": "MIT"}) == "MIT"
    assert licence_of({"license": {"type": "ISC"}}) == "ISC"
    assert licence_of({"licenses": [{"type": "MIT"}, {"type": "GPL-2.0"}]}) == "MIT OR GPL-2.0"
    assert licence_of({}) is None


def test_scoped_specs() -> None:
    assert split_spec("@scope/pkg@1.2.3") == ("@scope/pkg", "1.2.3")
    assert split_spec("@scope/pkg") == ("@scope/pkg", None)
    assert split_spec("pkg") == ("pkg", None)


def test_browser_files_prefer_declared_entries_then_minified_builds() -> None:
    members = {
        "dist/lib.js": 5000,
        "dist/lib.min.js": 2000,
        "dist/esm/deep/part.js": 3000,
        "src/lib.js": 9000,
        "test/lib.test.js": 2000,
        "index.js": 100,
    }
    picked = browser_files({"unpkg": "dist/lib.min.js"}, members)
    assert picked[0] == "dist/lib.min.js"
    assert "dist/lib.js" in picked
    # A minified build at the top of the package (lodash.min.js) is one too.
    assert "lib.min.js" in browser_files({"main": "index.js"}, {"lib.min.js": 4000, **members})
    assert not {"src/lib.js", "test/lib.test.js", "dist/esm/deep/part.js"} & set(picked)


def test_build_indexes_recent_releases_and_reports_failures() -> None:
    reg = FakeRegistry()
    for i, (version, when) in enumerate(
        [("1.0.0", "2024-01"), ("1.1.0", "2024-02"), ("1.2.0", "2024-03")]
    ):
        lib = synthetic_library(8_000, seed=10 + i, version=version)
        reg.publish(
            "tiny",
            version,
            when,
            {"dist/tiny.min.js": lib},
            license="MIT",
            unpkg="dist/tiny.min.js",
        )
    index, failures = build_index(reg, ["tiny", "missing"], versions=2, workers=2)
    assert [f.versions for f in index] == [("1.2.0",), ("1.1.0",)]
    assert {f.licence for f in index} == {"MIT"}
    assert len(failures) == 1 and failures[0].startswith("missing")
    # Extending an index adds versions it lacks.
    more, _ = build_index(reg, ["tiny@1.0.0"], into=LibraryIndex(list(index)))
    assert sorted(v for f in more for v in f.versions) == ["1.0.0", "1.1.0", "1.2.0"]


def test_a_tarball_that_does_not_match_its_integrity_is_refused() -> None:
    reg = FakeRegistry()
    reg.publish("tiny", "1.0.0", "2024", {"dist/tiny.min.js": synthetic_library(8_000)})
    url = reg.docs["tiny"]["versions"]["1.0.0"]["dist"]["tarball"]
    reg.blobs[url] = _tarball({"dist/tiny.min.js": b"something else" * 200})
    index, failures = build_index(reg, ["tiny"])
    assert len(index) == 0 and "integrity" in failures[0]
