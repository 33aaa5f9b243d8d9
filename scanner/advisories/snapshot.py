"""The offline snapshot shipped in rules/advisories/: facts only, licences kept, dated."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from scanner.advisories.feeds import Feed, _osv_documents, read_feed
from scanner.advisories.store import AdvisoryStore

SNAPSHOT_DIR = "advisories"
MANIFEST = "sources.json"
# OSV fields that are facts; `summary` and `details` are prose and stay behind.
OSV_FACTS = ("id", "aliases", "modified", "published", "withdrawn", "severity", "database_specific")
RETIRE_PROSE = ("summary",)


def build_snapshot(shared: Path, out: Path) -> dict[str, Any]:
    """Write the snapshot from a copy of the PyPA advisory database and RetireJS files."""
    out.mkdir(parents=True, exist_ok=True)
    pypa = shared / "pypa-advisory-database"
    retire = shared / "retirejs"
    lines = [
        json.dumps(_osv_facts(doc), sort_keys=True, default=str)
        for doc in _osv_documents(pypa / "vulns")
        if not doc.get("withdrawn")
    ]
    (out / "osv-pypa.jsonl").write_text("\n".join(sorted(lines)) + "\n", encoding="utf-8")
    for name in ("jsrepository-v4.json", "npmrepository.json", "jsrepository-backdoored.json"):
        data = json.loads((retire / name).read_text(encoding="utf-8"))
        (out / f"retirejs-{name}").write_text(
            json.dumps(_strip(data), indent=1, sort_keys=True) + "\n"
        )
    shutil.copyfile(pypa / "LICENSE", out / "LICENSE-pypa-advisory-database")
    shutil.copyfile(retire / "LICENSE.md", out / "LICENSE-retirejs.md")
    shutil.copyfile(retire / "NOTICE.md", out / "NOTICE-retirejs.md")
    sources = {
        "osv-pypa.jsonl": {
            "source": "PyPA advisory database (OSV)",
            "licence": "CC-BY-4.0",
            "snapshot": "2024-10-10",
            "commit": "3ccb612",
        },
        "retirejs-jsrepository-v4.json": {
            "source": "RetireJS",
            "licence": "Apache-2.0",
            "snapshot": "2026-08-22",
            "commit": "fd8df0d",
        },
        "retirejs-npmrepository.json": {
            "source": "RetireJS",
            "licence": "Apache-2.0",
            "snapshot": "2026-08-22",
            "commit": "fd8df0d",
        },
        "retirejs-jsrepository-backdoored.json": {
            "source": "RetireJS",
            "licence": "Apache-2.0",
            "snapshot": "2026-08-22",
            "commit": "fd8df0d",
        },
    }
    (out / MANIFEST).write_text(json.dumps(sources, indent=2) + "\n", encoding="utf-8")
    return sources


def _osv_facts(doc: dict[str, Any]) -> dict[str, Any]:
    facts = {k: doc[k] for k in OSV_FACTS if k in doc}
    facts["references"] = [{"url": r["url"]} for r in doc.get("references", []) if r.get("url")]
    facts["affected"] = [
        {k: a[k] for k in ("package", "ranges", "versions") if k in a}
        for a in doc.get("affected", [])
    ]
    return facts


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in RETIRE_PROSE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def snapshot_feeds(rules_dir: Path) -> list[Feed]:
    """The shipped snapshot as feeds, each carrying its snapshot date and licence."""
    base = rules_dir / SNAPSHOT_DIR
    sources = json.loads((base / MANIFEST).read_text(encoding="utf-8"))
    feeds = []
    for filename, meta in sources.items():
        feed = read_feed(base / filename)
        feed.name = f"snapshot:{filename}"
        feed.snapshot = meta["snapshot"]
        feed.licence = f"{meta['source']}, {meta['licence']}"
        feeds.append(feed)
    return feeds


def ensure_snapshot(store: AdvisoryStore, rules_dir: Path) -> bool:
    """Import the shipped snapshot into an empty database; True when it did."""
    if not store.is_empty():
        return False
    with store.importing():
        if not store.is_empty():  # another process imported it while we waited
            return False
        for feed in snapshot_feeds(rules_dir):
            store.import_feed(feed)
    return True
