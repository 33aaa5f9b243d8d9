"""The signed manifest of a promoted version: every file with its size, content type and
SRI, the entry point, the derived CSP and the scan, rules and decision behind it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from scanner.csp import sri
from service.cdn.paths import content_type, version_prefix
from service.cdn.signing import MANIFEST_TYPE, Signer
from service.models import iso

SCHEMA = "gatehouse-manifest/1"


@dataclass(frozen=True)
class PublishedFile:
    path: str
    size: int
    sha256: str
    integrity: str  # SRI, sha384
    content_type: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PublishedFile:
        return cls(
            str(data["path"]),
            int(data["size"]),
            str(data["sha256"]),
            str(data["integrity"]),
            str(data["content_type"]),
        )


def describe(path: str, data: bytes) -> PublishedFile:
    return PublishedFile(
        path, len(data), hashlib.sha256(data).hexdigest(), sri(data), content_type(path)
    )


@dataclass(frozen=True)
class ManifestFacts:
    """Everything a manifest says besides its files."""

    plugin: str
    version: str
    entry: str | None
    csp: str | None
    scan_id: str
    ruleset: str | None
    advisories: str | None
    decision_id: int
    tree_sha256: str
    repack_sha256: str
    published_at: datetime


def payload(
    facts: ManifestFacts,
    files: list[PublishedFile],
    issued_at: datetime,
    yanked: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "plugin": facts.plugin,
        "version": facts.version,
        # Relative to the CDN's base URL: the same document whatever host serves it.
        "path": version_prefix(facts.plugin, facts.version) + "/",
        "entry": facts.entry,
        "files": [f.to_dict() for f in sorted(files, key=lambda f: f.path)],
        "csp": facts.csp,
        "scan_id": facts.scan_id,
        "ruleset": facts.ruleset,
        "advisories": facts.advisories,
        "decision_id": facts.decision_id,
        "tree_sha256": facts.tree_sha256,
        "repack_sha256": facts.repack_sha256,
        "published_at": iso(facts.published_at),
        "issued_at": iso(issued_at),
        "yanked": yanked,
    }


def signed(signer: Signer, body: dict[str, Any]) -> bytes:
    return signer.envelope(MANIFEST_TYPE, json.dumps(body, indent=1, sort_keys=True).encode())
