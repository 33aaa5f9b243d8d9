"""The capability table: what is declared, what the code has, what the run did."""

from __future__ import annotations

import json
from pathlib import Path

from scanner.capabilities import CapabilityCheck
from scanner.findings import Category, Finding, Severity, StageResult, StageStatus
from scanner.workspace import Workspace
from tests.conftest import CLEAN_JS, manifest


def _ws(tmp_path: Path, **changes: object) -> Workspace:
    root = tmp_path / "b"
    (root / "dist").mkdir(parents=True)
    (root / "plugin.json").write_text(json.dumps(manifest(**changes)))
    (root / "dist" / "bundle.js").write_text(CLEAN_JS)
    return Workspace.from_directory(root)


def _static(rule: str, capability: str) -> StageResult:
    f = Finding(
        "js-static",
        rule,
        Category.UNDECLARED_CAPABILITY,
        Severity.MEDIUM,
        "m",
        details=(("capability", capability),),
    )
    return StageResult("js-static", 1, findings=[f])


def test_rows_per_capability(tmp_path: Path) -> None:
    ws = _ws(tmp_path, capabilities={"network": ["https://api.acme.example"], "clipboard": True})
    runtime = StageResult("runtime", 1, raw={"observed_capabilities": ["network", "cookies"]})
    result = CapabilityCheck().run(ws, [_static("js-storage-access", "storage"), runtime])
    rows = {r["capability"]: r for r in result.raw["table"]}
    assert rows["network"] == {
        "capability": "network",
        "declared": True,
        "static": False,
        "observed": True,
        "verdict": "ok",
    }
    assert rows["storage"]["verdict"] == "undeclared" and rows["storage"]["static"] is True
    assert rows["cookies"]["verdict"] == "undeclared" and rows["cookies"]["observed"] is True
    assert rows["clipboard"]["verdict"] == "unused"
    assert [f.rule_id for f in result.findings] == ["capability-unused"]
    assert result.raw["csp"].startswith("default-src 'none'")
    assert set(result.raw["sri"]) == {"dist/bundle.js"}


def test_without_a_runtime_run_observed_is_unknown(tmp_path: Path) -> None:
    runtime = StageResult("runtime", 1, StageStatus.ERROR, error="no browser")
    result = CapabilityCheck().run(_ws(tmp_path), [runtime])
    assert all(r["observed"] is None for r in result.raw["table"])
    assert result.findings == []  # unused cannot be claimed without having watched it run


def test_reuses_the_csp_the_runtime_stage_ran_under(tmp_path: Path) -> None:
    runtime = StageResult(
        "runtime", 1, raw={"csp": "default-src 'none'; x", "sri": {"a.js": "sha384-x"}}
    )
    result = CapabilityCheck().run(_ws(tmp_path), [runtime])
    assert result.raw["csp"] == "default-src 'none'; x" and result.raw["sri"] == {
        "a.js": "sha384-x"
    }
