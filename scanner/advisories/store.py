"""The advisory database: import feeds whole or not at all, look packages up by index."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from itertools import islice

from sqlalchemy import Engine, delete, func, insert, select, text
from sqlalchemy.orm import Session

from scanner.advisories.feeds import RETIRE_ECOSYSTEM, Detector, Feed, normalise_name
from scanner.advisories.migrations import migrate_advisories
from scanner.advisories.models import Advisory, AdvisorySource, AffectedPackage, JsDetector
from scanner.advisories.versions import NPM, PYPI, AffectedRange, unreadable_bounds
from scanner.db import session_scope, sqlite_file_lock

LOOKUP_CHUNK = 500
STALE_AFTER_DAYS = 7
KEPT_WARNINGS = 20
# Ecosystems whose versions Gatehouse orders; a bound elsewhere is not ours to read.
ORDERED_ECOSYSTEMS = frozenset({PYPI, NPM, RETIRE_ECOSYSTEM})


@dataclass(frozen=True)
class KnownVulnerability:
    """One advisory's claim about one package name."""

    advisory_id: str
    aliases: tuple[str, ...]
    severity: str | None
    cvss: str | None
    references: tuple[str, ...]
    ecosystem: str
    name: str
    ranges: tuple[AffectedRange, ...]
    versions: tuple[str, ...]
    source: str


@dataclass(frozen=True)
class SourceStatus:
    name: str
    kind: str
    snapshot: str | None
    newest_modified: str | None
    imported_at: datetime
    advisories: int
    per_ecosystem: dict[str, int]
    licence: str | None
    warning_count: int = 0
    warnings: tuple[str, ...] = ()


def import_warnings(feed: Feed) -> list[str]:
    """Every range bound the ecosystem's order cannot place, named by advisory and package.

    Such a bound cannot be compared, so its range may never fire (RetireJS's "1.3.0-*"
    once kept 7 ember advisories silent): each one is counted and shown, never dropped.
    """
    out: list[str] = []
    for record in feed.records:
        for spec in record.affected:
            if spec.ecosystem not in ORDERED_ECOSYSTEMS:
                continue
            for rng in spec.ranges:
                out.extend(
                    f"{record.id} {spec.name}: unreadable {bound}"
                    for bound in unreadable_bounds(spec.ecosystem, rng)
                )
    return out


_IMPORT_LOCK_ID = 0x6761_7465  # "gate": one PostgreSQL advisory lock for imports
_in_process = threading.Lock()


