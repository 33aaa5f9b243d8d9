"""One entry point for the promotion task and the sweeper: make storage say what the
promotion's row says (published, or withdrawn by a yank)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from service.cdn import promote, yank
from service.cdn.promote import Claim, PromotionError
from service.models import Promotion, utcnow
from service.services import Services


def sync(svc: Services, promotion_id: int) -> str:
    """What happened, for logs and tests: in sync, published, withdrawn or failed."""
    claim = _claim(svc, promotion_id)
    if claim is None:
        return "in sync"
    if claim.yanked:
        # A withdrawal is never given up: the origin answers 410 from the records
        # meanwhile, and storage and the caches must follow.
        return yank.withdraw(svc, claim)
    try:
        if claim.attempts > promote.MAX_ATTEMPTS:
            raise PromotionError(f"gave up after {promote.MAX_ATTEMPTS} attempts")
        return promote.publish(svc, claim)
    except PromotionError as exc:
        promote.fail(svc, claim, str(exc))
        return "failed"


def _claim(svc: Services, promotion_id: int) -> Claim | None:
    with svc.session() as s:
        p = s.get(Promotion, promotion_id, with_for_update=True)
        if p is None or p.store_synced:
            return None
        p.attempts += 1
        p.updated_at = utcnow()
        return Claim(
            p.id,
            p.submission_id,
            p.scan_id,
            p.decision_id,
            p.publisher_id,
            p.plugin_name,
            p.plugin_version,
            p.repack_sha256,
            p.tree_sha256,
            p.yanked_at is not None,
            p.published_at,
            p.attempts,
        )


def unsynced(svc: Services, limit: int = 100) -> list[int]:
    """Promotions whose storage work stopped moving (a crash, a lost task): for the sweeper.

    Touched as they are taken, so the next sweep waits a full period before trying again.
    """
    now = utcnow()
    stale = now - timedelta(seconds=svc.settings.stuck_after)
    with svc.session() as s:
        ids = list(
            s.scalars(
                select(Promotion.id)
                .where(Promotion.store_synced.is_(False), Promotion.updated_at < stale)
                .order_by(Promotion.updated_at)
                .limit(limit)
            )
        )
        for p in s.scalars(select(Promotion).where(Promotion.id.in_(ids))):
            p.updated_at = now
    return ids
