"""Every JS rule has a positive and a benign sample; one parametrized test covers them all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scanner.findings import Severity
from scanner.js.engine import analyze_source
from scanner.manifest import Capabilities, Origin
from scanner.stages.js_static import compiled_rules
from tests.conftest import FIXTURES
from tests.paths import PROJECT_ROOT

RULES_DIR = PROJECT_ROOT / "rules" / "js"
RULE_IDS = sorted(p.stem for p in RULES_DIR.glob("*.toml"))


def _capabilities(sample_dir: Path) -> Capabilities:
    path = sample_dir / "capabilities.json"
    if not path.exists():
        return Capabilities()
    data = json.loads(path.read_text())
    origins = tuple(
        Origin("https", o.removeprefix("https://"), None) for o in data.get("network", [])
    )
    return Capabilities(network=origins)


def _hits(rule_id: str, sample: str) -> list[str]:
    sample_dir = FIXTURES / "js" / rule_id
    source = (sample_dir / sample).read_bytes()
    analysis = analyze_source(sample, source, compiled_rules(RULES_DIR), _capabilities(sample_dir))
    return [
        f.message for f in analysis.findings if f.rule_id == rule_id and f.severity > Severity.INFO
    ]


def test_every_rule_has_samples() -> None:
    assert sorted(p.name for p in (FIXTURES / "js").iterdir()) == RULE_IDS


@pytest.mark.parametrize("rule_id", RULE_IDS)
def test_rule_matches_its_positive_sample(rule_id: str) -> None:
    assert _hits(rule_id, "match.js"), f"{rule_id} did not fire on its positive sample"


@pytest.mark.parametrize("rule_id", RULE_IDS)
def test_rule_stays_quiet_on_its_benign_sample(rule_id: str) -> None:
    assert _hits(rule_id, "benign.js") == []


@pytest.mark.parametrize("rule_id", RULE_IDS)
def test_rule_query_compiles(rule_id: str) -> None:
    """Queries compile lazily in production; a broken one must fail here first."""
    compiled = next(c for c in compiled_rules(RULES_DIR).rules if c.rule.id == rule_id)
    assert compiled.query.pattern_count >= 1
