"""Retro-scans: every promoted version judged again when the rules or the advisories change.

Each scan records its ruleset hash and advisory snapshot. The sweeper compares the current
pair with the newest generation's; a change opens a generation that plans a rescan of
every promoted version whose latest scan was judged with another pair, ranked: the newest
version of each plugin first (most used plugins first), then older versions by use and
age. ``tick`` keeps at most ``GATEHOUSE_RETRO_CONCURRENCY`` of them in flight, each a whole
scan whose intake and CPU-bound stages run on the ``retro`` queue, so new submissions on
``scan`` never wait behind them. A rescan judged worse than the approved scan flags the
version for a person (only the new findings, and a pre-filled yank) or, past the policy's
kill switch, yanks it; one no worse clears an earlier flag.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.orm import Session

from scanner.advisories.store import snapshot_identity
from scanner.policy import KillSwitch
from scanner.ruleset import ruleset_hash
from service.audit import audit
from service.models import (
    Promotion,
    RetroGeneration,
    RetroItem,
    ReviewItem,
    Scan,
    ScanKind,
    ScanStatus,
    Submission,
    SubmissionStatus,
    aware,
    utcnow,
)
from service.review.delta import new_findings
from service.services import Services

log = logging.getLogger(__name__)
ACTOR = "gatehouse-retro"
RANK = {"pass": 0, "review": 1, "reject": 2}
SERIOUS = frozenset({"high", "critical"})
INSERT_CHUNK = 1000
MAX_DELTA_FINDINGS = 200


def current(svc: Services) -> tuple[str, str]:
    """The rules and advisory data a scan made now is judged with."""
    return ruleset_hash(svc.settings.rules_dir), snapshot_identity(svc.engine)


def detect(svc: Services, reason: str | None = None) -> int | None:
    """Open a generation when the rules or advisories changed since the newest one (or
    when asked, ``reason``); returns its id, None when nothing changed."""
    ruleset, advisories = current(svc)
    with svc.session() as s:
        last = s.scalar(select(RetroGeneration).order_by(RetroGeneration.id.desc()).limit(1))
        if reason is None:
            if last is not None and (last.ruleset, last.advisories) == (ruleset, advisories):
                # Nothing changed, but a version approved on older data and published
                # since this generation was planned has not been judged with it yet.
                added = _top_up(s, last)
                if added:
                    log.info("retro generation %d: %d versions published since", last.id, added)
                return None
            changed = [] if last is None else _changes(last, ruleset, advisories)
            reason = "+".join(changed) or "first"
        gen = RetroGeneration(ruleset=ruleset, advisories=advisories, reason=reason)
        s.add(gen)
        s.flush()
        # What an older generation still planned is covered by this one.
        s.execute(
            update(RetroItem)
            .where(RetroItem.state == "planned", RetroItem.generation_id != gen.id)
            .values(state="skipped", finished_at=utcnow())
        )
        gen.planned = _plan(s, gen)
        audit(
            s, ACTOR, "retro.planned", "retro", gen.id, {"reason": reason, "planned": gen.planned}
        )
        log.info("retro generation %d (%s): %d versions to rescan", gen.id, reason, gen.planned)
        return gen.id


def _changes(last: RetroGeneration, ruleset: str, advisories: str) -> list[str]:
    out = []
    if last.ruleset != ruleset:
        out.append("rules")
    if last.advisories != advisories:
        out.append("advisories")
    return out


def _latest_scans() -> Any:
    """Each submission's newest completed scan of its own bytes (submission or retro)."""
    ranked = func.row_number().over(
        partition_by=Scan.submission_id, order_by=(Scan.created_at.desc(), Scan.id.desc())
    )
    return (
        select(Scan.submission_id, Scan.ruleset, Scan.advisories, ranked.label("n"))
        .where(
            Scan.status == ScanStatus.COMPLETED,
            Scan.kind.in_((ScanKind.SUBMISSION, ScanKind.RETRO)),
        )
        .subquery()
    )


def _promoted(
    s: Session, since: datetime | None = None
) -> list[tuple[str, str, datetime | None, int, str | None, str | None]]:
    latest = _latest_scans()
    published = [] if since is None else [Promotion.published_at >= since]
    rows = s.execute(
        select(
            Promotion.submission_id,
            Promotion.plugin_name,
            Promotion.published_at,
            Promotion.hits,
            latest.c.ruleset,
            latest.c.advisories,
        )
        .join(Submission, Submission.id == Promotion.submission_id)
        .outerjoin(latest, and_(latest.c.submission_id == Promotion.submission_id, latest.c.n == 1))
        .where(Submission.status == SubmissionStatus.PROMOTED, *published)
    )
    return [tuple(r) for r in rows]


