"""The stage over a real database: vulnerable, vendored, typosquatted; SBOM of the result."""

from __future__ import annotations

import json

import pytest

from scanner.advisories.store import KnownVulnerability
from scanner.config import Settings
from scanner.findings import Category, Severity
from scanner.pipeline import scan_bundle
from scanner.policy import Policy, Verdict
from scanner.sbom import build_sbom
from scanner.stages.dependencies import DependencyStage, merge_aliases
from tests.conftest import BundleMaker


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> DependencyStage:
    from dataclasses import replace

    data = tmp_path_factory.mktemp("deps-db")
    return DependencyStage.from_settings(replace(Settings(), data_dir=data))


def test_vulnerable_packages_from_every_source(
    stage: DependencyStage, settings: Settings, make_bundle: BundleMaker
) -> None:
    lock = {
        "lockfileVersion": 3,
        "packages": {
            "node_modules/lodash": {"version": "4.17.15"},
            "node_modules/left-pad": {"version": "1.3.0"},
        },
    }
    bundle = make_bundle(
        {
            "package-lock.json": json.dumps(lock),
            "backend/requirements.txt": "urllib3==1.24.1\njinja2==3.1.5\nreqeusts==2.31.0\n",
            "dist/vendor.js": "/*! jQuery v1.8.3 | (c) jQuery Foundation */ !function(){}",
        }
    )
    result = scan_bundle(bundle, settings, [stage], Policy.load(settings.policy_path))
    vulns = {
        (dict(f.details)["package"], dict(f.details)["installed"])
        for f in result.findings
        if f.category is Category.VULNERABLE_DEPENDENCY
    }
    assert ("urllib3", "1.24.1") in vulns
    assert ("lodash", "4.17.15") in vulns
    assert ("jquery", "1.8.3") in vulns  # vendored copy, found by its banner
    assert not any(p == "jinja2" for p, _ in vulns)  # 3.1.5 has no advisory in the snapshot
    assert any(f.rule_id == "dep-typosquat" and "requests" in f.message for f in result.findings)
    assert result.decision.verdict is Verdict.REVIEW  # vulnerable libraries are for a person
    urllib3 = [f for f in result.findings if f.evidence == "urllib3@1.24.1"]
    assert all(f.rule_id.startswith("vuln:") and dict(f.details)["fixed"] for f in urllib3)
    assert len({f.rule_id for f in urllib3}) == len(urllib3)  # aliases merged: one finding each

    sbom = json.loads(build_sbom(result))
    assert sbom["bomFormat"] == "CycloneDX"
    purls = {c.get("purl") for c in sbom["components"]}
    assert "pkg:pypi/urllib3@1.24.1" in purls and "pkg:npm/lodash@4.17.15" in purls
    affected_refs = {a["ref"] for v in sbom["vulnerabilities"] for a in v.get("affects", [])}
    assert "pkg:pypi/urllib3@1.24.1" in affected_refs


def test_backdoored_source_is_malware(
    stage: DependencyStage, settings: Settings, make_bundle: BundleMaker
) -> None:
    js = (
        "var s=document.createElement('script');s.src='https://cdn.polyfill.io/v3/polyfill.min.js';"
    )
    result = scan_bundle(
        make_bundle({"dist/bundle.js": js}), settings, [stage], Policy.load(settings.policy_path)
    )
    [finding] = [f for f in result.findings if f.category is Category.MALWARE]
    assert finding.severity is Severity.CRITICAL and finding.path == "dist/bundle.js"


def test_merge_aliases_joins_chains() -> None:
    def v(id_: str, *aliases: str) -> KnownVulnerability:
        return KnownVulnerability(id_, aliases, None, None, (), "PyPI", "x", (), (), "s")

    groups = merge_aliases(
        [v("PYSEC-1", "CVE-1"), v("GHSA-1", "CVE-1"), v("PYSEC-2"), v("OSV-3", "GHSA-1")]
    )
    assert sorted(len(g) for g in groups) == [1, 3]


def test_the_sbom_is_valid_cyclonedx_with_tools_methods_and_stable_refs(
    stage: DependencyStage, settings: Settings, make_bundle: BundleMaker
) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    lock = {
        "lockfileVersion": 3,
        "packages": {
            "node_modules/lodash": {"version": "4.17.15"},
            "node_modules/ember": {"version": "1.3.1"},
        },
    }
    bundle = make_bundle(
        {
            "package-lock.json": json.dumps(lock),
            "backend/requirements.txt": "urllib3==1.24.1\n",
            "other/requirements.txt": "urllib3==1.24.1\n",  # the same component twice
        }
    )
    policy = Policy.load(settings.policy_path)
    texts = [build_sbom(scan_bundle(bundle, settings, [stage], policy)) for _ in range(2)]
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(texts[0]) is None
    first, second = (json.loads(t) for t in texts)
    tools = first["metadata"]["tools"]["components"]
    assert [(t["name"], t["type"]) for t in tools] == [("gatehouse", "application")]
    vulns = first["vulnerabilities"]
    refs = [v["bom-ref"] for v in vulns]
    assert refs == [v["bom-ref"] for v in second["vulnerabilities"]]  # not random
    assert len(set(refs)) == len(refs) and all(r.startswith("vuln:") for r in refs)
    for v in vulns:
        for rating in v["ratings"]:
            assert rating["method"] in {"CVSSv3", "CVSSv31", "CVSSv4", "other"}
            if "vector" in rating and rating["method"].startswith("CVSSv3"):
                assert 0 < rating["score"] <= 10
    assert any(r.get("vector") for v in vulns for r in v["ratings"])
    assert any("ember" in a["ref"] for v in vulns for a in v.get("affects", []))


@pytest.mark.parametrize(
    "files",
    [
        {  # the lockfile records that the lookalike runs code when installed
            "package-lock.json": json.dumps(
                {
                    "lockfileVersion": 3,
                    "packages": {
                        "node_modules/lodahs": {"version": "1.0.0", "hasInstallScript": True}
                    },
                }
            )
        },
        {  # the bundle's own install hook runs next to a lookalike dependency
            "package.json": json.dumps(
                {
                    "name": "p",
                    "dependencies": {"lodahs": "1.0.0"},
                    "scripts": {"postinstall": "node setup.js"},
                }
            )
        },
    ],
)
def test_a_typosquat_that_runs_code_at_install_is_rejected(
    stage: DependencyStage, settings: Settings, make_bundle: BundleMaker, files: dict[str, str]
) -> None:
    result = scan_bundle(make_bundle(files), settings, [stage], Policy.load(settings.policy_path))
    squat = [f for f in result.findings if f.rule_id == "dep-typosquat-install-script"]
    assert [(f.category, f.severity) for f in squat] == [(Category.MALWARE, Severity.CRITICAL)]
    assert result.decision.verdict is Verdict.REJECT


def test_a_typosquat_alone_still_goes_to_a_person(
    stage: DependencyStage, settings: Settings, make_bundle: BundleMaker
) -> None:
    lock = {"lockfileVersion": 3, "packages": {"node_modules/lodahs": {"version": "1.0.0"}}}
    bundle = make_bundle({"package-lock.json": json.dumps(lock)})
    result = scan_bundle(bundle, settings, [stage], Policy.load(settings.policy_path))
    assert not any(f.rule_id == "dep-typosquat-install-script" for f in result.findings)
    assert result.decision.verdict is Verdict.REVIEW
