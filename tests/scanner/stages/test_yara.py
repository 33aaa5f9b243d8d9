"""Every YARA rule: one rule per file, valid meta, a positive and a benign sample."""

from __future__ import annotations

from pathlib import Path

import pytest

from scanner.findings import Category, RuleState
from scanner.stages.yara import YaraRuleError, YaraStage, load_ruleset, read_meta
from scanner.workspace import Workspace
from tests.conftest import FIXTURES
from tests.paths import PROJECT_ROOT

RULES_DIR = PROJECT_ROOT / "rules" / "yara"
RULE_IDS = sorted(p.stem for p in RULES_DIR.glob("*.yar"))
STAGE = YaraStage(load_ruleset(RULES_DIR))


def _rule_ids_on(sample: Path, tmp_path: Path) -> set[str]:
    root = tmp_path / "bundle"
    root.mkdir()
    (root / sample.name).write_bytes(sample.read_bytes())
    result = STAGE.run(Workspace.from_directory(root))
    return {f.rule_id for f in result.findings}


def test_every_rule_has_samples() -> None:
    assert sorted(p.name for p in (FIXTURES / "yara").iterdir()) == RULE_IDS


@pytest.mark.parametrize("rule_id", RULE_IDS)
def test_rule_meta_is_valid(rule_id: str) -> None:
    meta = read_meta(RULES_DIR / f"{rule_id}.yar")
    assert meta.id == rule_id and isinstance(meta.category, Category) and meta.description


@pytest.mark.parametrize("rule_id", RULE_IDS)
def test_rule_matches_its_positive_sample(rule_id: str, tmp_path: Path) -> None:
    (sample,) = (FIXTURES / "yara" / rule_id).glob("match.*")
    assert rule_id in _rule_ids_on(sample, tmp_path)


@pytest.mark.parametrize("rule_id", RULE_IDS)
def test_rule_stays_quiet_on_its_benign_sample(rule_id: str, tmp_path: Path) -> None:
    (sample,) = (FIXTURES / "yara" / rule_id).glob("benign.*")
    assert rule_id not in _rule_ids_on(sample, tmp_path)


def test_evaluation_rules_are_marked(tmp_path: Path) -> None:
    sample = FIXTURES / "yara" / "skimmer_payment_fields" / "match.js"
    root = tmp_path / "b"
    root.mkdir()
    (root / "x.js").write_bytes(sample.read_bytes())
    findings = STAGE.run(Workspace.from_directory(root)).findings
    assert {f.state for f in findings if f.rule_id == "skimmer_payment_fields"} == {
        RuleState.EVALUATION
    }


def test_a_file_with_two_rules_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "two.yar"
    bad.write_text("rule two { condition: true }\nrule other { condition: true }\n")
    with pytest.raises(YaraRuleError, match="exactly one rule"):
        read_meta(bad)


def test_missing_meta_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "nometa.yar"
    bad.write_text("rule nometa { condition: true }\n")
    with pytest.raises(YaraRuleError, match="meta"):
        read_meta(bad)
