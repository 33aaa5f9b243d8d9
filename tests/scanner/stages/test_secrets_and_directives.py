"""Hardcoded credentials are found and redacted; scanner directives are ignored and reported."""

from __future__ import annotations

import re._parser as sre_parse  # the parser behind re.compile, to inspect patterns
from pathlib import Path

import pytest

from scanner.findings import Category, Severity
from scanner.stages.directives import DirectivesStage
from scanner.stages.secrets import SecretPattern, SecretsStage, load_patterns
from scanner.workspace import Workspace
from tests.conftest import workspace_of
from tests.paths import PROJECT_ROOT

SECRETS = SecretsStage(load_patterns(PROJECT_ROOT / "rules" / "secrets.toml"))
# Assembled at run time so no scanner mistakes this file for a leak.
AWS = "AKIA" + "IOSFODNN7EXAMPLE"
GITHUB = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
TELEGRAM = "123456789:" + "AA" + "F1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q"
PEM = "-----BEGIN OPENSSH " + "PRIVATE KEY-----\\n" + "b3BlbnNzaC1rZXktdjEAAAAA" * 4


def _ws(tmp_path: Path, files: dict[str, bytes]) -> Workspace:
    return workspace_of(tmp_path / "b", dict(files))


@pytest.mark.parametrize(
    ("secret", "rule"),
    [
        (AWS, "secret-aws-access-key"),
        (GITHUB, "secret-github-token"),
        (TELEGRAM, "secret-telegram-bot-token"),
        (PEM, "secret-private-key"),
    ],
)
def test_finds_and_redacts_secrets(tmp_path: Path, secret: str, rule: str) -> None:
    result = SECRETS.run(
        _ws(tmp_path, {"dist/a.js": f"// config\nconst key = '{secret}';\n".encode()})
    )
    [finding] = result.findings
    assert (finding.rule_id, finding.category, finding.line) == (rule, Category.SECRETS, 2)
    assert finding.evidence is not None and secret not in finding.evidence


def test_public_keys_and_lookalikes_are_not_secrets(tmp_path: Path) -> None:
    text = (
        b"var pk = 'pk_live_" + b"a" * 24 + b"'; var id = 'AKIA-not-a-key'; var sha = 'ghp_short';"
    )
    assert SECRETS.run(_ws(tmp_path, {"a.js": text})).findings == []


def test_a_pem_header_without_key_material_is_a_template_not_a_secret(tmp_path: Path) -> None:
    """jsencrypt, forge: the header wraps a key the caller supplies."""
    text = (
        b'getPrivateKey=function(){var t="-----BEGIN RSA PRIVATE KEY-----\\n";'
        b'return t+=wrap(this.b64())+"\\n",t+="-----END RSA PRIVATE KEY-----"}'
    )
    assert SECRETS.run(_ws(tmp_path, {"a.js": text})).findings == []


def test_binary_files_are_left_to_yara_and_clamav(tmp_path: Path) -> None:
    result = SECRETS.run(_ws(tmp_path, {"img.png": b"\x89PNG\x00" + AWS.encode()}))
    assert result.findings == [] and result.coverage.scanned == []


def test_scanner_config_and_pragmas_are_reported(tmp_path: Path) -> None:
    ws = _ws(
        tmp_path,
        {
            ".gatehouseignore": b"dist/*\n",
            "dist/a.js": b"var x = 1; // gatehouse-ignore: js-eval\n",
            "backend/app.py": b"eval(x)  # nosec\n",
        },
    )
    findings = {(f.rule_id, f.path, f.severity) for f in DirectivesStage().run(ws).findings}
    assert ("scanner-config-in-bundle", ".gatehouseignore", Severity.MEDIUM) in findings
    assert ("scanner-pragma-in-bundle", "dist/a.js", Severity.LOW) in findings
    assert ("scanner-pragma-in-bundle", "backend/app.py", Severity.INFO) in findings


@pytest.mark.parametrize("pattern", SECRETS.patterns, ids=lambda p: p.id)
def test_every_pattern_starts_with_a_literal(pattern: SecretPattern) -> None:
    """A leading \\b, class or lookbehind makes re try every position: 20-30x slower."""
    first = sre_parse.parse(pattern.regex.pattern.decode())[0]
    while first[0] is sre_parse.SUBPATTERN:  # a named group around the secret
        first = first[1][3][0]
    if first[0] is sre_parse.BRANCH:
        firsts = [branch[0][0] for branch in first[1][1]]
    else:
        firsts = [first[0]]
    assert all(op is sre_parse.LITERAL for op in firsts), pattern.regex.pattern