def order(rows: Iterable[tuple[str, str, datetime | None, int]]) -> list[str]:
    """Submission ids, first to rescan first: the newest version of each plugin (plugins
    by use), then the older versions by use and then age."""
    rows = list(rows)
    newest: dict[str, datetime] = {}
    use: dict[str, int] = {}
    epoch = datetime.min.replace(tzinfo=utcnow().tzinfo)
    for _, plugin, at, hits in rows:
        at = aware(at) or epoch
        newest[plugin] = max(newest.get(plugin, epoch), at)
        use[plugin] = use.get(plugin, 0) + hits

    def key(row: tuple[str, str, datetime | None, int]) -> tuple[int, int, int, float]:
        _, plugin, at, hits = row
        at = aware(at) or epoch
        if at == newest[plugin]:
            return (0, -use[plugin], -hits, -at.timestamp() if at != epoch else 0.0)
        return (1, -hits, 0, -at.timestamp() if at != epoch else 0.0)

    return [r[0] for r in sorted(rows, key=key)]


def _plan(s: Session, gen: RetroGeneration) -> int:
    stale = [
        (sid, plugin, at, hits)
        for sid, plugin, at, hits, ruleset, advisories in _promoted(s)
        if (ruleset, advisories) != (gen.ruleset, gen.advisories)
    ]
    ids = order(stale)
    now = utcnow()
    for start in range(0, len(ids), INSERT_CHUNK):
        s.execute(
            insert(RetroItem),
            [
                {
                    "generation_id": gen.id,
                    "submission_id": sid,
                    "rank": start + i,
                    "state": "planned",
                    "planned_at": now,
                }
                for i, sid in enumerate(ids[start : start + INSERT_CHUNK])
            ],
        )
    return len(ids)


def _top_up(s: Session, gen: RetroGeneration) -> int:
    """Plan, at the end of ``gen``, versions published since it began whose newest scan
    was judged with other rules or advisories (approved before a deployment, promoted
    after it)."""
    since = (aware(gen.created_at) or utcnow()) - timedelta(minutes=5)  # several hosts' clocks
    planned = set(
        s.scalars(select(RetroItem.submission_id).where(RetroItem.generation_id == gen.id))
    )
    stale = [
        (sid, plugin, at, hits)
        for sid, plugin, at, hits, ruleset, advisories in _promoted(s, since)
        if (ruleset, advisories) != (gen.ruleset, gen.advisories) and sid not in planned
    ]
    if not stale:
        return 0
    rank = s.scalar(select(func.max(RetroItem.rank)).where(RetroItem.generation_id == gen.id))
    first = (rank if rank is not None else -1) + 1
    now = utcnow()
    s.execute(
        insert(RetroItem),
        [
            {
                "generation_id": gen.id,
                "submission_id": sid,
                "rank": first + i,
                "state": "planned",
                "planned_at": now,
            }
            for i, sid in enumerate(order(stale))
        ],
    )
    gen.planned += len(stale)
    return len(stale)


def tick(svc: Services) -> int:
    """Start planned rescans up to the concurrency limit; how many were started."""
    started: list[str] = []
    with svc.session() as s:
        gen = s.scalar(
            select(RetroGeneration).order_by(RetroGeneration.id.desc()).limit(1).with_for_update()
        )
        if gen is None:
            return 0  # ticks are serialised on this row: never more than the limit
        running = s.scalar(select(func.count()).where(RetroItem.state == "running")) or 0
        free = svc.settings.retro_concurrency - running
        if free <= 0:
            return 0
        items = s.scalars(
            select(RetroItem)
            .where(RetroItem.state == "planned")
            .order_by(RetroItem.rank, RetroItem.id)
            .limit(free)
        )
        for item in list(items):
            scan_id = _start_one(s, item)
            if scan_id is not None:
                started.append(scan_id)
    for scan_id in started:
        try:
            svc.jobs.start_retro(scan_id)
        except Exception as exc:  # committed: the sweeper queues it once the broker answers
            log.warning("retro-scan %s not queued yet: %s", scan_id, exc)
    return len(started)


