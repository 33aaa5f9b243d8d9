"""Allowlist entries as the policy applies them: by rule, rule version and file bytes."""

from __future__ import annotations

from pathlib import Path

from scanner.findings import Category, Finding, Severity, StageResult
from scanner.policy import Policy, Verdict, decide
from scanner.rulebook import load_rulebook, rule_version
from scanner.suppressions import Suppression, apply_suppressions, observation_digest
from tests.paths import PROJECT_ROOT

RULES = PROJECT_ROOT / "rules"


def _result(*findings: Finding) -> StageResult:
    return StageResult("js-static", 1, findings=list(findings))


def _eval(path: str = "dist/a.js") -> Finding:
    return Finding("js-static", "js-eval", Category.DYNAMIC_CODE, Severity.MEDIUM, "eval", path, 3)


def test_a_rule_defined_as_data_has_a_version_that_follows_its_definition(tmp_path: Path) -> None:
    book = load_rulebook(RULES)
    assert book["js-eval"].title and book["js_eval_packer"].source == "yara/js_eval_packer.yar"
    version = rule_version("js-eval", "js-static", 1, book)
    assert version.startswith("js-static@1:")
    assert rule_version("js-eval", "js-static", 2, book) != version  # the stage changed
    assert rule_version("runtime-exfiltration", "runtime", 1, book) == "runtime@1"
    changed = tmp_path / "rules"
    (changed / "js").mkdir(parents=True)
    text = (RULES / "js" / "js-eval.toml").read_text(encoding="utf-8")
    (changed / "js" / "js-eval.toml").write_text(text + "\n# tuned\n", encoding="utf-8")
    assert rule_version("js-eval", "js-static", 1, load_rulebook(changed)) != version


def test_suppression_needs_the_same_rule_version_and_file_bytes() -> None:
    book = load_rulebook(RULES)
    version = rule_version("js-eval", "js-static", 1, book)
    hashes = {"dist/a.js": "a" * 64, "dist/b.js": "b" * 64}
    entries = [
        Suppression("allowlist:1", "js-eval", version, "a" * 64),
        Suppression("allowlist:2", "js-eval", "js-static@1:000000000000", None),  # void
    ]
    (result,) = apply_suppressions([_result(_eval(), _eval("dist/b.js"))], entries, hashes, book)
    assert [f.suppressed_by for f in result.findings] == ["allowlist:1", None]


def test_suppressed_findings_are_reported_and_never_counted_and_coverage_never_suppressed() -> None:
    book = load_rulebook(RULES)
    policy = Policy.load(RULES / "policy.toml")
    gap = Finding("js-static", "js-eval", Category.COVERAGE, Severity.MEDIUM, "not parsed", "x.js")
    entries = [Suppression("allowlist:1", "js-eval", rule_version("js-eval", "js-static", 1, book))]
    (result,) = apply_suppressions([_result(_eval(), gap)], entries, {}, book)
    assert [f.suppressed_by for f in result.findings] == ["allowlist:1", None]
    assert result.findings[0].to_dict()["suppressed_by"] == "allowlist:1"
    decision = decide(result.findings, [result], policy)
    assert decision.verdict is Verdict.REVIEW  # the coverage gap still counts
    assert all(r.text.split(": ", 1)[-1].split(" (")[0] != "eval" for r in decision.reasons)
    only_eval = apply_suppressions([_result(_eval())], entries, {}, book)
    assert decide(only_eval[0].findings, only_eval, policy).verdict is Verdict.PASS


def _sent(what: str, where: str, severity: Severity) -> Finding:
    return Finding(
        "runtime",
        "runtime-exfiltration",
        Category.EXFILTRATION,
        severity,
        f"sent {what} to {where}",
        None,
        evidence=f"{where}/collect?c=canary-{what}",
    )


def test_an_observation_is_bound_by_what_was_sent_where_not_by_the_rule_alone() -> None:
    book = load_rulebook(RULES)
    version = rule_version("runtime-exfiltration", "runtime", 1, book)
    seen = _sent("typed text", "https://stats.example", Severity.HIGH)
    entry = Suppression(
        "allowlist:1", seen.rule_id, version, observation_digest(seen.rule_id, seen.message)
    )
    again = _sent("typed text", "https://stats.example", Severity.HIGH)
    stolen = _sent("the session cookie", "https://evil.example", Severity.HIGH)
    (result,) = apply_suppressions(
        [StageResult("runtime", 1, findings=[again, stolen])], [entry], {}, book
    )
    assert [f.suppressed_by for f in result.findings] == ["allowlist:1", None]


def test_an_unbound_entry_never_silences_a_critical_finding() -> None:
    book = load_rulebook(RULES)
    version = rule_version("runtime-exfiltration", "runtime", 1, book)
    entry = Suppression("allowlist:1", "runtime-exfiltration", version, None)
    high = _sent("typed text", "https://stats.example", Severity.HIGH)
    critical = _sent("the session cookie", "https://evil.example", Severity.CRITICAL)
    (result,) = apply_suppressions(
        [StageResult("runtime", 1, findings=[high, critical])], [entry], {}, book
    )
    assert [f.suppressed_by for f in result.findings] == ["allowlist:1", None]
