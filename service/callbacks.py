"""Signed callbacks to the registry, retried with backoff for about three days.

Each event is a WebhookDelivery row written in the same transaction as the change it
reports, so an event is never lost between a commit and a crash; every attempt is a row.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.models import DeliveryAttempt, Submission, WebhookDelivery, aware, iso, utcnow
from service.outbound import DeadlineError, OutboundError, exchange
from service.services import Services
from service.webhooks import SecretError, signed_headers

log = logging.getLogger(__name__)

EVENTS = (
    "scan.completed",
    "submission.rejected",
    "submission.approved",
    "submission.changes_requested",
    "submission.promoted",
    "submission.yanked",
)
# Not a registry callback: a CDN's purge webhook (service.cdn.purge), sent through the same
# rows, retries and sweeper, and signed with GATEHOUSE_CDN_PURGE_SECRET instead.
PURGE_EVENT = "cdn.purge"
FIRST_DELAY = 10.0
MAX_DELAY = 6 * 3600.0
# Longest wait for the registry's response once connected; the whole call is capped too.
CONNECT_TIMEOUT = 5.0


def next_delay(attempts: int, rng: random.Random | None = None) -> float:
    """Exponential from 10 s, capped at 6 h, with jitter so retries do not arrive in waves."""
    base = min(MAX_DELAY, FIRST_DELAY * 2 ** max(0, attempts - 1))
    return float(base * (rng or random).uniform(0.75, 1.25))


def enqueue_event(
    session: Session, submission: Submission, event_type: str, data: dict[str, Any]
) -> WebhookDelivery | None:
    """Record an event for the registry; None when the submission asked for no callbacks."""
    if event_type not in EVENTS:
        raise ValueError(f"unknown event {event_type}")
    if not submission.callback_url:
        return None
    message_id = "msg_" + uuid.uuid4().hex
    body = {
        "type": event_type,
        "timestamp": iso(utcnow()),
        "data": {"submission_id": submission.id, **data},
    }
    delivery = WebhookDelivery(
        message_id=message_id,
        event_type=event_type,
        submission_id=submission.id,
        url=submission.callback_url,
        body=json.dumps(body, separators=(",", ":"), sort_keys=True),
        # The first attempt is dispatched right after the commit; the sweeper takes over
        # only if that dispatch is lost, so it waits out a lease first.
        next_attempt_at=utcnow() + timedelta(seconds=60),
    )
    session.add(delivery)
    return delivery


def attempt(svc: Services, delivery_id: int, rng: random.Random | None = None) -> str:
    """POST one delivery once and record the attempt; returns the delivery's status after."""
    with svc.session() as s:
        delivery = s.get(WebhookDelivery, delivery_id)
        if delivery is None or delivery.status != "pending":
            return "gone" if delivery is None else delivery.status
        url, body, message_id = delivery.url, delivery.body.encode(), delivery.message_id
        purge = delivery.event_type == PURGE_EVENT
    secret = svc.settings.cdn_purge_secret if purge else svc.settings.callback_secret
    name = "GATEHOUSE_CDN_PURGE_SECRET" if purge else "GATEHOUSE_CALLBACK_SECRET"
    status_code, error, elapsed = _post(svc, url, message_id, body, secret, name)
    now = utcnow()
    with svc.session() as s:
        delivery = s.get(WebhookDelivery, delivery_id, with_for_update=True)
        assert delivery is not None
        s.add(
            DeliveryAttempt(
                delivery_id=delivery_id,
                status_code=status_code,
                error=error,
                duration_ms=elapsed,
            )
        )
        delivery.attempts += 1
        if error is None:
            delivery.status, delivery.delivered_at, delivery.next_attempt_at = (
                "delivered",
                now,
                None,
            )
        elif now - (aware(delivery.created_at) or now) > timedelta(
            seconds=svc.settings.callback_retry_window
        ):
            delivery.status, delivery.next_attempt_at = "failed", None
            log.warning("callback %s to %s abandoned: %s", message_id, url, error)
        else:
            delay = next_delay(delivery.attempts, rng)
            delivery.next_attempt_at = now + timedelta(seconds=delay)
        return delivery.status


def _post(
    svc: Services, url: str, message_id: str, body: bytes, secret: str, secret_name: str
) -> tuple[int | None, str | None, float]:
    start = time.perf_counter()
    try:
        headers = signed_headers(secret, message_id, body)
    except SecretError as exc:
        # Fail closed: an unsigned (or empty-key) callback would let anyone forge ours.
        return None, f"not sent: {secret_name} is unusable ({exc})", 0.0
    headers["content-type"] = "application/json"
    headers["user-agent"] = "gatehouse-callbacks"
    timeout = svc.settings.callback_timeout
    try:
        with exchange(
            "POST",
            url,
            body=body,
            headers=headers,
            timeout=timeout,
            connect_timeout=min(CONNECT_TIMEOUT, timeout),
        ) as resp:
            # Read a bounded amount under the whole-call deadline: a registry that
            # trickles its answer byte by byte cannot hold a worker.
            received = 0
            for chunk in resp.chunks(4096):
                received += len(chunk)
                if received > 65536:
                    break
            code = resp.status
    except DeadlineError:
        elapsed = (time.perf_counter() - start) * 1000
        return None, f"Timeout: no complete answer within {timeout:g} s", elapsed
    except OutboundError as exc:
        return None, str(exc)[:500], (time.perf_counter() - start) * 1000
    elapsed = (time.perf_counter() - start) * 1000
    return code, None if 200 <= code < 300 else f"answered {code}", elapsed


def due(svc: Services, limit: int = 200) -> list[int]:
    """Deliveries whose time has come, leased for a while so one sweep does not send twice."""
    now = utcnow()
    lease = now + timedelta(seconds=svc.settings.callback_timeout * 3 + 30)
    with svc.session() as s:
        ids = list(
            s.scalars(
                select(WebhookDelivery.id)
                .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)
                .order_by(WebhookDelivery.next_attempt_at)
                .limit(limit)
            )
        )
        if ids:
            s.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_(ids))
                .values(next_attempt_at=lease)
            )
    return ids
