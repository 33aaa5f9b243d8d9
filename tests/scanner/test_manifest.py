"""The plugin.json contract: field paths in every message, overbroad grants flagged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from scanner.findings import Category, Severity
from scanner.manifest import Capabilities, Origin, validate_manifest
from tests.conftest import manifest

PATHS = frozenset({"plugin.json", "dist/bundle.js", "dist/styles.css", "backend/app.py"})


def _problems(data: Any) -> list[tuple[str, str]]:
    return [(p.rule_id, p.message) for p in validate_manifest(data, PATHS).problems]


def test_valid_manifest_parses_with_declared_capabilities() -> None:
    load = validate_manifest(
        manifest(
            styles=["dist/styles.css"],
            capabilities={"network": ["https://api.acme.example"], "storage": True},
            backend={"runtime": "python3.11", "entry": "backend/app.py"},
        ),
        PATHS,
    )
    assert load.problems == ()
    assert load.manifest is not None
    caps = load.manifest.capabilities
    assert caps.storage and not caps.cookies and caps.dom == "container"
    assert caps.allows_origin("https://api.acme.example/v1/x")
    assert not caps.allows_origin("https://evil.example/")
    assert load.manifest.backend_entry == "backend/app.py"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": "Bad Name"}, "name:"),
        ({"version": "1.0"}, "version:"),
        ({"globalName": "not-an-ident"}, "globalName:"),
        ({"globalName": "fetch"}, "globalName:"),
        ({"entry": "../outside.js"}, "entry:"),
        ({"entry": "dist/missing.js"}, "entry:"),
        ({"entry": "dist/styles.css"}, "entry:"),
        ({"styles": ["dist/missing.css"]}, "styles[0]:"),
        (
            {"capabilities": {"network": ["https://ok.example", "ftp://x.example"]}},
            "capabilities.network[1]:",
        ),
        ({"capabilities": {"network": ["https://api.example/path"]}}, "capabilities.network[0]:"),
        ({"capabilities": {"network": ["https://api.example.com."]}}, "capabilities.network[0]:"),
        # A wildcard over a public suffix would grant anyone's site: ICANN and private.
        ({"capabilities": {"network": ["https://*.co.uk"]}}, "capabilities.network[0]:"),
        ({"capabilities": {"network": ["https://*.github.io"]}}, "capabilities.network[0]:"),
        ({"capabilities": {"storage": "yes"}}, "capabilities.storage:"),
        ({"capabilities": {"dom": "everything"}}, "capabilities.dom:"),
        ({"capabilities": {"telepathy": True}}, "capabilities.telepathy:"),
        ({"backend": {"runtime": "node18", "entry": "backend/app.py"}}, "backend.runtime:"),
        ({"unexpected": 1}, "unexpected:"),
    ],
)
def test_each_error_names_its_field(change: dict[str, Any], field: str) -> None:
    load = validate_manifest(manifest(**change), PATHS)
    messages = [p.message for p in load.problems if p.category is Category.MANIFEST]
    assert any(m.startswith(field) for m in messages), messages
    assert load.manifest is None


def test_missing_required_field() -> None:
    data = manifest()
    del data["globalName"]
    assert ("manifest-missing-field", "globalName: is required") in _problems(data)


def test_non_object_is_fatal() -> None:
    load = validate_manifest(["not", "an", "object"], PATHS)
    assert load.manifest is None
    assert load.problems[0].severity is Severity.CRITICAL


@pytest.mark.parametrize(
    ("capabilities", "severity"),
    [
        ({"network": ["*"]}, Severity.HIGH),
        ({"network": ["https://*"]}, Severity.HIGH),
        ({"network": ["http://api.example.com"]}, Severity.MEDIUM),
        ({"network": ["https://*.example.com"]}, Severity.LOW),
        ({"network": ["https://*.example.co.uk"]}, Severity.LOW),
        ({"network": ["https://api.example.com"], "dom": "document"}, Severity.HIGH),
        ({"network": ["https://api.example.com"], "cookies": True}, Severity.MEDIUM),
    ],
)
def test_overbroad_grants_are_findings(capabilities: dict[str, Any], severity: Severity) -> None:
    load = validate_manifest(manifest(capabilities=capabilities), PATHS)
    broad = [p for p in load.problems if p.category is Category.OVERBROAD_CAPABILITY]
    assert [p.severity for p in broad] == [severity]
    assert load.manifest is not None  # overbroad is a judgement, not an invalid manifest


def test_narrow_grants_are_not_overbroad() -> None:
    load = validate_manifest(
        manifest(capabilities={"network": ["https://api.example.com"], "storage": True}), PATHS
    )
    assert load.problems == ()


@pytest.mark.parametrize(
    ("grant", "url", "allowed"),
    [
        (Origin("https", "api.example.com", None), "https://api.example.com/x", True),
        (Origin("https", "api.example.com", None), "https://api.example.com:443/x", True),
        (Origin("https", "api.example.com", None), "wss://api.example.com/socket", True),
        (Origin("https", "api.example.com", None), "http://api.example.com/x", False),
        (Origin("https", "api.example.com", None), "https://api.example.com:8443/", False),
        (Origin("https", "api.example.com", None), "https://api.example.com.evil.example/", False),
        (Origin("https", "*.example.com", None), "https://cdn.example.com/", True),
        (Origin("https", "*.example.com", None), "https://example.com/", False),
        (Origin("https", "*.example.com", None), "https://evilexample.com/", False),
    ],
)
def test_origin_matching(grant: Origin, url: str, allowed: bool) -> None:
    assert Capabilities(network=(grant,)).allows_origin(url) is allowed


def test_a_manifest_nested_thousands_deep_is_refused_not_a_crash(tmp_path: Path) -> None:
    from scanner.manifest import load_manifest

    deep = '{"name": "x", "a": ' + "[" * 5000 + "]" * 5000 + "}"
    (tmp_path / "plugin.json").write_text(deep)
    load = load_manifest(tmp_path, frozenset({"plugin.json"}))
    assert load.manifest is None
    assert [(p.rule_id, p.severity) for p in load.problems] == [
        ("manifest-unreadable", Severity.CRITICAL)
    ]
