"""Names, versions and paths on the CDN: what an attacker controls never escapes its place."""

from __future__ import annotations

import pytest

from service.cdn.index import latest
from service.cdn.paths import (
    BLOCKLIST_KEY,
    CdnPathError,
    Target,
    content_type,
    file_key,
    index_key,
    manifest_key,
    parse_origin_path,
)


def test_scoped_and_plain_names_map_to_their_own_prefix() -> None:
    assert file_key("@acme/widget", "1.2.3", "dist/a.js") == "@acme/widget/1.2.3/dist/a.js"
    assert file_key("widget", "1.0.0-rc.1+b.7", "a.js") == "widget/1.0.0-rc.1+b.7/a.js"
    assert index_key("@acme/widget") == "@acme/widget/index.json"
    assert manifest_key("w", "1.0.0") == "w/1.0.0/gatehouse-manifest.json"


@pytest.mark.parametrize(
    "name",
    [
        "../x",
        "@acme/../x",
        "@acme/w/x",
        "_gatehouse",
        "/abs",
        "Widget",
        "w x",
        "@/w",
        "",
        "a" * 215,
    ],
)
def test_names_that_are_not_plugin_names_are_refused(name: str) -> None:
    with pytest.raises(CdnPathError):
        file_key(name, "1.0.0", "a.js")


@pytest.mark.parametrize("version", ["1.0", "v1.0.0", "1.0.0/../..", "1.0.0\n", "01.0.0"])
def test_versions_that_are_not_semver_are_refused(version: str) -> None:
    with pytest.raises(CdnPathError):
        file_key("w", version, "a.js")


@pytest.mark.parametrize(
    "path",
    [
        "../a.js",
        "a/../../b",
        "/etc/passwd",
        "a//b",
        "./a",
        "a\\b",
        "a\x00b",
        "a\nb",
        "",
        "gatehouse-manifest.json",
    ],
)
def test_file_paths_cannot_leave_their_version_or_replace_the_manifest(path: str) -> None:
    with pytest.raises(CdnPathError):
        file_key("w", "1.0.0", path)


def test_no_plugin_name_reaches_the_service_documents() -> None:
    # "blocklist.json" is a valid plugin name: its files live below it, never over ours.
    assert file_key("blocklist.json", "1.0.0", "a.js") == "blocklist.json/1.0.0/a.js"
    assert BLOCKLIST_KEY.startswith("_gatehouse/")
    assert parse_origin_path("blocklist.json") == Target("blocklist")
    assert parse_origin_path("blocklist.json/index.json") == Target("index", "blocklist.json")


def test_origin_paths() -> None:
    assert parse_origin_path("@acme/w/index.json") == Target("index", "@acme/w")
    assert parse_origin_path("@acme/w/1.0.0/gatehouse-manifest.json") == Target(
        "manifest", "@acme/w", "1.0.0"
    )
    assert parse_origin_path("w/1.0.0/dist/a.js") == Target("file", "w", "1.0.0", "dist/a.js")
    for bad in ["w/1.0.0", "w/latest/a.js", "w/1.0.0/../x", "../w/1.0.0/a", "@acme/1.0.0/a.js"]:
        with pytest.raises(CdnPathError):
            parse_origin_path(bad)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("dist/a.js", "text/javascript; charset=utf-8"),
        ("a.CSS", "text/css; charset=utf-8"),
        ("index.html", "text/plain; charset=utf-8"),
        ("page.htm", "text/plain; charset=utf-8"),
        ("x.xhtml", "text/plain; charset=utf-8"),
        ("noext", "text/plain; charset=utf-8"),
        ("a.svg", "image/svg+xml"),
        ("f.woff2", "font/woff2"),
    ],
)
def test_html_and_anything_unknown_are_plain_text(path: str, expected: str) -> None:
    assert content_type(path) == expected


def test_latest_is_the_highest_release_not_yanked() -> None:
    assert latest([("1.2.0", False), ("1.10.0", False), ("2.0.0-rc.1", False)]) == "1.10.0"
    assert latest([("1.10.0", True), ("1.2.0", False)]) == "1.2.0"
    assert latest([("2.0.0-rc.2", False), ("2.0.0-rc.10", False)]) == "2.0.0-rc.10"
    assert latest([("1.0.0", True)]) is None
