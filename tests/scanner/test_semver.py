"""One semver check for the manifest and the webhook, agreeing with node-semver (strict)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import nodesemver
import pytest

from scanner import semver
from scanner.manifest import validate_manifest
from service.submissions import SubmissionError, SubmissionRequest, validate
from tests.conftest import manifest
from tests.scanner.advisories.test_versions import _version_pool

TRICKY = [
    "1.0.0",
    "01.0.0",
    "1.01.0",
    "1.0.0-a..b",
    "1.0.0+a+b",
    "1.0.0-01",
    "1.0.0-0a",
    "1.0.0\n",
    " 1.0.0",
    "1.0",
    "1.0.0.0",
    "1.0.0-",
    "1.0.0+",
    "1.0.0-rc-1+build.7",
    "999999999.0.0",
    "1.0.0-é",
]


@pytest.mark.parametrize("version", TRICKY + _version_pool(200, 7))
def test_the_check_agrees_with_node_semver(version: str) -> None:
    if version != version.strip():
        # node-semver trims; a field value with a newline is refused here (full match).
        assert not semver.is_semver(version)
        return
    assert semver.is_semver(version) is (nodesemver.valid(version, False) is not None)


def _webhook_accepts(version: str) -> bool:
    req = SubmissionRequest("msg", "pub-1", "demo", version, bundle_url=None)
    svc: Any = SimpleNamespace(settings=SimpleNamespace(callback_origin_list=()))
    try:
        validate(req, svc, has_file=True)
    except SubmissionError as exc:
        assert exc.field == "version"
        return False
    return True


def _manifest_accepts(version: str) -> bool:
    load = validate_manifest(manifest(version=version), frozenset({"dist/bundle.js"}))
    return not any(p.field == "version" for p in load.problems)


@pytest.mark.parametrize("version", TRICKY)
def test_manifest_and_webhook_accept_the_same_versions(version: str) -> None:
    expected = semver.is_semver(version) and "+" not in version  # no build metadata
    assert _manifest_accepts(version) is _webhook_accepts(version) is expected
    assert semver.is_plugin_version(version) is expected
