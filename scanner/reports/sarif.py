"""SARIF 2.1.0 as GitHub code scanning accepts it."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

from scanner import __version__
from scanner.findings import Category, Finding, Severity, StageStatus
from scanner.pipeline import ScanResult
from scanner.reports.rule_text import rule_description

SARIF_SCHEMA = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
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
    Category.SUPPLY_CHAIN: (
        "A published library was changed inside the bundle. Ship the published file unchanged."
    ),
}


# Where each rule kind is documented; help.markdown links there (GitHub renders it).
RULES_GUIDE = "docs/rules.md#rule-ids-in-reports"
# Runs of digits or hex this long are per-run data (canary tags, timestamps, ids).
_VOLATILE = re.compile(r"[0-9a-fA-F]{6,}|\d{3,}")
# Stages whose evidence is observed at run time: it carries the canaries, random per scan.
RUN_DEPENDENT_STAGES = frozenset({"runtime"})
# A category is a path-like name; anything else is refused (a given one) or replaced (one
# derived from a bundle's file name).
CATEGORY_RE = re.compile(r"[A-Za-z0-9._/@+-]{1,200}")
_NOT_CATEGORY = re.compile(r"[^A-Za-z0-9._/@+-]")


def safe_member_path(path: str) -> str | None:
    """``path`` as a URI path inside the bundle, or None when it would leave the bundle.

    Archive-attack findings name the hostile member (``../../../../tmp/x``, ``/etc/x``,
    ``C:\\x``): a consumer resolving that against the checkout must not go outside it.
    """
    p = path.replace("\\", "/")
    parts = [s for s in p.split("/") if s not in ("", ".")]
    if not parts or p.startswith("/") or ".." in parts or ":" in parts[0]:
        return None
    if not all(s.isprintable() for s in parts):
        return None
    return "/".join(parts)


def _location(result: ScanResult, f: Finding) -> dict[str, Any]:
    inside = safe_member_path(f.path) if f.path else None
    uri = quote(inside, safe="/") if inside else quote(result.bundle_name, safe="")
    region = {"startLine": f.line if f.line and inside else 1}
    return {"physicalLocation": {"artifactLocation": {"uri": uri}, "region": region}}


def _stable_text(f: Finding) -> str:
    """What identifies this result across scans of the same bundle (never per-run data)."""
    text = f.message if f.stage in RUN_DEPENDENT_STAGES else (f.evidence or f.message)
    return _VOLATILE.sub("#", " ".join(text.split()))


def _fingerprint(f: Finding, seen: Counter[str]) -> str:
    where = (safe_member_path(f.path) or "<outside>") if f.path else "<bundle>"
    basis = f"{f.rule_id}|{where}|{_stable_text(f)}"
    digest = hashlib.sha256(basis.encode()).hexdigest()[:32]
    seen[digest] += 1
    return f"{digest}:{seen[digest]}"


def _rule(rule_id: str, first: Finding, rules_dir: Path) -> dict[str, Any]:
    description = rule_description(rule_id, first.category, rules_dir)
    guide = CATEGORY_HELP[first.category]
    return {
        "id": rule_id,
        "name": "".join(
            part.capitalize()
            for part in rule_id.replace(":", "-").replace("_", "-").split("-")
            if part
        ),
        "shortDescription": {"text": f"{first.category.value}: {rule_id}"},
        "fullDescription": {"text": description},
        "help": {
            "text": guide,
            "markdown": f"{guide}\n\nSee [the rules guide]({RULES_GUIDE}) (stage `{first.stage}`).",
        },
        "defaultConfiguration": {"level": LEVEL[first.severity]},
        "properties": {
            "tags": ["security", first.category.value],
            "security-severity": SECURITY_SEVERITY[first.severity],
        },
    }


def default_category(result: ScanResult) -> str:
    """The code-scanning category of this bundle: uploads for two plugins never replace
    each other's alerts, and the same plugin's next scan replaces its own."""
    name = result.manifest_name or result.bundle_name
    return f"gatehouse/{_NOT_CATEGORY.sub('_', name)}"[:190]


def automation_id(category: str) -> str:
    """``automationDetails.id``: GitHub reads everything before the last "/" as the category."""
    category = category.rstrip("/")
    if not CATEGORY_RE.fullmatch(category):
        raise ValueError("a SARIF category is 1-200 of A-Z a-z 0-9 . _ / @ + -")
    return category + "/"


def _result(result: ScanResult, f: Finding, index: int, seen: Counter[str]) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "category": f.category.value,
        "severity": f.severity.label,
        "stage": f.stage,
        "state": f.state.value,
        "evidence": f.evidence,
        "security-severity": SECURITY_SEVERITY[f.severity],
    }
    if f.path and safe_member_path(f.path) is None:
        properties["member"] = f.path  # named here, never as a location
    return {
        "ruleId": f.rule_id,
        "ruleIndex": index,
        "level": LEVEL[f.severity],
        "message": {"text": f.message},
        "locations": [_location(result, f)],
        "partialFingerprints": {"primaryLocationLineHash": _fingerprint(f, seen)},
        "properties": properties,
    }


def sarif_dict(result: ScanResult, category: str | None = None) -> dict[str, Any]:
    rule_index: dict[str, int] = {}
    rules: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    seen: Counter[str] = Counter()
    for f in result.findings:
        if f.rule_id not in rule_index:
            rule_index[f.rule_id] = len(rules)
            rules.append(_rule(f.rule_id, f, result.rules_dir))
        results.append(_result(result, f, rule_index[f.rule_id], seen))
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
                "automationDetails": {"id": automation_id(category or default_category(result))},
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


def with_category(sarif: str, category: str) -> str:
    """A stored SARIF document under another ``automationDetails.id`` (pre-flight uploads)."""
    data = json.loads(sarif)
    for run in data.get("runs", []):
        run["automationDetails"] = {"id": automation_id(category)}
    return json.dumps(data, indent=2) + "\n"


def render_sarif(result: ScanResult, category: str | None = None) -> str:
    return json.dumps(sarif_dict(result, category), indent=2) + "\n"
