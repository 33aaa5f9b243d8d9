"""Rule-level text for reports: what a rule looks for, the same for every result of it.

Read from the rule data where there is some (JavaScript rules, YARA meta, secret
patterns); built-in rules (archive, manifest, runtime, dependencies...) are named from
their id and category. Never a result's message, which carries counts and URLs.
"""

from __future__ import annotations

import functools
import re
import tomllib
from pathlib import Path

from scanner.findings import Category

_YARA_DESCRIPTION = re.compile(r'^\s*description\s*=\s*"((?:[^"\\]|\\.)*)"', re.M)

CATEGORY_TEXT = {
    Category.MALWARE: "malicious content matched by a signature",
    Category.EXFILTRATION: "data sent to an origin the manifest does not declare",
    Category.CREDENTIAL_ACCESS: "reads of credentials: cookies, tokens, password or payment fields",
    Category.OBFUSCATION: "code that hides what it does",
    Category.DYNAMIC_CODE: "code built or fetched at run time",
    Category.CRYPTOMINING: "cryptocurrency mining in the user's browser",
    Category.UNDECLARED_CAPABILITY: "use of a capability the manifest does not declare",
    Category.OVERBROAD_CAPABILITY: "a manifest grant broader than a plugin needs",
    Category.DOM_ESCAPE: "changes outside the container the plugin was given",
    Category.VULNERABLE_DEPENDENCY: "a dependency with a published vulnerability",
    Category.SUSPICIOUS_DEPENDENCY: "a risky dependency: install scripts, typosquats, odd sources",
    Category.BACKEND_CODE: "a risky construct in the Python backend",
    Category.SECRETS: "a hardcoded credential",
    Category.ARCHIVE: "an archive that is unsafe or ambiguous to unpack",
    Category.MANIFEST: "a plugin.json that breaks the bundle contract",
    Category.COVERAGE: "content that could not be scanned",
    Category.LICENSE: "a licence question for a person",
    Category.SUPPLY_CHAIN: "a published library changed inside the bundle",
}


@functools.cache
def data_rules(rules_dir: Path) -> dict[str, str]:
    """Descriptions of the rules defined as data under ``rules_dir``, by rule id."""
    out: dict[str, str] = {}
    for path in sorted((rules_dir / "js").glob("*.toml")):
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
            out[str(data["id"])] = f"{data['title']}: {data['message']}"
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            continue  # the stage reports a broken rule; a report still renders
    for path in sorted((rules_dir / "yara").glob("*.yar")):
        match = _YARA_DESCRIPTION.search(path.read_text(encoding="utf-8", errors="replace"))
        if match:
            out[path.stem] = match.group(1)
    try:
        secrets = tomllib.loads((rules_dir / "secrets.toml").read_text(encoding="utf-8"))
        for p in secrets.get("pattern", []):
            out[str(p["id"])] = f"hardcoded {p['title']}"
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        pass
    return out


def rule_description(rule_id: str, category: Category, rules_dir: Path) -> str:
    """One sentence about the rule, never about one of its results."""
    known = data_rules(rules_dir).get(rule_id)
    if known:
        return known[:1].upper() + known[1:]
    if rule_id.startswith("vuln:"):
        return f"Known vulnerability {rule_id.removeprefix('vuln:')}: {CATEGORY_TEXT[category]}."
    words = rule_id.replace(":", " ").replace("_", " ").replace("-", " ")
    return f"{words[:1].upper()}{words[1:]}: {CATEGORY_TEXT[category]}."
