"""Sliding-window limits counted from the records themselves (no extra state to lose)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.models import ApiToken, Scan, aware, utcnow

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


class RateLimitedError(Exception):
    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Quota:
    """A sliding window's use: ``count`` records in it, the oldest made at ``oldest``."""

    count: int
    oldest: datetime | None
    limit: int | None  # the record's own limit; None means the deployment's default
    window: timedelta
    unit: str

    def enforce(self, default_limit: int) -> None:
        limit = self.limit if self.limit is not None else default_limit
        if self.count < limit:
            return
        retry = _seconds_until((aware(self.oldest) or utcnow()) + self.window)
        raise RateLimitedError(f"rate limit reached: {limit} {self.unit}", retry)


def check_token(session: Session, token: ApiToken, default_limit: int) -> None:
    since = utcnow() - HOUR
    count, oldest = session.execute(
        select(func.count(), func.min(Scan.created_at)).where(
            Scan.token_id == token.id, Scan.created_at >= since
        )
    ).one()
    Quota(count, oldest, token.hourly_limit, HOUR, "scans an hour").enforce(default_limit)


def _seconds_until(when: datetime) -> int:
    return max(1, math.ceil((when - utcnow()).total_seconds()))
