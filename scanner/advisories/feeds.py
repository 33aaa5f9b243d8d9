"""Reading advisory feeds (OSV, RetireJS) into facts-only records: no prose is kept."""

from __future__ import annotations

import hashlib
import json
import math
import re
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from scanner.advisories.versions import NPM, PYPI, AffectedRange
from scanner.regex import Regex, RegexRefusedError, compile_translated, relax

RETIRE_ECOSYSTEM = "retirejs"  # libraries vendored into a bundle, by RetireJS library key
BACKDOOR_ECOSYSTEM = "retirejs-backdoored"
_ECOSYSTEMS = {"pypi": PYPI, "npm": NPM}
VERSION_TOKEN = "§§version§§"  # noqa: S105 - RetireJS's placeholder, not a secret
VERSION_PATTERN = r"[0-9][0-9.a-z_\-]+"
PATTERN_KINDS = ("filecontent", "filename", "uri", "backdoor")


class FeedError(ValueError):
    """A file that is not a feed Gatehouse can read."""


@dataclass(frozen=True)
class AffectedSpec:
    ecosystem: str
    name: str
    ranges: tuple[AffectedRange, ...]
    versions: tuple[str, ...]


@dataclass(frozen=True)
class AdvisoryRecord:
    id: str
    aliases: tuple[str, ...]
    severity: str | None
    cvss: str | None
    modified: str | None
    published: str | None
    references: tuple[str, ...]
    affected: tuple[AffectedSpec, ...]


@dataclass(frozen=True)
class Detector:
    library: str
    kind: str  # filecontent | filename | uri | hash | backdoor
    pattern: str
    version: str | None = None


@dataclass
class Feed:
    name: str
    kind: str  # osv | retirejs
    records: list[AdvisoryRecord] = field(default_factory=list)
    detectors: list[Detector] = field(default_factory=list)
    snapshot: str | None = None
    licence: str | None = None
    # Detectors kept but unusable (RE2 cannot run their pattern): said at import, and a
    # scan that meets their library's text records a coverage gap instead of silence.
    warnings: list[str] = field(default_factory=list)


def detector_regex(d: Detector) -> Regex[bytes]:
    """A RetireJS pattern on RE2, translated where that keeps its meaning, else relaxed
    (lookarounds dropped, backreferences as their group's body: it still finds its library);
    raises RegexRefusedError for one that can be neither."""
    digest = hashlib.sha1(d.pattern.encode(), usedforsecurity=False).hexdigest()[:8]
    rule = f"retirejs:{d.library}:{d.kind}:{digest}"
    pattern = d.pattern.replace(VERSION_TOKEN, VERSION_PATTERN)
    try:
        return compile_translated(pattern, rule=rule)
    except RegexRefusedError:
        relaxed = relax(pattern)
        if relaxed is None:
            raise
        return compile_translated(relaxed, rule=f"{rule}:relaxed")


def unusable_detectors(detectors: Iterable[Detector]) -> list[str]:
    """One warning per detector pattern RE2 cannot run."""
    out = []
    for d in detectors:
        if d.kind in PATTERN_KINDS:
            try:
                detector_regex(d)
            except RegexRefusedError as exc:
                out.append(f"{d.library} {d.kind} pattern unusable: {exc}")
    return out


def normalise_name(ecosystem: str, name: str) -> str:
    if ecosystem == PYPI:
        return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503
    return name.strip().lower()


# ---------------------------------------------------------------- OSV


def read_osv(path: Path, name: str | None = None) -> Feed:
    """A directory of OSV JSON/YAML files, an OSV `all.zip`, a .json, or a .jsonl."""
    label = path.parent.name if path.name == "vulns" else path.stem
    feed = Feed(name or f"osv:{label}", "osv")
    for raw in _osv_documents(path):
        record = parse_osv(raw)
        if record is not None:
            feed.records.append(record)
    if not feed.records:
        raise FeedError(f"{path}: no OSV records found")
    return feed


def _osv_documents(path: Path) -> Iterator[dict[str, Any]]:
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.suffix in (".json", ".yaml", ".yml") and p.is_file():
                yield from _load_file(p)
    elif path.suffix == ".zip":
        with zipfile.ZipFile(path) as zf:
            for member in zf.namelist():
                if member.endswith(".json"):
                    yield json.loads(zf.read(member))
    else:
        yield from _load_file(path)


