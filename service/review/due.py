"""Due dates in working hours: Monday to Friday count, weekends do not (UTC)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

WEEKEND = frozenset({5, 6})  # Saturday, Sunday
DAY = timedelta(days=1)


def _midnight_after(t: datetime) -> datetime:
    return (t + DAY).replace(hour=0, minute=0, second=0, microsecond=0)


def add_working_hours(start: datetime, hours: float) -> datetime:
    """The moment ``hours`` working hours after ``start`` (a start on a weekend counts
    from the Monday after)."""
    t = start if start.tzinfo else start.replace(tzinfo=UTC)
    t = t.astimezone(UTC)
    remaining = timedelta(hours=max(0.0, hours))
    while True:
        if t.weekday() in WEEKEND:
            t = _midnight_after(t)
            continue
        if not remaining:
            return t
        step = min(remaining, _midnight_after(t) - t)
        t += step
        remaining -= step
        if not remaining:
            return t


def working_hours_between(start: datetime, end: datetime) -> float:
    """Working hours from ``start`` to ``end`` (negative when ``end`` comes first)."""
    if end < start:
        return -working_hours_between(end, start)
    total = timedelta()
    t = start.astimezone(UTC)
    end = end.astimezone(UTC)
    while t < end:
        nxt = min(_midnight_after(t), end)
        if t.weekday() not in WEEKEND:
            total += nxt - t
        t = nxt
    return total.total_seconds() / 3600


def end_of_day(now: datetime) -> datetime:
    return _midnight_after(now.astimezone(UTC))