def feed_digest(feed: Feed) -> str:
    """sha256 of what an import stores from a feed (its records and detectors)."""
    data = {
        "kind": feed.kind,
        "records": [asdict(r) for r in feed.records],
        "detectors": [asdict(d) for d in feed.detectors],
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


class AdvisoryStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        migrate_advisories(engine)

    @contextmanager
    def importing(self) -> Iterator[None]:
        """Held by one importer at a time, across processes: on a fresh database every
        worker would otherwise import the snapshot at once and all but one fail on the
        unique names (a failed dependency stage, a bundle sent to review for nothing)."""
        with _in_process:
            if self.engine.dialect.name == "postgresql":
                with self.engine.connect() as conn:
                    conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": _IMPORT_LOCK_ID})
                    try:
                        yield
                    finally:
                        conn.execute(
                            text("SELECT pg_advisory_unlock(:id)"), {"id": _IMPORT_LOCK_ID}
                        )
                return
            with sqlite_file_lock(self.engine, "import"):
                yield

    def import_feed(self, feed: Feed) -> int:
        """Replace everything from this feed's source in one transaction; returns advisories."""
        newest = max((r.modified for r in feed.records if r.modified), default=None)
        with session_scope(self.engine) as s:
            source = s.scalar(select(AdvisorySource).where(AdvisorySource.name == feed.name))
            if source is not None:
                old = select(Advisory.id).where(Advisory.source_id == source.id)
                s.execute(delete(AffectedPackage).where(AffectedPackage.advisory_pk.in_(old)))
                s.execute(delete(Advisory).where(Advisory.source_id == source.id))
                s.execute(delete(JsDetector).where(JsDetector.source_id == source.id))
            else:
                source = AdvisorySource(name=feed.name)
                s.add(source)
            source.kind = feed.kind
            source.snapshot = feed.snapshot or (newest[:10] if newest else None)
            source.newest_modified = newest
            source.imported_at = datetime.now(UTC)
            source.advisory_count = len(feed.records)
            source.licence = feed.licence
            warnings = import_warnings(feed)
            source.warning_count = len(warnings)
            source.warnings = warnings[:KEPT_WARNINGS]
            source.digest = feed_digest(feed)
            s.flush()
            self._insert_records(s, source.id, feed)
        return len(feed.records)

    def _insert_records(self, s: Session, source_id: int, feed: Feed) -> None:
        rows = [
            {
                "source_id": source_id,
                "advisory_id": r.id,
                "aliases": list(r.aliases),
                "severity": r.severity,
                "cvss": r.cvss,
                "modified": r.modified,
                "published": r.published,
                "references": list(r.references),
            }
            for r in feed.records
        ]
        ids = list(
            s.scalars(insert(Advisory).returning(Advisory.id, sort_by_parameter_order=True), rows)
        )
        packages = [
            {
                "advisory_pk": pk,
                "ecosystem": a.ecosystem,
                "name": a.name,
                "versions": list(a.versions),
                "ranges": [[list(ev) for ev in rng.events] for rng in a.ranges],
            }
            for pk, r in zip(ids, feed.records, strict=True)
            for a in r.affected
        ]
        if packages:
            s.execute(insert(AffectedPackage), packages)
        detectors = [
            {
                "source_id": source_id,
                "library": d.library,
                "kind": d.kind,
                "pattern": d.pattern,
                "version": d.version,
            }
            for d in feed.detectors
        ]
        if detectors:
            s.execute(insert(JsDetector), detectors)

    def lookup(self, ecosystem: str, names: Iterable[str]) -> dict[str, list[KnownVulnerability]]:
        """Every advisory naming any of ``names`` in ``ecosystem``, by normalised name."""
        wanted = sorted({normalise_name(ecosystem, n) for n in names})
        found: dict[str, list[KnownVulnerability]] = {}
        with session_scope(self.engine) as s:
            it = iter(wanted)
            while chunk := list(islice(it, LOOKUP_CHUNK)):
                query = (
                    select(
                        AffectedPackage.name,
                        AffectedPackage.ranges,
                        AffectedPackage.versions,
                        Advisory.advisory_id,
                        Advisory.aliases,
                        Advisory.severity,
                        Advisory.cvss,
                        Advisory.references,
                        AdvisorySource.name,
                    )
                    .join(Advisory, Advisory.id == AffectedPackage.advisory_pk)
                    .join(AdvisorySource, AdvisorySource.id == Advisory.source_id)
                    .where(AffectedPackage.ecosystem == ecosystem, AffectedPackage.name.in_(chunk))
                )
                # Plain rows, not ORM objects: building entities cost 5x the query itself.
                for name, ranges, versions, adv_id, aliases, sev, cvss, refs, source in s.execute(
                    query
                ):
                    found.setdefault(name, []).append(
                        KnownVulnerability(
                            advisory_id=adv_id,
                            aliases=tuple(aliases),
                            severity=sev,
                            cvss=cvss,
                            references=tuple(refs),
                            ecosystem=ecosystem,
                            name=name,
                            ranges=tuple(
                                AffectedRange(tuple((k, v) for k, v in rng)) for rng in ranges
                            ),
                            versions=tuple(versions),
                            source=source,
                        )
                    )
        return found

    def detectors(self) -> list[Detector]:
        with session_scope(self.engine) as s:
            return [
                Detector(d.library, d.kind, d.pattern, d.version)
                for d in s.scalars(select(JsDetector))
            ]

    def snapshot_identity(self) -> str:
        """One name for the advisory data a scan is judged with: it changes when any
        source is imported with other content, and only then."""
        return snapshot_identity(self.engine)

    def is_empty(self) -> bool:
        with session_scope(self.engine) as s:
            return not s.scalar(select(func.count()).select_from(AdvisorySource))

    def status(self) -> list[SourceStatus]:
        with session_scope(self.engine) as s:
            out = []
            for src in s.scalars(select(AdvisorySource).order_by(AdvisorySource.name)):
                counts = s.execute(
                    select(
                        AffectedPackage.ecosystem,
                        func.count(func.distinct(AffectedPackage.advisory_pk)),
                    )
                    .join(Advisory, Advisory.id == AffectedPackage.advisory_pk)
                    .where(Advisory.source_id == src.id)
                    .group_by(AffectedPackage.ecosystem)
                )
                out.append(
                    SourceStatus(
                        src.name,
                        src.kind,
                        src.snapshot,
                        src.newest_modified,
                        src.imported_at,
                        src.advisory_count,
                        {eco: n for eco, n in counts},
                        src.licence,
                        src.warning_count,
                        tuple(src.warnings or ()),
                    )
                )
            return out


def snapshot_identity(engine: Engine) -> str:
    """``adv:`` and a digest over every source's name and content digest (sources
    imported before digests were recorded count by their counts and dates instead)."""
    digest = hashlib.sha256()
    with session_scope(engine) as s:
        rows = s.execute(
            select(
                AdvisorySource.name,
                AdvisorySource.digest,
                AdvisorySource.snapshot,
                AdvisorySource.newest_modified,
                AdvisorySource.advisory_count,
            ).order_by(AdvisorySource.name)
        )
        for name, content, snapshot, newest, count in rows:
            part = content or f"{snapshot}|{newest}|{count}"
            digest.update(f"{name}\0{part}\n".encode())
    return "adv:" + digest.hexdigest()[:32]
