"""The desk's workflow on the service: queue, claims, decisions bound to the scanned bytes,
callbacks, rescans, marks, allowlists and auto-approval (SQLite, stages the test drives)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from scanner.db import session_scope
from scanner.ruleset import ruleset_hash
from service.models import (
    AuditEntry,
    Decision,
    FindingRecord,
    ReviewItem,
    Scan,
    Submission,
    WebhookDelivery,
    utcnow,
)
from service.review import allowlists, autoapprove, claims, decisions, marks
from service.review.queue import QueueFilter, list_queue, override_due
from service.services import Services
from tests.service.desk import latest_scan_id, make_user, set_trust, status_of, submit

CALLBACK = "https://registry.example/hooks"


def events(svc: Services, submission_id: str) -> list[dict[str, object]]:
    with session_scope(svc.engine) as s:
        rows = s.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.submission_id == submission_id)
            .order_by(WebhookDelivery.id)
        )
        return [json.loads(r.body) for r in rows]


def review(
    client: FlaskClient, version: str = "1.0.0", body: str = "var a = 1; // SUSPECT\n"
) -> str:
    return submit(client, {"dist/bundle.js": body}, version=version, callback_url=CALLBACK)


def test_a_reviewed_submission_waits_in_the_queue_with_its_reasons(
    client: FlaskClient, svc: Services
) -> None:
    sid = review(client)
    assert status_of(svc, sid) == "awaiting_review"
    with session_scope(svc.engine) as s:
        page = list_queue(s, QueueFilter())
    (row,) = page.rows
    assert (row.submission_id, row.verdict, row.first_version) == (sid, "review", True)
    assert row.categories == ["obfuscation"]
    assert "desk-suspect" in row.reasons[0]["text"]
    assert page.counts["verdict:review"] == 1 and page.counts["total"] == 1


def test_the_queue_orders_by_due_date_then_risk_and_filters(
    client: FlaskClient, svc: Services
) -> None:
    low = review(client, "1.0.0")
    high = review(client, "1.0.1", "SUSPECT\nSUSPECT\nNOTE\n")
    other = submit(client, {"dist/bundle.js": "SUSPECT"}, publisher_id="pub-2", name="other")
    admin = make_user(svc, "root", "admin")
    with session_scope(svc.engine) as s:
        # All due at once: the riskier first. Then one moved earlier by an admin, logged.
        soon = utcnow() + timedelta(hours=1)
        for item in s.scalars(select(ReviewItem)):
            item.due_at = soon
        s.flush()
        order = [r.submission_id for r in list_queue(s, QueueFilter()).rows]
        assert order.index(high) < order.index(low)
        override_due(s, low, utcnow() - timedelta(hours=2), admin, "registry asked")
    with session_scope(svc.engine) as s:
        rows = list_queue(s, QueueFilter()).rows
        assert rows[0].submission_id == low and rows[0].overdue and rows[0].due_overridden
        assert [r.submission_id for r in list_queue(s, QueueFilter(due="overdue")).rows] == [low]
        assert [r.submission_id for r in list_queue(s, QueueFilter(publisher="pub-2")).rows] == [
            other
        ]
        assert list_queue(s, QueueFilter(category="malware")).rows == []
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "due.override")).one()
        assert entry.actor == "user:root" and entry.data["why"] == "registry asked"


def test_approve_binds_to_the_scan_and_sends_the_signed_callback(
    client: FlaskClient, svc: Services
) -> None:
    sid = review(client)
    alice = make_user(svc, "alice")
    scan_id = latest_scan_id(svc, sid)
    outcome = decisions.decide(svc, sid, alice, "approve", scan_id=scan_id)
    assert outcome.status == "approved" == status_of(svc, sid)
    with session_scope(svc.engine) as s:
        d = s.get_one(Decision, outcome.decision_id)
        scan = s.get_one(Scan, scan_id)
        assert (d.kind, d.action, d.user_id) == ("reviewer", "approve", alice.user_id)
        assert d.bundle_sha256 == scan.bundle_sha256 and d.ruleset == scan.ruleset
        item = s.get_one(ReviewItem, sid)
        assert item.status == "approved"  # left the queue with the submission
    approved = events(svc, sid)[-1]
    assert approved["type"] == "submission.approved"
    assert approved["data"]["decision"]["by"] == "reviewer"  # type: ignore[index]
    with pytest.raises(decisions.DecisionError):  # a decided submission is not decided twice
        decisions.decide(svc, sid, alice, "reject", scan_id=scan_id, reason_codes=["dom-escape"])


def test_a_decision_on_a_stale_scan_is_refused_until_rescanned(
    client: FlaskClient, svc: Services, tmp_path: Path
) -> None:
    sid = review(client)
    alice = make_user(svc, "alice")
    old_scan = latest_scan_id(svc, sid)
    # The rules change after the scan (a new rules tree: ruleset_hash caches per path).
    rules = tmp_path / "rules-next"
    shutil.copytree(svc.settings.rules_dir, rules)
    (rules / "policy.toml").write_text(
        (rules / "policy.toml").read_text() + "\n# tightened\n", encoding="utf-8"
    )
    changed = replace(svc, settings=replace(svc.settings, rules_dir=rules))
    assert ruleset_hash(rules) != ruleset_hash(svc.settings.rules_dir)
    with pytest.raises(decisions.StaleScanError, match="rules changed"):
        decisions.decide(changed, sid, alice, "approve", scan_id=old_scan)
    assert status_of(svc, sid) == "awaiting_review"
    new_scan = decisions.rescan(changed, sid, alice)  # the inline queue runs it at once
    assert status_of(svc, sid) == "awaiting_review" and new_scan != old_scan
    with pytest.raises(decisions.StaleScanError, match="rescanned"):
        decisions.decide(changed, sid, alice, "approve", scan_id=old_scan)


def test_a_scan_of_other_bytes_cannot_be_decided_on(client: FlaskClient, svc: Services) -> None:
    sid = review(client)
    scan_id = latest_scan_id(svc, sid)
    with session_scope(svc.engine) as s:
        s.get_one(Submission, sid).bundle_sha256 = "0" * 64  # the scan saw other bytes
    with pytest.raises(decisions.StaleScanError, match="bytes"):
        decisions.decide(svc, sid, make_user(svc, "alice"), "approve", scan_id=scan_id)


def test_a_claim_keeps_others_from_deciding_until_it_expires_or_is_released(
    client: FlaskClient, svc: Services
) -> None:
    sid = review(client)
    alice, bob = make_user(svc, "alice"), make_user(svc, "bob")
    admin = make_user(svc, "root", "admin")
    scan_id = latest_scan_id(svc, sid)
    with session_scope(svc.engine) as s:
        claims.claim(s, sid, alice, 30)
    with pytest.raises(claims.ClaimHeldError) as held, session_scope(svc.engine) as s:
        claims.claim(s, sid, bob, 30)
    assert held.value.holder == "alice"
    with pytest.raises(claims.ClaimHeldError):
        decisions.decide(svc, sid, bob, "approve", scan_id=scan_id)
    with pytest.raises(claims.ClaimHeldError), session_scope(svc.engine) as s:
        claims.release(s, sid, bob)  # only the holder or an admin releases
    with session_scope(svc.engine) as s:
        s.get_one(ReviewItem, sid).claim_expires_at = utcnow() - timedelta(seconds=1)
    with session_scope(svc.engine) as s:
        claims.claim(s, sid, bob, 30)  # expired: free to take
        claims.release(s, sid, admin)  # an admin may release anyone's
    decisions.decide(svc, sid, alice, "approve", scan_id=scan_id)
    with session_scope(svc.engine) as s:
        actions = list(s.scalars(select(AuditEntry.action).where(AuditEntry.subject_id == sid)))
    assert actions.count("claim.taken") == 2 and "claim.released" in actions


def test_reject_needs_canned_reasons_and_the_callback_carries_them(
    client: FlaskClient, svc: Services
) -> None:
    sid = review(client)
    alice = make_user(svc, "alice")
    scan_id = latest_scan_id(svc, sid)
    with pytest.raises(decisions.InvalidDecisionError):
        decisions.decide(svc, sid, alice, "reject", scan_id=scan_id)
    with pytest.raises(decisions.InvalidDecisionError, match="unknown"):
        decisions.decide(svc, sid, alice, "reject", scan_id=scan_id, reason_codes=["made-up"])
    decisions.decide(
        svc,
        sid,
        alice,
        "reject",
        scan_id=scan_id,
        reason_codes=["obfuscated-code", "dom-escape"],
        message="see line 1",
    )
    rejected = events(svc, sid)[-1]
    assert rejected["type"] == "submission.rejected"
    decision = rejected["data"]["decision"]  # type: ignore[index]
    assert [r["code"] for r in decision["reasons"]] == ["obfuscated-code", "dom-escape"]
    assert decision["reasons"][0]["text"].startswith("Code must be reviewable")
    assert decision["message"] == "see line 1"


def test_request_changes_takes_it_out_of_the_queue_and_tells_the_publisher(
    client: FlaskClient, svc: Services
) -> None:
    sid = review(client)
    alice = make_user(svc, "alice")
    scan_id = latest_scan_id(svc, sid)
    with pytest.raises(decisions.InvalidDecisionError):
        decisions.decide(svc, sid, alice, "request_changes", scan_id=scan_id)
    decisions.decide(
        svc, sid, alice, "request_changes", scan_id=scan_id, message="declare your origin"
    )
    assert status_of(svc, sid) == "changes_requested"
    with session_scope(svc.engine) as s:
        assert list_queue(s, QueueFilter(due="all")).rows == []
    last = events(svc, sid)[-1]
    assert last["type"] == "submission.changes_requested"
    assert last["data"]["decision"]["message"] == "declare your origin"  # type: ignore[index]


def test_an_admin_may_yank_an_approval_and_a_reviewer_may_not(
    client: FlaskClient, svc: Services
) -> None:
    sid = review(client)
    alice, admin = make_user(svc, "alice"), make_user(svc, "root", "admin")
    decisions.decide(svc, sid, alice, "approve", scan_id=latest_scan_id(svc, sid))
    with pytest.raises(decisions.DecisionError):
        decisions.yank(svc, sid, alice, "oops")
    decisions.yank(svc, sid, admin, "a maintainer account was taken over")
    assert status_of(svc, sid) == "yanked"
    last = events(svc, sid)[-1]
    assert last["type"] == "submission.yanked"
    assert last["data"]["reason"] == "a maintainer account was taken over"  # type: ignore[index]


def test_marks_give_each_rule_a_precision_and_flag_the_weak_ones(
    client: FlaskClient, svc: Services
) -> None:
    sid = review(client, body="SUSPECT\nSUSPECT\nSUSPECT\nSUSPECT\nSUSPECT\nNOTE\n")
    alice = make_user(svc, "alice")
    settings = replace(svc.settings, review_min_marks=5, precision_threshold=0.5)
    with session_scope(svc.engine) as s:
        rows = list(s.scalars(select(FindingRecord).where(FindingRecord.rule_id == "desk-suspect")))
        for i, row in enumerate(rows):
            marks.mark_finding(s, row.id, alice, "tp" if i == 0 else "fp")
        marks.mark_finding(s, rows[1].id, alice, "tp")  # a later mark replaces the earlier
        note = s.scalars(select(FindingRecord).where(FindingRecord.rule_id == "desk-note")).one()
        marks.mark_finding(s, note.id, alice, "tp")
        by_rule = {r.rule_id: r for r in marks.precision_by_rule(s, settings)}
    assert (by_rule["desk-suspect"].true_positives, by_rule["desk-suspect"].false_positives) == (
        2,
        3,
    )
    assert by_rule["desk-suspect"].precision == 0.4 and by_rule["desk-suspect"].flagged
    assert not by_rule["desk-note"].flagged  # too few marks to judge
    assert sid


def test_an_allowlisted_false_positive_is_suppressed_on_the_next_scan_only_in_its_scope(
    client: FlaskClient, svc: Services
) -> None:
    body = "var x = 1; // SUSPECT\n"
    sid = review(client, body=body)
    other_publisher = submit(
        client, {"dist/bundle.js": body}, publisher_id="pub-2", callback_url=CALLBACK
    )
    admin, alice = make_user(svc, "root", "admin"), make_user(svc, "alice")
    with session_scope(svc.engine) as s:
        finding = s.scalars(
            select(FindingRecord).where(FindingRecord.scan_id == latest_scan_id(svc, sid))
        ).one()
        with pytest.raises(allowlists.AllowlistError):  # reviewers mark; admins allowlist
            allowlists.from_false_positive(
                s,
                svc.settings,
                alice,
                finding.id,
                scope="plugin",
                bind_file=True,
                days=30,
                reason="x",
            )
        entry = allowlists.from_false_positive(
            s,
            svc.settings,
            admin,
            finding.id,
            scope="plugin",
            bind_file=True,
            days=30,
            reason="a comment, not code",
        )
        entry_id, version = entry.id, entry.rule_version
    assert version == "desk@1"
    decisions.rescan(svc, sid, alice)
    decisions.rescan(svc, other_publisher, alice)
    with session_scope(svc.engine) as s:
        report = s.get_one(Scan, latest_scan_id(svc, sid)).report
        assert report is not None and report["verdict"] == "pass"
        assert report["findings"][0]["suppressed_by"] == f"allowlist:{entry_id}"
        # The same plugin name and bytes from another publisher: not covered.
        other = s.get_one(Scan, latest_scan_id(svc, other_publisher)).report
        assert other is not None and other["verdict"] == "review"
        assert "suppressed_by" not in other["findings"][0]


def test_an_allowlist_entry_bound_to_a_file_does_not_follow_changed_bytes(
    client: FlaskClient, svc: Services
) -> None:
    sid = review(client, body="var x = 1; // SUSPECT\n")
    admin = make_user(svc, "root", "admin")
    with session_scope(svc.engine) as s:
        finding = s.scalars(
            select(FindingRecord).where(FindingRecord.scan_id == latest_scan_id(svc, sid))
        ).one()
        allowlists.from_false_positive(
            s, svc.settings, admin, finding.id, scope="plugin", bind_file=True, days=30, reason="ok"
        )
    # The next version hides new code behind the same rule in the same file: not covered.
    update = review(client, "1.0.1", "var x = 1; // SUSPECT\nsteal(); // SUSPECT\n")
    with session_scope(svc.engine) as s:
        report = s.get_one(Scan, latest_scan_id(svc, update)).report
    assert report is not None and report["verdict"] == "review"
    assert all("suppressed_by" not in f for f in report["findings"])


def test_expired_revoked_and_void_entries_suppress_nothing(
    client: FlaskClient, svc: Services
) -> None:
    sid = review(client)
    admin = make_user(svc, "root", "admin")
    with session_scope(svc.engine) as s:
        publisher_id = s.get_one(ReviewItem, sid).publisher_id

        def entry(version: str) -> int:
            made = allowlists.create(
                s,
                svc.settings,
                admin,
                rule_id="desk-suspect",
                rule_version_=version,
                publisher_id=publisher_id,
                plugin_name="demo",
                file_sha256=None,
                reason="test",
                expires_at=utcnow() + timedelta(days=1),
            )
            return made.id

        entry("desk@0")  # made against an older version of the rule: void
        revoked = entry("desk@1")
        allowlists.revoke(s, admin, revoked, "no longer true")
        with pytest.raises(allowlists.AllowlistError, match="at most"):
            allowlists.create(
                s,
                svc.settings,
                admin,
                rule_id="desk-suspect",
                rule_version_="desk@1",
                publisher_id=publisher_id,
                plugin_name=None,
                file_sha256=None,
                reason="forever",
                expires_at=utcnow() + timedelta(days=svc.settings.allowlist_max_days + 1),
            )
        assert (
            allowlists.suppressions_for(s, publisher_id, "demo", utcnow() + timedelta(days=2)) == []
        )
    decisions.rescan(svc, sid, admin)
    with session_scope(svc.engine) as s:
        report = s.get_one(Scan, latest_scan_id(svc, sid)).report
    assert report is not None and report["verdict"] == "review"


def test_coverage_gaps_cannot_be_allowlisted(client: FlaskClient, svc: Services) -> None:
    sid = review(client)
    admin = make_user(svc, "root", "admin")
    with session_scope(svc.engine) as s:
        scan_id = latest_scan_id(svc, sid)
        gap = FindingRecord(
            scan_id=scan_id,
            stage_run_id=s.scalars(select(FindingRecord.stage_run_id)).first(),
            stage="desk",
            rule_id="desk-gap",
            category="coverage",
            severity=2,
            message="gap",
            state="enabled",
        )
        s.add(gap)
        s.flush()
        with pytest.raises(allowlists.AllowlistError, match="coverage"):
            allowlists.from_false_positive(
                s, svc.settings, admin, gap.id, scope="plugin", bind_file=False, days=1, reason="x"
            )


def test_auto_approval_is_off_by_default_and_then_approves_only_routine_trusted_updates(
    client: FlaskClient, svc: Services
) -> None:
    admin = make_user(svc, "root", "admin")
    first = submit(client, {"dist/bundle.js": "var a = 1;"}, callback_url=CALLBACK)
    decisions.decide(svc, first, admin, "approve", scan_id=latest_scan_id(svc, first))
    set_trust(svc, "pub-1", "trusted")
    off = submit(client, {"dist/bundle.js": "var a = 2;"}, version="1.0.1", callback_url=CALLBACK)
    assert status_of(svc, off) == "awaiting_review"  # off by default
    with session_scope(svc.engine) as s:
        ((item, evaluation),) = autoapprove.dry_run(s)
    assert item.submission_id == off and evaluation.eligible  # the dry run says it would
    with session_scope(svc.engine) as s:
        autoapprove.set_enabled(s, admin, True)
    routine = submit(
        client, {"dist/bundle.js": "var a = 3;"}, version="1.0.2", callback_url=CALLBACK
    )
    assert status_of(svc, routine) == "approved"
    with session_scope(svc.engine) as s:
        d = s.scalars(
            select(Decision).where(Decision.submission_id == routine, Decision.kind == "system")
        ).one()
        assert d.action == "approve" and d.actor == "auto-approval"
        assert any("nothing new" in r["text"] for r in d.reasons)
    assert events(svc, routine)[-1]["data"]["decision"]["by"] == "auto-approval"  # type: ignore[index]
    # Something new (a finding) or a first version of another plugin: a person decides.
    noisy = submit(
        client, {"dist/bundle.js": "var a = 4; // NOTE"}, version="1.0.3", callback_url=CALLBACK
    )
    fresh = submit(
        client, {"dist/bundle.js": "var a = 1;"}, name="brand-new", callback_url=CALLBACK
    )
    assert status_of(svc, noisy) == "awaiting_review" == status_of(svc, fresh)
    with session_scope(svc.engine) as s:
        declined = s.scalars(
            select(AuditEntry).where(AuditEntry.action == "auto_approval.declined")
        ).all()
        why = {e.subject_id: " ".join(e.data["why"]) for e in declined}
    assert "new findings: desk-note" in why[noisy] and "first version" in why[fresh]