def _start_one(s: Session, item: RetroItem) -> str | None:
    submission = s.get_one(Submission, item.submission_id)
    previous = s.scalar(
        select(Scan)
        .where(Scan.submission_id == submission.id, Scan.status == ScanStatus.COMPLETED)
        .order_by(Scan.created_at.desc())
        .limit(1)
    )
    now = utcnow()
    if submission.status != SubmissionStatus.PROMOTED or previous is None:
        item.state, item.finished_at = "skipped", now  # yanked since it was planned
        return None
    scan = Scan(
        kind=ScanKind.RETRO,
        submission_id=submission.id,
        bundle_sha256=previous.bundle_sha256,
        bundle_name=previous.bundle_name,
        status=ScanStatus.QUEUED,
        created_at=now,
        updated_at=now,
    )
    s.add(scan)
    s.flush()
    item.scan_id, item.state, item.started_at = scan.id, "running", now
    return scan.id


@dataclass(frozen=True)
class RetroVerdict:
    """What a concluded retro-scan asks for after its transaction: a kill-switch yank."""

    submission_id: str | None = None
    yank_reason: str | None = None


def counted(findings: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Findings the policy counts: enabled rules, not allowlisted, not a library's code."""
    return [
        f
        for f in findings
        if f.get("state") == "enabled" and not f.get("suppressed_by") and not f.get("library")
    ]


def concluded(
    s: Session, scan: Scan, report: Mapping[str, Any], kill_switch: KillSwitch
) -> RetroVerdict:
    """Judge a retro-scan against the approved scan (the concluding transaction)."""
    item = s.scalar(select(RetroItem).where(RetroItem.scan_id == scan.id).with_for_update())
    promotion = s.scalar(select(Promotion).where(Promotion.submission_id == scan.submission_id))
    submission = s.get(Submission, scan.submission_id)
    if promotion is None or submission is None or submission.status != SubmissionStatus.PROMOTED:
        if item is not None:  # yanked while it was rescanned: nothing left to judge
            item.state, item.outcome, item.finished_at = "done", "skipped", utcnow()
        return RetroVerdict()
    approved = s.get_one(Scan, promotion.scan_id)
    before = approved.report or {}
    fresh, resolved = new_findings(
        counted(report.get("findings", [])), counted(before.get("findings", []))
    )
    old, new = str(before.get("verdict")), str(report.get("verdict"))
    worse = RANK.get(new, 2) > RANK.get(old, 2) or any(f.get("severity") in SERIOUS for f in fresh)
    outcome = "worse" if worse else "better" if RANK.get(new, 2) < RANK.get(old, 2) else "same"
    now = utcnow()
    if item is not None:
        item.state, item.outcome, item.finished_at = "done", outcome, now
    review = s.get(ReviewItem, promotion.submission_id, with_for_update=True)
    if not worse:
        if review is not None and review.retro_state == "flagged":
            review.retro_state, review.retro_at = "cleared", now
            audit(
                s,
                ACTOR,
                "retro.cleared",
                "submission",
                promotion.submission_id,
                {"scan_id": scan.id},
            )
        return RetroVerdict()
    delta = _delta(scan, approved, old, new, fresh, resolved, report)
    if review is not None:
        review.retro_state, review.retro_scan_id = "flagged", scan.id
        review.retro_delta, review.retro_at = delta, now
    audit(
        s,
        ACTOR,
        "retro.flagged",
        "submission",
        promotion.submission_id,
        {"scan_id": scan.id, "from": old, "to": new, "new_findings": len(fresh)},
    )
    killers = [
        f for f in fresh if kill_switch.triggers(str(f.get("category")), str(f.get("severity")))
    ]
    if not killers:
        return RetroVerdict()
    first = killers[0]
    why = (
        f"kill switch: a rescan with the current rules found {first.get('severity')}"
        f" {first.get('category')} ({first.get('rule_id')}: {first.get('message')})"
    )[:1000]
    log.error("retro-scan %s: %s; yanking %s", scan.id, why, promotion.submission_id)
    return RetroVerdict(promotion.submission_id, why)


def _delta(
    scan: Scan,
    approved: Scan,
    old: str,
    new: str,
    fresh: list[dict[str, Any]],
    resolved: int,
    report: Mapping[str, Any],
) -> dict[str, Any]:
    stages = [
        {"stage": st.get("name"), "status": st.get("status")}
        for st in report.get("stages", [])
        if st.get("status") not in ("ok", None)
    ]
    top = fresh[0] if fresh else None
    suggestion = (
        f"A rescan with the current rules ({scan.ruleset}) found"
        f" {top.get('severity')} {top.get('category')}: {top.get('message')}"
        if top
        else f"A rescan with the current rules judged it {new} (approved as {old})."
    )
    return {
        "scan_id": scan.id,
        "approved_scan_id": approved.id,
        "verdict_before": old,
        "verdict_after": new,
        "ruleset_before": approved.ruleset,
        "ruleset_after": scan.ruleset,
        "advisories_before": approved.advisories,
        "advisories_after": scan.advisories,
        "new_findings": fresh[:MAX_DELTA_FINDINGS],
        "resolved_findings": resolved,
        "stage_problems": stages,
        "suggested_yank": suggestion[:1000],
    }


@dataclass(frozen=True)
class StaleVersion:
    submission_id: str
    plugin: str
    version: str
    published_at: datetime | None
    hits: int
    ruleset: str | None
    advisories: str | None
    state: str | None  # planned | running | None (not planned yet)
    position: int | None  # rescans before it
    eta: datetime | None
    retro_state: str | None


@dataclass(frozen=True)
class Progress:
    generation: int | None
    reason: str | None
    planned: int
    running: int
    done: int
    per_hour: float | None
    stale: list[StaleVersion]
    total_promoted: int
    current_ruleset: str
    current_advisories: str


def throughput(s: Session, now: datetime) -> float | None:
    """Rescans finished per hour, measured over the last hour (None before the first)."""
    since = now - timedelta(hours=1)
    rows = list(
        s.execute(
            select(RetroItem.started_at, RetroItem.finished_at).where(
                RetroItem.state == "done", RetroItem.finished_at >= since
            )
        )
    )
    if not rows:
        return None
    first = min(aware(r[0]) or now for r in rows)
    span = max((now - first).total_seconds(), 60.0)
    return len(rows) * 3600.0 / span


def progress(svc: Services, limit: int = 200) -> Progress:
    """Which promoted versions are stale, where they are in the plan, and when they will
    be reached at the measured rate."""
    ruleset, advisories = current(svc)
    now = utcnow()
    with svc.session() as s:
        gen = s.scalar(select(RetroGeneration).order_by(RetroGeneration.id.desc()).limit(1))
        counts = dict(
            s.execute(select(RetroItem.state, func.count()).group_by(RetroItem.state)).all()
        )
        rate = throughput(s, now)
        promoted = _promoted(s)
        plan = {
            sid: (state, rank)
            for sid, state, rank in s.execute(
                select(RetroItem.submission_id, RetroItem.state, RetroItem.rank).where(
                    RetroItem.state.in_(("planned", "running"))
                )
            )
        }
        ranks = sorted(rank for state, rank in plan.values() if state == "planned")
        flags = dict(
            s.execute(
                select(ReviewItem.submission_id, ReviewItem.retro_state).where(
                    ReviewItem.retro_state.is_not(None)
                )
            ).all()
        )
        versions = dict(
            s.execute(
                select(Submission.id, Submission.plugin_version).where(
                    Submission.id.in_([p[0] for p in promoted] or [""])
                )
            ).all()
        )
    stale = []
    for sid, plugin, at, hits, rs, adv in promoted:
        if (rs, adv) == (ruleset, advisories):
            continue
        state, rank = plan.get(sid, (None, None))
        position = _position(ranks, rank) if state == "planned" and rank is not None else None
        eta = None
        if state == "running":
            eta = now
        elif position is not None and rate:
            eta = now + timedelta(hours=(position + 1) / rate)
        stale.append(
            StaleVersion(
                sid,
                plugin,
                versions.get(sid, "?"),
                at,
                hits,
                rs,
                adv,
                state,
                position,
                eta,
                flags.get(sid),
            )
        )
    stale.sort(key=lambda v: (v.position is None and v.state != "running", v.position or 0))
    return Progress(
        gen.id if gen else None,
        gen.reason if gen else None,
        int(counts.get("planned", 0)),
        int(counts.get("running", 0)),
        int(counts.get("done", 0)),
        rate,
        stale[:limit],
        len(promoted),
        ruleset,
        advisories,
    )


def _position(ranks: list[int], rank: int) -> int:
    return bisect.bisect_left(ranks, rank)