def _load_file(p: Path) -> Iterator[dict[str, Any]]:
    text = p.read_text(encoding="utf-8")
    if p.suffix == ".jsonl":
        yield from (json.loads(line) for line in text.splitlines() if line.strip())
        return
    data = json.loads(text) if p.suffix == ".json" else yaml.load(text, Loader=yaml.CSafeLoader)
    if isinstance(data, list):
        yield from data
    elif isinstance(data, dict):
        yield data


def parse_osv(data: dict[str, Any]) -> AdvisoryRecord | None:
    """One OSV record, or None when withdrawn."""
    if data.get("withdrawn") or "id" not in data:
        return None
    affected = []
    for item in data.get("affected", []):
        pkg = item.get("package") or {}
        eco = _ECOSYSTEMS.get(str(pkg.get("ecosystem", "")).lower(), str(pkg.get("ecosystem", "")))
        if not pkg.get("name"):
            continue
        # GHSA labels npm ranges ECOSYSTEM although they are semver: both are ordered here.
        ranges = tuple(
            AffectedRange(tuple((k, str(v)) for ev in r.get("events", []) for k, v in ev.items()))
            for r in item.get("ranges", [])
            if r.get("type") in ("ECOSYSTEM", "SEMVER")
        )
        versions = tuple(str(v) for v in item.get("versions", []))
        affected.append(AffectedSpec(eco, normalise_name(eco, str(pkg["name"])), ranges, versions))
    cvss = next(
        (
            s["score"]
            for s in data.get("severity", [])
            if str(s.get("type", "")).startswith("CVSS_V3")
        ),
        None,
    )
    severity = _severity_from_cvss(cvss) or _label(
        data.get("database_specific", {}).get("severity")
    )
    return AdvisoryRecord(
        id=str(data["id"]),
        aliases=tuple(str(a) for a in data.get("aliases", [])),
        severity=severity,
        cvss=cvss,
        modified=_text(data.get("modified")),
        published=_text(data.get("published")),
        references=tuple(str(r["url"]) for r in data.get("references", []) if r.get("url")),
        affected=tuple(affected),
    )


def _text(value: Any) -> str | None:
    if value is None:
        return None
    # YAML turns timestamps into datetimes; keep OSV's RFC 3339 text either way.
    return value.isoformat().replace("+00:00", "Z") if hasattr(value, "isoformat") else str(value)


def _label(value: Any) -> str | None:
    text = str(value or "").lower()
    return (
        {"moderate": "medium"}.get(text, text)
        if text in ("low", "moderate", "medium", "high", "critical")
        else None
    )


# CVSS v3.x base score (FIRST's specification, section 7.1).
_CVSS_WEIGHTS = {
    "AV": {"N": 0.85, "A": 0.62, "L": 0.55, "P": 0.2},
    "AC": {"L": 0.77, "H": 0.44},
    "UI": {"N": 0.85, "R": 0.62},
    "C": {"H": 0.56, "L": 0.22, "N": 0.0},
    "I": {"H": 0.56, "L": 0.22, "N": 0.0},
    "A": {"H": 0.56, "L": 0.22, "N": 0.0},
}


def cvss3_base_score(vector: str) -> float | None:
    try:
        metrics = dict(part.split(":", 1) for part in vector.split("/")[1:])
        changed = metrics["S"] == "C"
        pr = {"N": 0.85, "L": 0.68 if changed else 0.62, "H": 0.5 if changed else 0.27}[
            metrics["PR"]
        ]
        w = {k: _CVSS_WEIGHTS[k][metrics[k]] for k in _CVSS_WEIGHTS}
    except (KeyError, ValueError):
        return None
    iss = 1 - (1 - w["C"]) * (1 - w["I"]) * (1 - w["A"])
    impact = 7.52 * (iss - 0.029) - 3.25 * (iss - 0.02) ** 15 if changed else 6.42 * iss
    exploitability = 8.22 * w["AV"] * w["AC"] * pr * w["UI"]
    if impact <= 0:
        return 0.0
    raw = 1.08 * (impact + exploitability) if changed else impact + exploitability
    return _roundup(min(raw, 10.0))


def _roundup(value: float) -> float:
    scaled = round(value * 100000)
    return scaled / 100000.0 if scaled % 10000 == 0 else (math.floor(scaled / 10000) + 1) / 10.0


