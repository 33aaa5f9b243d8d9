"""Retro-scans: a rule deployment or an advisory import rescans promoted versions, in
order, a few at a time on the low-priority queue; worse is flagged (or killed), better
clears the flag."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from scanner.advisories.feeds import AdvisoryRecord, Feed
from scanner.advisories.store import AdvisoryStore
from scanner.db import session_scope
from service import orchestration
from service.cdn import retro
from service.cdn import sync as cdn_sync
from service.models import (
    Decision,
    Promotion,
    RetroGeneration,
    RetroItem,
    ReviewItem,
    Scan,
    ScanKind,
    Submission,
    User,
    utcnow,
)
from service.review import decisions
from service.review.accounts import Actor
from service.review.comparison import completed_scan, delta_for
from service.review.queue import QueueFilter, list_queue
from service.services import Services
from service.tokens import create_token
from tests.service.cdn.conftest import approve, deploy_words, fetch
from tests.service.conftest import InlineJobQueue
from tests.service.desk import latest_scan_id, status_of, submit
from workers.celery_app import queue_of

SLEEPER = {"dist/bundle.js": "var P = {mount: function () { /* SLEEPER */ }};"}
PLAIN = {"dist/bundle.js": "var P = {mount: function () {}};"}


def _review(svc: Services, sid: str) -> ReviewItem:
    with svc.session() as s:
        item = s.get_one(ReviewItem, sid)
        s.expunge(item)
        return item


def test_the_order_is_newest_of_each_plugin_by_use_then_the_rest() -> None:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [
        ("a1", "a", t, 500),
        ("a2", "a", t + timedelta(days=1), 1),
        ("b1", "b", t, 10),
        ("c1", "c", t + timedelta(days=2), 0),
        ("a0", "a", t - timedelta(days=1), 900),
    ]
    # a's newest (plugin a used 1401 times), then c's, b's; then a's older ones by use.
    assert retro.order(rows) == ["a2", "b1", "c1", "a0", "a1"]


def test_retro_work_goes_to_the_low_priority_queue() -> None:
    assert queue_of("js-static", background=True) == "retro"
    assert queue_of("js-static") == "scan"
    assert queue_of("runtime", background=True) == "browser"  # only browser hosts run it
    assert queue_of("antivirus", background=True) == "av"


def test_a_rule_change_flags_a_worse_version_with_the_delta_and_a_prefilled_yank(
    client: FlaskClient, svc: Services, admin: Actor, jobs: InlineJobQueue
) -> None:
    flagged = approve(client, svc, admin, SLEEPER)
    clean = approve(client, svc, admin, PLAIN, name="other")
    orchestration.sweep(svc)  # the first generation: everything is current
    assert retro.progress(svc).stale == []
    deploy_words(svc, "SLEEPER:obfuscation:high")  # worse, but not a kill
    counts = orchestration.sweep(svc)
    assert counts["retro"] == 2
    with svc.session() as s:
        kinds = list(s.scalars(select(Scan.kind).where(Scan.kind == ScanKind.RETRO)))
        outcomes = dict(s.execute(select(RetroItem.submission_id, RetroItem.outcome)).all())
    assert len(kinds) == 2  # both rescanned
    assert outcomes == {flagged: "worse", clean: "same"}
    item = _review(svc, flagged)
    assert item.retro_state == "flagged" and item.retro_delta is not None
    delta = item.retro_delta
    assert [f["rule_id"] for f in delta["new_findings"]] == ["sleeper-sleeper"]  # only the new
    assert delta["verdict_after"] == "reject" and "SLEEPER" in delta["suggested_yank"]
    assert status_of(svc, flagged) == "promoted"  # flagged for a person, not yanked
    assert _review(svc, clean).retro_state is None
    with svc.session() as s:
        page = list_queue(s, QueueFilter(status="retro", due="all"))
    assert [r.submission_id for r in page.rows] == [flagged]
    assert len(jobs.background) == 2  # their stages went out as background work


def test_the_kill_switch_yanks_critical_malware_at_once(
    client: FlaskClient, svc: Services, admin: Actor
) -> None:
    sid = approve(client, svc, admin, SLEEPER)
    orchestration.sweep(svc)
    deploy_words(svc, "SLEEPER")  # critical malware
    orchestration.sweep(svc)
    assert status_of(svc, sid) == "yanked"
    assert fetch(client, "/cdn/demo/1.0.0/dist/bundle.js").status == 410
    item = _review(svc, sid)
    assert item.retro_state == "yanked" and item.retro_delta is not None
    with svc.session() as s:
        d = s.scalars(select(Decision).where(Decision.action == "yank")).one()
    assert d.actor == "kill-switch" and "kill switch" in (d.message or "")


def test_a_rescan_no_worse_than_the_approval_clears_the_flag(
    client: FlaskClient, svc: Services, admin: Actor
) -> None:
    sid = approve(client, svc, admin, SLEEPER)
    orchestration.sweep(svc)
    deploy_words(svc, "SLEEPER:obfuscation:high")
    orchestration.sweep(svc)
    assert _review(svc, sid).retro_state == "flagged"
    deploy_words(svc, "NOTHING")  # the rule is fixed
    orchestration.sweep(svc)
    assert _review(svc, sid).retro_state == "cleared"


def test_an_advisory_import_opens_a_generation(
    client: FlaskClient, svc: Services, admin: Actor
) -> None:
    approve(client, svc, admin, PLAIN)
    orchestration.sweep(svc)
    assert retro.detect(svc) is None
    record = AdvisoryRecord("GHSA-test", (), "high", None, "2026-01-01", None, (), ())
    AdvisoryStore(svc.engine).import_feed(Feed("test-feed", "osv", [record]))
    generation = retro.detect(svc)
    assert generation is not None
    with svc.session() as s:
        assert s.get_one(RetroGeneration, generation).reason == "advisories"
    AdvisoryStore(svc.engine).import_feed(Feed("test-feed", "osv", [record]))
    assert retro.detect(svc) is None  # the same data again changes nothing


def test_no_more_than_the_limit_run_and_the_ui_says_when_the_rest_are_reached(
    client: FlaskClient, svc: Services, admin: Actor, jobs: InlineJobQueue
) -> None:
    for n in range(4):
        approve(client, svc, admin, PLAIN, name=f"p{n}")
    orchestration.sweep(svc)
    deploy_words(svc, "X")
    jobs.hold = True  # the rescans start but do not run
    orchestration.sweep(svc)
    retro.tick(svc)
    with svc.session() as s:
        running = s.scalar(select(func.count()).where(RetroItem.state == "running"))
    assert running == svc.settings.retro_concurrency == 2
    # Two finished in the last ten minutes: 12 an hour; the next is about 5 minutes away.
    with svc.session() as s:
        s.execute(
            update(RetroItem)
            .where(RetroItem.state == "running")
            .values(state="done", started_at=utcnow() - timedelta(minutes=10), finished_at=utcnow())
        )
    p = retro.progress(svc)
    assert p.planned == 2 and p.done == 2 and p.per_hour == pytest.approx(12, rel=0.05)
    waiting = [v for v in p.stale if v.state == "planned"]
    assert [v.position for v in waiting] == [0, 1]
    assert waiting[0].eta is not None
    assert timedelta(minutes=4) < waiting[0].eta - utcnow() < timedelta(minutes=6)
    page = client.get("/api/v1/cdn/retro", headers=_bearer(svc))
    assert page.status_code == 200 and page.get_json()["planned"] == 2


def _bearer(svc: Services) -> dict[str, str]:
    with session_scope(svc.engine) as s:
        user = s.scalars(select(User).where(User.name == "root")).one()
        _, token = create_token(s, "t", {"review"}, user=user)
    return {"Authorization": f"Bearer {token}"}


def test_a_version_published_after_a_deployment_it_was_approved_before_is_rescanned(
    client: FlaskClient, svc: Services, admin: Actor, jobs: InlineJobQueue
) -> None:
    sid = submit(client, SLEEPER)
    jobs.hold = True  # the promotion waits in the cdn queue
    decisions.decide(svc, sid, admin, "approve", scan_id=latest_scan_id(svc, sid))
    jobs.hold = False
    orchestration.sweep(svc)  # the first generation: nothing promoted yet
    deploy_words(svc, "SLEEPER")  # critical malware, deployed while the promotion waits
    orchestration.sweep(svc)  # the new generation plans nothing: the version is not out
    with svc.session() as s:
        promotion = s.scalars(select(Promotion).where(Promotion.submission_id == sid)).one()
    cdn_sync.sync(svc, promotion.id)
    assert status_of(svc, sid) == "promoted"
    orchestration.sweep(svc)  # published since the plan, judged with other rules: planned
    assert status_of(svc, sid) == "yanked"
    assert fetch(client, "/cdn/demo/1.0.0/dist/bundle.js").status == 410


def test_an_approval_binds_to_the_advisory_data_as_well_as_the_rules(
    client: FlaskClient, svc: Services, admin: Actor
) -> None:
    sid = submit(client, PLAIN)
    scan_id = latest_scan_id(svc, sid)
    record = AdvisoryRecord("GHSA-test", (), "high", None, "2026-01-01", None, (), ())
    AdvisoryStore(svc.engine).import_feed(Feed("test-feed", "osv", [record]))
    with pytest.raises(decisions.StaleScanError, match="advisory data changed"):
        decisions.decide(svc, sid, admin, "approve", scan_id=scan_id)
    decisions.rescan(svc, sid, admin)
    decisions.decide(svc, sid, admin, "approve", scan_id=latest_scan_id(svc, sid))
    assert status_of(svc, sid) == "promoted"


def test_the_kill_switch_fires_when_a_rule_is_corrected_to_malware(
    client: FlaskClient, svc: Services, admin: Actor
) -> None:
    deploy_words(svc, "SLEEPER:obfuscation:medium")  # today a person looks
    sid = approve(client, svc, admin, SLEEPER)
    orchestration.sweep(svc)
    deploy_words(svc, "SLEEPER:malware:critical")  # the same rule id, now malware
    orchestration.sweep(svc)
    assert status_of(svc, sid) == "yanked"
    delta = _review(svc, sid).retro_delta or {}
    assert [(f["rule_id"], f["severity"]) for f in delta["new_findings"]] == [
        ("sleeper-sleeper", "critical")
    ]


def test_the_delta_compares_with_what_was_approved_not_a_later_flagged_rescan(
    client: FlaskClient, svc: Services, admin: Actor
) -> None:
    approve(client, svc, admin, SLEEPER)
    orchestration.sweep(svc)
    deploy_words(svc, "SLEEPER:obfuscation:high")
    orchestration.sweep(svc)  # the promoted version is rescanned and flagged
    same_code = submit(client, SLEEPER, version="1.0.1")
    with svc.session() as s:
        scan = completed_scan(s, same_code)
        assert scan is not None
        delta = delta_for(s, s.get_one(Submission, same_code), scan)
    assert [f["rule_id"] for f in delta.new_findings] == ["sleeper-sleeper"]
    assert not delta.routine
