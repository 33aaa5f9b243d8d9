"""SARIF 2.1.0 as GitHub code scanning accepts it."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Any
from urllib.parse import quote

from scanner import __version__
from scanner.findings import Category, Finding, Severity, StageStatus
from scanner.pipeline import ScanResult

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
# GitHub maps >= 9.0 critical, 7.0-8.9 high, 4.0-6.9 medium, 0.1-3.9 low.
SECURITY_SEVERITY = {
    Severity.CRITICAL: "9.5",
    Severity.HIGH: "8.0",
    Severity.MEDIUM: "5.5",
    Severity.LOW: "3.0",
    Severity.INFO: "0.5",
}
LEVEL = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
    Severity.INFO: "note",
}
CATEGORY_HELP = {
    Category.MALWARE: "An antivirus signature matched. Remove the file or prove a false positive.",
    Category.EXFILTRATION: (
        "Data leaves the page for an origin the manifest does not declare. "
        "Declare the origin, or stop sending the data."
    ),
    Category.CREDENTIAL_ACCESS: (
        "The code reads credentials (cookies, tokens, password or payment fields). "
        "Remove the access or declare and justify it."
    ),
    Category.OBFUSCATION: "The code hides what it does. Submit readable (minified is fine) code.",
    Category.DYNAMIC_CODE: (
        "Code is built or fetched at run time. Declare capabilities.eval, or ship the code itself."
    ),
    Category.CRYPTOMINING: (
        "The code mines cryptocurrency in the user's browser. This is never accepted."
    ),
    Category.UNDECLARED_CAPABILITY: (
        "The code uses a capability the manifest does not declare. "
        "Declare it in plugin.json or remove the use."
    ),
    Category.OVERBROAD_CAPABILITY: (
        "The manifest asks for more than a plugin should need. Narrow the declaration."
    ),
    Category.DOM_ESCAPE: (
        "The code reaches outside the container it was given. Render only inside the container."
    ),
    Category.VULNERABLE_DEPENDENCY: (
        "A dependency has a known vulnerability. Upgrade to a fixed version."
    ),
    Category.SUSPICIOUS_DEPENDENCY: (
        "A dependency looks risky (install scripts, typosquat, unusual source). Check it."
    ),
    Category.BACKEND_CODE: (
        "The Python backend has a risky construct (bandit). Fix it or explain it to the reviewer."
    ),
    Category.SECRETS: "A credential is hardcoded. Revoke it and load secrets at run time.",
    Category.ARCHIVE: "The archive is unsafe to unpack. Rebuild it as a plain zip or tar.gz.",
    Category.MANIFEST: "plugin.json breaks the bundle contract. Fix the named field.",
    Category.COVERAGE: "Part of the bundle could not be scanned, so it cannot pass automatically.",
    Category.LICENSE: "A licence problem needs a person's judgement.",
}


def _uri(result: ScanResult, f: Finding) -> str:
    return quote(f.path, safe="/") if f.path else quote(result.bundle_name)


def _fingerprint(f: Finding, seen: Counter[str]) -> str:
    basis = f"{f.rule_id}|{f.path}|{' '.join((f.evidence or f.message).split())}"
    digest = hashlib.sha256(basis.encode()).hexdigest()[:32]
    seen[digest] += 1
    return f"{digest}:{seen[digest]}"


def _rule(rule_id: str, first: Finding) -> dict[str, Any]:
    return {
        "id": rule_id,
        "name": "".join(
            part.capitalize()
            for part in rule_id.replace(":", "-").replace("_", "-").split("-")
            if part
        ),
        "shortDescription": {"text": f"{first.category.value}: {rule_id}"},
        "fullDescription": {"text": first.message},
        "help": {"text": CATEGORY_HELP[first.category]},
        "defaultConfiguration": {"level": LEVEL[first.severity]},
        "properties": {
            "tags": ["security", first.category.value],
            "security-severity": SECURITY_SEVERITY[first.severity],
        },
    }


def sarif_dict(result: ScanResult) -> dict[str, Any]:
    findings = result.findings
    rule_index: dict[str, int] = {}
    rules: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    seen: Counter[str] = Counter()
    for f in findings:
        if f.rule_id not in rule_index:
            rule_index[f.rule_id] = len(rules)
            rules.append(_rule(f.rule_id, f))
        region = {"startLine": f.line} if f.line else {"startLine": 1}
        results.append(
            {
                "ruleId": f.rule_id,
                "ruleIndex": rule_index[f.rule_id],
                "level": LEVEL[f.severity],
                "message": {"text": f.message},
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": {"uri": _uri(result, f)},
                            "region": region,
                        }
                    }
                ],
                "partialFingerprints": {"primaryLocationLineHash": _fingerprint(f, seen)},
                "properties": {
                    "category": f.category.value,
                    "severity": f.severity.label,
                    "stage": f.stage,
                    "state": f.state.value,
                    "evidence": f.evidence,
                    "security-severity": SECURITY_SEVERITY[f.severity],
                },
            }
        )
    notifications = [
        {"level": "error", "message": {"text": f"stage {s.name} {s.status.value}: {s.error}"}}
        for s in result.stages
        if s.status is not StageStatus.OK
    ]
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "Gatehouse",
                        "version": __version__,
                        "semanticVersion": __version__,
                        "rules": rules,
                    }
                },
                "invocations": [
                    {
                        "executionSuccessful": not notifications,
                        "toolExecutionNotifications": notifications,
                    }
                ],
                "results": results,
                "properties": {
                    "verdict": result.decision.verdict.label,
                    "risk_score": result.decision.risk_score,
                    "ruleset": result.ruleset,
                    "bundle_sha256": result.bundle.sha256,
                },
            }
        ],
    }


def render_sarif(result: ScanResult) -> str:
    return json.dumps(sarif_dict(result), indent=2) + "\n"
