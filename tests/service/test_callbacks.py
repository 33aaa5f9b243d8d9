"""Callback delivery against a real HTTP server: signed, recorded, retried, abandoned."""

from __future__ import annotations

import json
import random
import time
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from service import callbacks
from service.models import DeliveryAttempt, Publisher, Submission, WebhookDelivery, aware, utcnow
from service.services import Services
from service.webhooks import IncomingWebhook
from tests.service.conftest import SECRET
from tests.service.httpserver import Behaviour, serving


def _delivery(svc: Services, url: str) -> int:
    with svc.session() as s:
        publisher = Publisher(external_id="pub")
        s.add(publisher)
        s.flush()
        sub = Submission(
            publisher_id=publisher.id,
            plugin_name="demo",
            plugin_version="1.0.0",
            bundle_sha256="a" * 64,
            callback_url=url,
            webhook_id=f"msg_{time.time_ns()}",
        )
        s.add(sub)
        s.flush()
        delivery = callbacks.enqueue_event(s, sub, "scan.completed", {"verdict": "pass"})
        assert delivery is not None
        s.flush()
        return delivery.id


def _attempts(svc: Services, delivery_id: int) -> list[DeliveryAttempt]:
    with svc.session() as s:
        rows = list(
            s.scalars(select(DeliveryAttempt).where(DeliveryAttempt.delivery_id == delivery_id))
        )
        s.expunge_all()
        return rows


def test_a_delivery_is_signed_and_recorded(svc: Services) -> None:
    behaviour = Behaviour(status=204, body=b"")
    with serving(behaviour) as url:
        delivery_id = _delivery(svc, f"{url}/hooks")
        assert callbacks.attempt(svc, delivery_id) == "delivered"
        assert callbacks.attempt(svc, delivery_id) == "delivered"  # not sent twice
    assert len(behaviour.requests) == 1
    req = behaviour.requests[0]
    hook = IncomingWebhook.start(req.headers, [SECRET])
    hook.update(req.body)
    hook.verify()
    assert json.loads(req.body)["type"] == "scan.completed"
    assert [a.status_code for a in _attempts(svc, delivery_id)] == [204]


def test_a_failing_registry_is_retried_later_with_the_same_id(svc: Services) -> None:
    behaviour = Behaviour(status=503)
    with serving(behaviour) as url:
        delivery_id = _delivery(svc, url)
        before = utcnow()
        assert callbacks.attempt(svc, delivery_id, random.Random(1)) == "pending"
        with svc.session() as s:
            s.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == delivery_id)
                .values(next_attempt_at=utcnow())
            )
        callbacks.attempt(svc, delivery_id, random.Random(1))
    with svc.session() as s:
        delivery = s.get_one(WebhookDelivery, delivery_id)
        assert delivery.attempts == 2 and delivery.status == "pending"
        wait = aware(delivery.next_attempt_at) - before  # type: ignore[operator]
        assert timedelta(seconds=14) < wait < timedelta(seconds=26)  # 20 s +-25 %
    ids = {r.headers["webhook-id"] for r in behaviour.requests}
    assert len(ids) == 1
    assert [a.error for a in _attempts(svc, delivery_id)] == ["answered 503"] * 2


def test_a_hanging_registry_is_a_recorded_failure(svc: Services) -> None:
    svc.settings = replace(svc.settings, callback_timeout=1.0)
    with serving(Behaviour(delay=4)) as url:
        delivery_id = _delivery(svc, url)
        start = time.monotonic()
        assert callbacks.attempt(svc, delivery_id) == "pending"
        assert time.monotonic() - start < 3
    (attempt,) = _attempts(svc, delivery_id)
    assert attempt.status_code is None and attempt.error and "Timeout" in attempt.error


def test_delivery_is_abandoned_after_the_retry_window(svc: Services) -> None:
    with serving(Behaviour(status=500)) as url:
        delivery_id = _delivery(svc, url)
        with svc.session() as s:
            s.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == delivery_id)
                .values(created_at=utcnow() - timedelta(days=4))
            )
        assert callbacks.attempt(svc, delivery_id) == "failed"
    assert callbacks.due(svc) == []


def test_backoff_doubles_from_ten_seconds_to_a_six_hour_cap() -> None:
    rng = random.Random(3)
    delays = [callbacks.next_delay(n, rng) for n in range(1, 20)]
    assert 7.5 <= delays[0] <= 12.5
    assert all(0.75 * 6 * 3600 <= d <= 1.25 * 6 * 3600 for d in delays[-5:])
    total = sum(callbacks.next_delay(n, random.Random(n)) for n in range(1, 24))
    assert 2 * 86400 < total < 5 * 86400  # the retries span about three days


def test_due_deliveries_are_leased_so_one_sweep_sends_once(svc: Services) -> None:
    delivery_id = _delivery(svc, "https://registry.example/hooks")
    assert callbacks.due(svc) == []  # the first attempt is dispatched directly
    with svc.session() as s:
        s.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id)
            .values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )
    assert callbacks.due(svc) == [delivery_id]
    assert callbacks.due(svc) == []


@pytest.mark.parametrize(
    "behaviour",
    [Behaviour(body=b"y" * 200, trickle=0.1), Behaviour(stall_in_headers=10)],
    ids=["trickle", "stall"],
)
def test_the_callback_deadline_is_wall_clock_whatever_the_registry_does(
    svc: Services, behaviour: Behaviour
) -> None:
    svc.settings = replace(svc.settings, callback_timeout=1.0)
    with serving(behaviour) as url:
        delivery_id = _delivery(svc, url)
        start = time.monotonic()
        assert callbacks.attempt(svc, delivery_id) == "pending"
        elapsed = time.monotonic() - start
    assert elapsed < 1.5, elapsed
    (attempt,) = _attempts(svc, delivery_id)
    assert attempt.status_code is None and attempt.error and "Timeout" in attempt.error


@pytest.mark.parametrize("secret", ["", "whsec_", "whsec_" + "QUJD"])
def test_no_usable_callback_secret_means_nothing_is_sent(svc: Services, secret: str) -> None:
    svc.settings = replace(svc.settings, callback_secret=secret)
    behaviour = Behaviour(status=204, body=b"")
    with serving(behaviour) as url:
        delivery_id = _delivery(svc, url)
        assert callbacks.attempt(svc, delivery_id) == "pending"
    assert behaviour.requests == []  # never signed with an empty or weak key
    (attempt,) = _attempts(svc, delivery_id)
    assert attempt.error and "GATEHOUSE_CALLBACK_SECRET" in attempt.error
