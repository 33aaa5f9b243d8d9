"""Hardcoded credentials in any text file of the bundle."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

from scanner.config import Settings
from scanner.findings import Category, Finding, Severity, StageResult
from scanner.regex import Regex, RegexRefusedError, compile_linear
from scanner.workspace import Workspace

MAX_MATCHES_PER_PATTERN = 10
# A pattern that must see the character after a secret (RE2 has no lookahead) names the
# secret itself with this group, so the evidence is the secret alone.
SECRET_GROUP = "secret"  # noqa: S105 - a regex group name


class SecretsRuleError(ValueError):
    """rules/secrets.toml is malformed."""


@dataclass(frozen=True)
class SecretPattern:
    id: str
    title: str
    regex: Regex[bytes]
    severity: Severity


@lru_cache(maxsize=4)
def load_patterns(path: Path) -> tuple[SecretPattern, ...]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        return tuple(_pattern(p) for p in data["pattern"])
    except (OSError, tomllib.TOMLDecodeError, KeyError, ValueError) as exc:
        raise SecretsRuleError(f"{path}: {exc}") from None


def _pattern(p: dict[str, str]) -> SecretPattern:
    try:
        regex = compile_linear(
            p["regex"].encode(),
            rule=f"secrets.toml:{p['id']}",
            backtracking_safe_because=p.get("backtracking_safe"),
        )
    except RegexRefusedError as exc:
        raise SecretsRuleError(str(exc)) from None
    return SecretPattern(p["id"], p["title"], regex, Severity.parse(p["severity"]))


def redact(secret: bytes) -> str:
    text = secret.decode("utf-8", "replace")
    return f"{text[:6]}…({len(text)} characters)"


class SecretsStage:
    name: ClassVar[str] = "secrets"
    version: ClassVar[int] = 2  # 2: RE2, linear time
    # CPU-bound: a worker process that can be killed; shards of files run side by side.
    runs_in_process: ClassVar[bool] = True
    per_file: ClassVar[bool] = True

    def __init__(self, patterns: tuple[SecretPattern, ...]) -> None:
        self.patterns = patterns

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretsStage:
        return cls(load_patterns(settings.rules_dir / "secrets.toml"))

    def run(self, workspace: Workspace) -> StageResult:
        result = StageResult(self.name, self.version)
        for f in workspace.files:
            if not workspace.is_text(f.path):
                continue  # binary content is YARA's and ClamAV's
            data = workspace.read_bytes(f.path)
            result.coverage.scanned.append(f.path)
            for pattern in self.patterns:
                group = pattern.regex.groupindex.get(SECRET_GROUP, 0)
                for n, m in enumerate(pattern.regex.finditer(data)):
                    if n >= MAX_MATCHES_PER_PATTERN:
                        break
                    result.findings.append(
                        Finding(
                            self.name,
                            pattern.id,
                            Category.SECRETS,
                            pattern.severity,
                            f"hardcoded {pattern.title}",
                            path=f.path,
                            line=data.count(b"\n", 0, m.start()) + 1,
                            evidence=redact(m.group(group)),
                        )
                    )
        return result
