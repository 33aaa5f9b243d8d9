"""What each rule is, for people, and which version of it made a finding.

A rule's version is its stage's version plus a digest of the file that defines it (a JS
rule's TOML, a YARA rule's .yar, a secrets pattern's table): an allowlist entry made
against one version is void once the rule or the stage that runs it changes.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

YARA_DESCRIPTION_RE = re.compile(r'description\s*=\s*"((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class RuleInfo:
    rule_id: str
    title: str
    explanation: str
    # Relative path of the file that defines the rule, and a digest of its definition.
    source: str
    digest: str


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


@lru_cache(maxsize=8)
def load_rulebook(rules_dir: Path) -> dict[str, RuleInfo]:
    """Every rule defined as data under ``rules_dir``, by rule id."""
    book: dict[str, RuleInfo] = {}
    for path in sorted((rules_dir / "js").glob("*.toml")):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        rid = str(data.get("id", path.stem))
        book[rid] = RuleInfo(
            rid,
            str(data.get("title", rid)),
            str(data.get("message", "")),
            f"js/{path.name}",
            _digest(path.read_bytes()),
        )
    for path in sorted((rules_dir / "yara").glob("*.yar")):
        text = path.read_text(encoding="utf-8")
        found = YARA_DESCRIPTION_RE.search(text)
        description = found.group(1) if found else path.stem
        book[path.stem] = RuleInfo(
            path.stem, description, description, f"yara/{path.name}", _digest(path.read_bytes())
        )
    secrets = rules_dir / "secrets.toml"
    if secrets.is_file():
        for pattern in tomllib.loads(secrets.read_text(encoding="utf-8")).get("pattern", []):
            rid = str(pattern["id"])
            canonical = json.dumps(pattern, sort_keys=True).encode()
            title = str(pattern.get("title", rid))
            book[rid] = RuleInfo(
                rid, title, f"a hardcoded {title}", "secrets.toml", _digest(canonical)
            )
    return book


def rule_version(rule_id: str, stage: str, stage_version: int, book: dict[str, RuleInfo]) -> str:
    """``stage@version`` and, for rules defined as data, the digest of the definition."""
    info = book.get(rule_id)
    base = f"{stage}@{stage_version}"
    return f"{base}:{info.digest}" if info is not None else base