def _severity_from_cvss(vector: str | None) -> str | None:
    score = cvss3_base_score(vector) if vector else None
    if score is None:
        return None
    if score >= 9.0:
        return "critical"
    if score >= 7.0:
        return "high"
    if score >= 4.0:
        return "medium"
    return "low" if score > 0 else None


# ---------------------------------------------------------------- RetireJS


def read_retirejs(path: Path) -> Feed:
    """jsrepository-v4.json, npmrepository.json or jsrepository-backdoored.json, by content."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise FeedError(f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise FeedError(f"{path}: not a RetireJS repository")
    sample = next(iter(data.values()), None)
    if isinstance(sample, list):
        return _backdoored(path, data)
    if any("extractors" in v for v in data.values() if isinstance(v, dict)):
        return _js_repository(path, data)
    return _npm_repository(path, data)


def _vulnerabilities(
    ecosystem: str, name: str, vulns: Iterable[dict[str, Any]]
) -> list[AdvisoryRecord]:
    out = []
    for v in vulns:
        ids = v.get("identifiers", {})
        cves = [str(c) for c in ids.get("CVE", [])]
        ghsa = [str(ids["githubID"])] if ids.get("githubID") else []
        primary = (ghsa + cves + [f"RETIRE-{name}-{v.get('below', 'all')}"])[0]
        events: tuple[tuple[str, str], ...] = (("introduced", str(v.get("atOrAbove", "0"))),)
        if v.get("below"):
            events += (("fixed", str(v["below"])),)
        out.append(
            AdvisoryRecord(
                id=primary,
                aliases=tuple(a for a in ghsa + cves if a != primary),
                severity=_label(v.get("severity")),
                cvss=None,
                modified=None,
                published=None,
                references=tuple(str(u) for u in v.get("info", [])),
                affected=(
                    AffectedSpec(
                        ecosystem, normalise_name(ecosystem, name), (AffectedRange(events),), ()
                    ),
                ),
            )
        )
    return out


def _js_repository(path: Path, data: dict[str, Any]) -> Feed:
    feed = Feed(f"retirejs:{path.stem}", "retirejs")
    for lib, entry in data.items():
        if lib == "retire-example" or not isinstance(entry, dict):
            continue
        feed.records.extend(
            _vulnerabilities(RETIRE_ECOSYSTEM, lib, entry.get("vulnerabilities", []))
        )
        extractors = entry.get("extractors", {})
        for kind in ("filecontent", "filename", "uri"):
            feed.detectors.extend(Detector(lib, kind, str(p)) for p in extractors.get(kind, []))
        for digest, version in extractors.get("hashes", {}).items():
            feed.detectors.append(Detector(lib, "hash", str(digest), str(version)))
    feed.warnings.extend(unusable_detectors(feed.detectors))
    return feed


def _npm_repository(path: Path, data: dict[str, Any]) -> Feed:
    feed = Feed(f"retirejs:{path.stem}", "retirejs")
    for pkg, entry in data.items():
        if pkg != "retire-example" and isinstance(entry, dict):
            feed.records.extend(_vulnerabilities(NPM, pkg, entry.get("vulnerabilities", [])))
    return feed


def _backdoored(path: Path, data: dict[str, Any]) -> Feed:
    feed = Feed(f"retirejs:{path.stem}", "retirejs")
    for name, entries in data.items():
        for n, entry in enumerate(entries):
            feed.records.append(
                AdvisoryRecord(
                    id=f"RETIRE-BACKDOOR-{name}-{n}",
                    aliases=(),
                    severity=_label(entry.get("severity")) or "critical",
                    cvss=None,
                    modified=None,
                    published=None,
                    references=tuple(str(u) for u in entry.get("info", [])),
                    affected=(
                        AffectedSpec(
                            BACKDOOR_ECOSYSTEM,
                            name.lower(),
                            (AffectedRange((("introduced", "0"),)),),
                            (),
                        ),
                    ),
                )
            )
            feed.detectors.extend(
                Detector(name.lower(), "backdoor", str(p)) for p in entry.get("extractors", [])
            )
    feed.warnings.extend(unusable_detectors(feed.detectors))
    return feed


def read_feed(path: Path) -> Feed:
    """Recognise a feed by its shape: RetireJS repository files, else OSV."""
    if path.is_file() and path.suffix == ".json":
        head = path.read_text(encoding="utf-8", errors="replace")[:4000]
        if '"vulnerabilities"' in head or '"extractors"' in head:
            return read_retirejs(path)
    return read_osv(path)
