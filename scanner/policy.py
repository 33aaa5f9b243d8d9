"""The verdict: a pure function of findings, stage statuses and the policy file."""

from __future__ import annotations

import enum
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scanner.findings import Category, Finding, RuleState, Severity, StageResult, StageStatus


class PolicyError(ValueError):
    """The policy file is malformed; a scan cannot be judged without it."""


class Verdict(enum.IntEnum):
    PASS = 0
    REVIEW = 1
    REJECT = 2

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Verdict:
        try:
            return cls[str(text).upper()]
        except KeyError:
            raise PolicyError(f"unknown action {text!r} (pass, review or reject)") from None


@dataclass(frozen=True)
class KillSwitch:
    """Which findings of a rescan withdraw a version already on the CDN without waiting
    for a person (the service yanks it and pages the queue). Off unless the policy says."""

    categories: frozenset[Category] = frozenset()
    severity: Severity = Severity.CRITICAL

    def triggers(self, category: str, severity: str) -> bool:
        try:
            cat, sev = Category(category), Severity.parse(severity)
        except ValueError:
            return False
        return cat in self.categories and sev >= self.severity


@dataclass(frozen=True)
class Policy:
    severity: Mapping[Severity, Verdict]
    stage_status: Mapping[StageStatus, Verdict]
    category_min: Mapping[Category, Verdict] = field(default_factory=dict)
    category_max: Mapping[Category, Verdict] = field(default_factory=dict)
    rules: Mapping[str, Verdict] = field(default_factory=dict)
    kill_switch: KillSwitch = field(default_factory=KillSwitch)

    @classmethod
    def load(cls, path: Path) -> Policy:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise PolicyError(f"cannot read policy {path}: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Policy:
        try:
            severity = {Severity.parse(k): Verdict.parse(v) for k, v in data["severity"].items()}
            statuses = {StageStatus(k): Verdict.parse(v) for k, v in data["stage_status"].items()}
            cmin, cmax = {}, {}
            for name, spec in data.get("category", {}).items():
                cat = Category(name)
                if "min" in spec:
                    cmin[cat] = Verdict.parse(spec["min"])
                if "max" in spec:
                    cmax[cat] = Verdict.parse(spec["max"])
            rules = {
                rid: Verdict.parse(spec["action"]) for rid, spec in data.get("rule", {}).items()
            }
            kill = _kill_switch(data.get("kill_switch", {}))
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise PolicyError(f"malformed policy: {exc}") from None
        missing = set(Severity) - set(severity)
        if missing:
            raise PolicyError(
                f"policy has no action for severities {sorted(s.label for s in missing)}"
            )
        for status in (StageStatus.ERROR, StageStatus.TIMEOUT, StageStatus.SKIPPED):
            if statuses.get(status, Verdict.PASS) is Verdict.PASS:
                # Fail closed is not a preference: a policy cannot switch it off.
                raise PolicyError(f"stage status {status.value!r} must not map to pass")
        if cmin.get(Category.COVERAGE, Verdict.PASS) is Verdict.PASS:
            raise PolicyError("category coverage needs min = review or reject")
        return cls(severity, statuses, cmin, cmax, rules, kill)


def _kill_switch(spec: Mapping[str, Any]) -> KillSwitch:
    if not spec.get("enabled", False):
        return KillSwitch()
    return KillSwitch(
        frozenset(Category(c) for c in spec["categories"]),
        Severity.parse(spec.get("severity", "critical")),
    )


@dataclass(frozen=True)
class Reason:
    action: Verdict
    text: str
    rule_id: str | None = None
    stage: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action.label,
            "text": self.text,
            "rule_id": self.rule_id,
            "stage": self.stage,
        }


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reasons: tuple[Reason, ...]
    risk_score: int


SCORE = {
    Severity.INFO: 0,
    Severity.LOW: 2,
    Severity.MEDIUM: 10,
    Severity.HIGH: 30,
    Severity.CRITICAL: 60,
}


def action_for(finding: Finding, policy: Policy) -> Verdict:
    if finding.rule_id in policy.rules:
        return policy.rules[finding.rule_id]
    action = policy.severity[finding.severity]
    action = max(action, policy.category_min.get(finding.category, Verdict.PASS))
    return min(action, policy.category_max.get(finding.category, Verdict.REJECT))


def decide(findings: Iterable[Finding], stages: Sequence[StageResult], policy: Policy) -> Decision:
    """Return the verdict with every reason that reached review or reject, worst first."""
    reasons: list[Reason] = []
    score = 0
    for f in findings:
        if f.state is not RuleState.ENABLED or f.suppressed_by or f.library:
            continue
        score += SCORE[f.severity]
        action = action_for(f, policy)
        if action > Verdict.PASS:
            where = f" ({f.path}{':' + str(f.line) if f.line else ''})" if f.path else ""
            reasons.append(
                Reason(
                    action,
                    f"{f.severity.label} {f.category.value}: {f.message}{where}",
                    f.rule_id,
                    f.stage,
                )
            )
    for st in stages:
        if st.status is not StageStatus.OK:
            action = policy.stage_status[st.status]
            reasons.append(
                Reason(
                    action,
                    f"stage {st.name} {st.status.value}: {st.error or 'no detail'}",
                    stage=st.name,
                )
            )
    reasons.sort(key=lambda r: -r.action)
    verdict = max((r.action for r in reasons), default=Verdict.PASS)
    if verdict is Verdict.PASS:
        reasons.append(Reason(Verdict.PASS, "every stage completed and no finding reached review"))
    return Decision(verdict, tuple(reasons), min(score, 100))
