"""decide() is pure: findings and stage statuses in, verdict and reasons out."""

from __future__ import annotations

from typing import Any

import pytest

from scanner.findings import Category, Finding, RuleState, Severity, StageResult, StageStatus
from scanner.policy import Policy, PolicyError, Verdict, decide
from tests.paths import PROJECT_ROOT

POLICY = Policy.load(PROJECT_ROOT / "rules" / "policy.toml")


def _f(
    severity: Severity, category: Category = Category.DYNAMIC_CODE, rule: str = "r", **kw: Any
) -> Finding:
    return Finding("s", rule, category, severity, "m", **kw)


def _ok() -> list[StageResult]:
    return [StageResult("a", 1)]


def test_clean_scan_passes_with_a_reason() -> None:
    d = decide([], _ok(), POLICY)
    assert d.verdict is Verdict.PASS and d.reasons and d.risk_score == 0


@pytest.mark.parametrize(
    ("severity", "verdict"),
    [
        (Severity.INFO, Verdict.PASS),
        (Severity.LOW, Verdict.PASS),
        (Severity.MEDIUM, Verdict.REVIEW),
        (Severity.HIGH, Verdict.REJECT),
        (Severity.CRITICAL, Verdict.REJECT),
    ],
)
def test_severity_maps_to_action(severity: Severity, verdict: Verdict) -> None:
    assert decide([_f(severity)], _ok(), POLICY).verdict is verdict


def test_worst_action_wins_and_reasons_are_sorted() -> None:
    d = decide([_f(Severity.MEDIUM), _f(Severity.CRITICAL, rule="worst")], _ok(), POLICY)
    assert d.verdict is Verdict.REJECT
    assert d.reasons[0].rule_id == "worst"


@pytest.mark.parametrize("status", [StageStatus.ERROR, StageStatus.TIMEOUT, StageStatus.SKIPPED])
def test_a_stage_that_did_not_finish_cannot_pass(status: StageStatus) -> None:
    d = decide([], [StageResult("antivirus", 1, status, error="boom")], POLICY)
    assert d.verdict >= Verdict.REVIEW
    assert "antivirus" in d.reasons[0].text


def test_coverage_gap_cannot_pass_even_when_low() -> None:
    assert decide([_f(Severity.LOW, Category.COVERAGE)], _ok(), POLICY).verdict is Verdict.REVIEW


def test_vulnerable_dependency_is_capped_at_review() -> None:
    d = decide([_f(Severity.CRITICAL, Category.VULNERABLE_DEPENDENCY)], _ok(), POLICY)
    assert d.verdict is Verdict.REVIEW


def test_evaluation_rules_record_but_never_decide() -> None:
    d = decide([_f(Severity.CRITICAL, state=RuleState.EVALUATION)], _ok(), POLICY)
    assert d.verdict is Verdict.PASS and d.risk_score == 0


def test_rule_override_wins() -> None:
    policy = Policy.from_dict({**_base(), "rule": {"noisy": {"action": "pass"}}})
    assert decide([_f(Severity.HIGH, rule="noisy")], _ok(), policy).verdict is Verdict.PASS


def test_policy_cannot_switch_off_fail_closed() -> None:
    with pytest.raises(PolicyError, match="must not map to pass"):
        Policy.from_dict(
            {**_base(), "stage_status": {"error": "pass", "timeout": "review", "skipped": "review"}}
        )


def test_policy_must_keep_coverage_gaps_out_of_pass() -> None:
    with pytest.raises(PolicyError, match="coverage"):
        Policy.from_dict({**_base(), "category": {}})


def test_malformed_policy_is_a_clear_error() -> None:
    with pytest.raises(PolicyError):
        Policy.from_dict({"severity": {"info": "maybe"}})


def _base() -> dict[str, Any]:
    return {
        "severity": {
            "info": "pass",
            "low": "pass",
            "medium": "review",
            "high": "reject",
            "critical": "reject",
        },
        "stage_status": {"error": "review", "timeout": "review", "skipped": "review"},
        "category": {"coverage": {"min": "review"}},
    }


def test_the_kill_switch_is_the_policys_and_off_unless_it_says() -> None:
    ks = POLICY.kill_switch
    assert ks.triggers("malware", "critical") and ks.triggers("exfiltration", "critical")
    assert not ks.triggers("malware", "high") and not ks.triggers("obfuscation", "critical")
    assert not ks.triggers("no-such-category", "critical")
    base = {
        "severity": {s.label: "pass" for s in Severity},
        "stage_status": {"error": "review", "timeout": "review", "skipped": "review"},
        "category": {"coverage": {"min": "review"}},
    }
    assert not Policy.from_dict(base).kill_switch.triggers("malware", "critical")
    off = Policy.from_dict({**base, "kill_switch": {"enabled": False, "categories": ["malware"]}})
    assert not off.kill_switch.triggers("malware", "critical")
    with pytest.raises(PolicyError):
        Policy.from_dict({**base, "kill_switch": {"enabled": True, "categories": ["nope"]}})
