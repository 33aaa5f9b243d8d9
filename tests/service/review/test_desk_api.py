"""The desk's JSON API: review tokens, sessions with CSRF headers, and the same rules."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from scanner.db import session_scope
from service.cli import main
from service.models import Scan, User
from service.review import claims, decisions
from service.review.accounts import reset_password
from service.services import Services
from service.tokens import TokenError, create_token
from tests.service.conftest import multipart, token, zip_bytes
from tests.service.desk import latest_scan_id, make_user, page_token, sign_in, status_of, submit


def review_token(svc: Services, name: str, role: str = "reviewer") -> str:
    make_user(svc, name, role)
    with session_scope(svc.engine) as s:
        user = s.scalars(select(User).where(User.name == name)).one()
        _, plaintext = create_token(s, name, {"review"}, user=user)
    return plaintext


def auth(bearer: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {bearer}"}


def test_a_review_token_acts_for_its_user_and_others_are_refused(
    client: FlaskClient, svc: Services
) -> None:
    sid = submit(client, {"dist/bundle.js": "SUSPECT"})
    alice = review_token(svc, "alice")
    assert client.get("/api/v1/queue").status_code == 401
    assert client.get("/api/v1/queue", headers=auth(token(svc, "read"))).status_code == 403
    queue = client.get("/api/v1/queue?due=all", headers=auth(alice)).get_json()
    assert [i["submission_id"] for i in queue["items"]] == [sid]
    detail = client.get(f"/api/v1/submissions/{sid}/review", headers=auth(alice)).get_json()
    assert detail["delta"]["first_version"] is True
    finding_id = detail["findings"][0]["id"]
    marked = client.post(
        f"/api/v1/findings/{finding_id}/marks", json={"mark": "fp"}, headers=auth(alice)
    )
    assert marked.status_code == 201
    decided = client.post(
        f"/api/v1/submissions/{sid}/decisions",
        json={"action": "reject", "scan_id": detail["scan"]["id"], "reasons": ["obfuscated-code"]},
        headers=auth(alice),
    )
    assert decided.status_code == 201 and decided.get_json()["status"] == "rejected"
    with pytest.raises(TokenError), session_scope(svc.engine) as s:
        create_token(s, "nobody", {"review"})  # a review token must name its user


def test_a_claim_conflict_names_the_holder(client: FlaskClient, svc: Services) -> None:
    sid = submit(client, {"dist/bundle.js": "SUSPECT"})
    alice, bob = review_token(svc, "alice"), review_token(svc, "bob")
    assert client.post(f"/api/v1/submissions/{sid}/claim", headers=auth(alice)).status_code == 200
    taken = client.post(f"/api/v1/submissions/{sid}/claim", headers=auth(bob))
    assert taken.status_code == 409 and taken.get_json()["holder"] == "alice"
    refused = client.post(
        f"/api/v1/submissions/{sid}/decisions",
        json={"action": "approve", "scan_id": latest_scan_id(svc, sid)},
        headers=auth(bob),
    )
    assert refused.status_code == 409 and status_of(svc, sid) == "awaiting_review"
    assert client.delete(f"/api/v1/submissions/{sid}/claim", headers=auth(alice)).status_code == 204


def test_a_session_may_call_the_api_but_state_changes_need_the_csrf_header(
    client: FlaskClient, svc: Services
) -> None:
    sid = submit(client, {"dist/bundle.js": "SUSPECT"})
    make_user(svc, "alice")
    sign_in(client, "alice")
    assert client.get("/api/v1/queue").status_code == 200
    body = {"action": "approve", "scan_id": latest_scan_id(svc, sid)}
    refused = client.post(f"/api/v1/submissions/{sid}/decisions", json=body)
    assert refused.status_code == 403 and status_of(svc, sid) == "awaiting_review"
    ok = client.post(
        f"/api/v1/submissions/{sid}/decisions",
        json=body,
        headers={"X-CSRFToken": page_token(client)},
    )
    assert ok.status_code == 201 and status_of(svc, sid) == "approved"


def test_admin_operations_need_an_admin(client: FlaskClient, svc: Services) -> None:
    submit(client, {"dist/bundle.js": "SUSPECT"})
    alice, root = review_token(svc, "alice"), review_token(svc, "root", "admin")
    body = {"name": "dave", "role": "reviewer"}
    assert client.post("/api/v1/users", json=body, headers=auth(alice)).status_code == 403
    made = client.post("/api/v1/users", json=body, headers=auth(root))
    assert made.status_code == 201 and len(made.get_json()["one_time_password"]) >= 16
    assert made.headers["Cache-Control"] == "no-store"
    trust = {"level": "trusted", "why": "long record"}
    assert (
        client.put("/api/v1/publishers/pub-1/trust", json=trust, headers=auth(alice)).status_code
        == 403
    )
    assert (
        client.put("/api/v1/publishers/pub-1/trust", json=trust, headers=auth(root)).status_code
        == 200
    )
    switch = client.put("/api/v1/auto-approval", json={"enabled": True}, headers=auth(root))
    assert switch.status_code == 200
    assert client.get("/api/v1/auto-approval", headers=auth(alice)).get_json()["enabled"] is True
    entry = {
        "rule_id": "desk-suspect",
        "stage": "desk@1",
        "publisher": "pub-1",
        "plugin": "demo",
        "reason": "known benign",
        "expires_at": "2099-01-01T00:00:00Z",
    }
    too_long = client.post("/api/v1/allowlist", json=entry, headers=auth(root))
    assert too_long.status_code == 422 and "at most" in too_long.get_json()["detail"]


def test_gatehouse_users_add_prints_a_one_time_password_that_signs_in_once(
    client: FlaskClient,
    svc: Services,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("GATEHOUSE_DATA_DIR", str(svc.settings.data_dir))
    monkeypatch.setenv("GATEHOUSE_DATABASE_URL", str(svc.engine.url))
    assert main(["users", "add", "erin", "--role", "reviewer"]) == 0
    otp = capsys.readouterr().out.strip()
    assert main(["users", "add", "erin", "--role", "reviewer"]) == 2  # exists
    assert main(["users", "add", "Bad Name", "--role", "admin"]) == 2
    assert sign_in(client, "erin", otp).headers["Location"] == "/account/password"


def test_the_admin_endpoints_for_findings_due_dates_yank_and_reasons(
    client: FlaskClient, svc: Services
) -> None:
    sid = submit(client, {"dist/bundle.js": "var x = 1; // SUSPECT"})
    alice, root = review_token(svc, "alice"), review_token(svc, "root", "admin")
    detail = client.get(f"/api/v1/submissions/{sid}/review", headers=auth(alice)).get_json()
    finding = detail["findings"][0]["id"]
    body = {"scope": "plugin", "reason": "a comment", "days": 7}
    assert (
        client.post(
            f"/api/v1/findings/{finding}/allowlist", json=body, headers=auth(alice)
        ).status_code
        == 403
    )
    made = client.post(f"/api/v1/findings/{finding}/allowlist", json=body, headers=auth(root))
    assert made.status_code == 201 and made.get_json()["rule_version"] == "desk@1"
    entries = client.get("/api/v1/allowlist", headers=auth(alice)).get_json()["entries"]
    assert entries[0]["file_sha256"] == detail["findings"][0]["file_sha256"]  # bound by default
    assert entries[0]["state"] == "active" and entries[0]["plugin"] == "demo"
    due = {"due_at": "2030-01-02T03:04:05Z", "why": "holiday"}
    moved = client.put(f"/api/v1/submissions/{sid}/due", json=due, headers=auth(root))
    assert moved.status_code == 200
    queue = client.get("/api/v1/queue?due=all", headers=auth(alice)).get_json()["items"]
    assert queue[0]["due_at"] == "2030-01-02T03:04:05Z" and queue[0]["due_overridden"]
    reason = {"title": "Tracks users", "text": "It sends identifiers to a third party."}
    assert (
        client.put("/api/v1/reasons/tracking", json=reason, headers=auth(root)).status_code == 200
    )
    codes = {
        r["code"] for r in client.get("/api/v1/reasons", headers=auth(alice)).get_json()["reasons"]
    }
    assert "tracking" in codes
    approve = {"action": "approve", "scan_id": detail["scan"]["id"]}
    assert (
        client.post(
            f"/api/v1/submissions/{sid}/decisions", json=approve, headers=auth(alice)
        ).status_code
        == 201
    )
    yank = {"why": "the maintainer's account was taken over"}
    assert (
        client.post(f"/api/v1/submissions/{sid}/yank", json=yank, headers=auth(alice)).status_code
        == 403
    )
    yanked = client.post(f"/api/v1/submissions/{sid}/yank", json=yank, headers=auth(root))
    assert yanked.status_code == 201 and yanked.get_json()["status"] == "yanked"


def test_a_password_reset_revokes_the_users_api_tokens(client: FlaskClient, svc: Services) -> None:
    alice = review_token(svc, "alice")
    assert client.get("/api/v1/queue", headers=auth(alice)).status_code == 200
    with session_scope(svc.engine) as s:
        user = s.scalars(select(User).where(User.name == "alice")).one()
        reset_password(s, user, "root")
    assert client.get("/api/v1/queue", headers=auth(alice)).status_code == 401


def test_a_ci_users_preflight_report_is_not_shown_on_the_desk(
    client: FlaskClient, svc: Services
) -> None:
    body, ctype = multipart({}, {"bundle": ("plugin.zip", zip_bytes())})
    started = client.post(
        "/api/v1/scans", data=body, headers={"Content-Type": ctype, **auth(token(svc, "preflight"))}
    )
    assert started.status_code == 202
    scan_id = started.get_json()["id"]
    with svc.session() as s:
        assert s.get_one(Scan, scan_id).report is not None  # concluded: there is one to hide
    make_user(svc, "alice")
    sign_in(client, "alice")
    assert client.get(f"/scans/{scan_id}/report.json").status_code == 404


def test_a_rescan_respects_claims_and_only_an_admin_reopens_a_reviewers_rejection(
    client: FlaskClient, svc: Services
) -> None:
    sid = submit(client, {"dist/bundle.js": "SUSPECT"})
    alice, bob = make_user(svc, "alice"), make_user(svc, "bob")
    root = make_user(svc, "root", "admin")
    with session_scope(svc.engine) as s:
        claims.claim(s, sid, alice, 30)
    with pytest.raises(claims.ClaimHeldError):
        decisions.rescan(svc, sid, bob)
    decisions.decide(
        svc,
        sid,
        alice,
        "reject",
        scan_id=latest_scan_id(svc, sid),
        reason_codes=["obfuscated-code"],
    )
    with pytest.raises(decisions.DecisionError, match="only by an admin"):
        decisions.rescan(svc, sid, bob)
    decisions.rescan(svc, sid, root)
    assert status_of(svc, sid) == "awaiting_review"
