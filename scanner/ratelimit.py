"""Sliding-window limits counted from the records themselves (no extra state to lose)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from scanner.models import ApiToken, Publisher, Scan, Submission, aware, utcnow

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


class RateLimitedError(Exception):
    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def check_publisher(session: Session, publisher: Publisher, default_limit: int) -> None:
    limit = publisher.daily_limit if publisher.daily_limit is not None else default_limit
    since = utcnow() - DAY
    where = (Submission.publisher_id == publisher.id, Submission.created_at >= since)
    _check(session, Submission.created_at, where, limit, DAY, f"{limit} submissions a day")


def check_token(session: Session, token: ApiToken, default_limit: int) -> None:
    limit = token.hourly_limit if token.hourly_limit is not None else default_limit
    since = utcnow() - HOUR
    where = (Scan.token_id == token.id, Scan.created_at >= since)
    _check(session, Scan.created_at, where, limit, HOUR, f"{limit} scans an hour")


def _check(
    session: Session,
    column: Any,
    where: tuple[Any, ...],
    limit: int,
    window: timedelta,
    what: str,
) -> None:
    count, oldest = session.execute(select(func.count(), func.min(column)).where(*where)).one()
    if count < limit:
        return
    retry = _seconds_until((aware(oldest) or utcnow()) + window)
    raise RateLimitedError(f"rate limit reached: {what}", retry)


def _seconds_until(when: datetime) -> int:
    return max(1, math.ceil((when - utcnow()).total_seconds()))
