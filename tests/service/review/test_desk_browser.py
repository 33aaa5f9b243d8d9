"""The desk driven in real headless Chromium: sign-in, the queue and its keys, claims,
decisions, the delta, allowlists, auto-approval, and hostile bundles that must not run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from flask.testing import FlaskClient
from playwright.sync_api import Browser, expect
from sqlalchemy import select, update

from scanner.db import session_scope
from service.models import AllowlistEntry, ReviewItem, WebhookDelivery, utcnow
from service.review import decisions
from service.services import Services
from tests.service.desk import latest_scan_id, make_user, set_trust, status_of, submit
from tests.service.review.browser import chromium, desk_server, shot, sign_in, watched
from tests.service.review.test_desk_pages import SCRIPT, XSS, hostile_bundle

pytestmark = pytest.mark.integration
CALLBACK = "https://registry.example/hooks"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture
def base(svc: Services) -> Iterator[str]:
    with desk_server(svc) as url:
        yield url


def last_event(svc: Services, sid: str) -> dict[str, object]:
    with session_scope(svc.engine) as s:
        row = s.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.submission_id == sid)
            .order_by(WebhookDelivery.id.desc())
        ).first()
        assert row is not None
        return dict(json.loads(row.body))


def test_sign_in_queue_keyboard_and_approve(
    browser: Browser, base: str, client: FlaskClient, svc: Services
) -> None:
    first = submit(client, {"dist/bundle.js": "var a = 1; // SUSPECT"}, callback_url=CALLBACK)
    second = submit(client, {"dist/bundle.js": "SUSPECT\nSUSPECT\nNOTE"}, name="charts")
    make_user(svc, "alice")
    w = watched(browser)
    page = w.page
    sign_in(page, base, "alice")
    expect(page.locator("#queue tr.row")).to_have_count(2)
    shot(page, "queue")
    page.keyboard.press("?")
    expect(page.locator("#help")).to_be_visible()
    page.keyboard.press("?")
    expect(page.locator("#help")).to_be_hidden()
    rows = page.locator("#queue tr.row")
    expect(rows.nth(0)).to_have_class("row selected")
    page.keyboard.press("j")
    expect(rows.nth(1)).to_have_class("row selected")
    page.keyboard.press("k")
    expect(rows.nth(0)).to_have_class("row selected")
    href = rows.nth(0).get_attribute("data-href")
    target = first if href and first in href else second
    page.keyboard.press("a")  # opens the submission at its Approve button
    page.wait_for_url(f"{base}/submissions/{target}#approve")
    expect(page.locator("#approve")).to_be_focused()
    shot(page, "submission")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/queue")
    assert status_of(svc, target) == "approved"
    page.keyboard.press("o")
    page.wait_for_url(f"{base}/submissions/*")
    page.keyboard.press("r")
    expect(page.locator("#reject-reasons")).to_be_focused()
    assert w.dialogs == []


def test_a_claim_blocks_a_second_reviewer_until_it_expires(
    browser: Browser, base: str, client: FlaskClient, svc: Services
) -> None:
    sid = submit(client, {"dist/bundle.js": "SUSPECT"})
    make_user(svc, "alice")
    make_user(svc, "bob")
    alice, bob = watched(browser).page, watched(browser).page
    sign_in(alice, base, "alice")
    sign_in(bob, base, "bob")
    alice.goto(f"{base}/submissions/{sid}")
    alice.click("#claim-button")
    expect(alice.locator("#claim")).to_contain_text("You hold the claim")
    bob.goto(f"{base}/submissions/{sid}")
    expect(bob.locator("#claim")).to_contain_text("Claimed by alice")
    bob.click("#approve")
    expect(bob.locator(".flash.error").first).to_contain_text("claimed by alice")
    assert status_of(svc, sid) == "awaiting_review"
    shot(bob, "claimed")
    with session_scope(svc.engine) as s:
        s.get_one(ReviewItem, sid).claim_expires_at = utcnow() - timedelta(seconds=1)
    bob.goto(f"{base}/submissions/{sid}")
    bob.click("#claim-button")
    expect(bob.locator("#claim")).to_contain_text("You hold the claim")


def test_reject_with_reasons_and_request_changes(
    browser: Browser, base: str, client: FlaskClient, svc: Services
) -> None:
    bad = submit(client, {"dist/bundle.js": "SUSPECT"}, callback_url=CALLBACK)
    unclear = submit(client, {"dist/bundle.js": "SUSPECT"}, name="other", callback_url=CALLBACK)
    make_user(svc, "alice")
    page = watched(browser).page
    sign_in(page, base, "alice")
    page.goto(f"{base}/submissions/{bad}")
    page.select_option("#reject-reasons", ["obfuscated-code", "dom-escape"])
    page.fill("#reject-form textarea[name=message]", "the bundle is packed")
    page.click("#reject")
    page.wait_for_url(f"{base}/queue")
    assert status_of(svc, bad) == "rejected"
    decision = last_event(svc, bad)["data"]["decision"]  # type: ignore[index]
    assert {r["code"] for r in decision["reasons"]} == {"obfuscated-code", "dom-escape"}
    page.goto(f"{base}/submissions/{unclear}")
    page.fill("#changes-form textarea[name=message]", "declare https://api.example")
    page.click("#request-changes")
    page.wait_for_url(f"{base}/queue")
    assert status_of(svc, unclear) == "changes_requested"
    assert last_event(svc, unclear)["type"] == "submission.changes_requested"
    expect(page.locator("#queue tr.row")).to_have_count(0)


def test_the_delta_view_of_an_update(
    browser: Browser, base: str, client: FlaskClient, svc: Services
) -> None:
    make_user(svc, "alice")
    admin = make_user(svc, "root", "admin")
    v1 = submit(client, {"dist/bundle.js": "var a = 1; // SUSPECT\n", "dist/vendor.js": "lib"})
    decisions.decide(svc, v1, admin, "approve", scan_id=latest_scan_id(svc, v1))
    v2 = submit(
        client,
        {
            "dist/bundle.js": "var a = 2; // SUSPECT\n",
            "dist/extra.js": "x(); // NOTE\n",
            "dist/vendor.js": "lib",
        },
        version="1.1.0",
    )
    page = watched(browser).page
    sign_in(page, base, "alice")
    page.goto(f"{base}/submissions/{v2}#delta")
    delta = page.locator("#delta")
    expect(delta).to_contain_text("Against approved version 1.0.0")
    expect(delta).to_contain_text("desk-note")  # the new finding; the moved SUSPECT is not new
    expect(delta.locator("dl.delta dd").first).not_to_contain_text("desk-suspect")
    expect(delta.locator("ul.files")).to_contain_text("added dist/extra.js")
    expect(delta.locator("ul.files")).to_contain_text("changed dist/bundle.js")
    expect(delta).to_contain_text("unchanged file(s) collapsed")
    delta.scroll_into_view_if_needed()
    shot(page, "delta")
    page.click("#delta a:text('diff')")
    expect(page.locator("pre.diff")).to_contain_text("+var a = 2;")
    page.goto(f"{base}/submissions/{v1}")
    expect(page.locator("#delta")).to_contain_text("First version of this plugin")


def test_allowlist_from_a_false_positive_and_its_expiry(
    browser: Browser, base: str, client: FlaskClient, svc: Services
) -> None:
    sid = submit(client, {"dist/bundle.js": "var x = 1; // SUSPECT\n"})
    make_user(svc, "root", "admin")
    page = watched(browser).page
    sign_in(page, base, "root")
    page.goto(f"{base}/submissions/{sid}")
    finding = page.locator("article.finding").first
    finding.locator("details.allow summary").click()
    finding.locator("input[name=reason]").fill("a comment, not code")
    finding.locator("details.allow button").click()
    expect(page.locator(".flash").first).to_contain_text("allowlist entry")
    expect(page.locator("article.finding").first).to_contain_text("marked false positive")
    page.goto(f"{base}/admin/allowlist")
    row = page.locator("table.allowlist tbody tr").first
    expect(row).to_contain_text("desk-suspect")
    expect(row).to_contain_text("active")
    shot(page, "allowlist")
    page.goto(f"{base}/submissions/{sid}")
    page.click("#rescan")
    expect(page.locator("article.finding").first).to_contain_text("suppressed by allowlist:")
    with session_scope(svc.engine) as s:
        # Time passes (entries are append-only: the clock is moved, not the record).
        s.execute(update(AllowlistEntry).values(expires_at=utcnow() - timedelta(minutes=1)))
    page.goto(f"{base}/admin/allowlist")
    expect(page.locator("table.allowlist tbody tr").first).to_contain_text("expired")


def test_auto_approval_switched_on_in_the_page(
    browser: Browser, base: str, client: FlaskClient, svc: Services
) -> None:
    admin = make_user(svc, "root", "admin")
    v1 = submit(client, {"dist/bundle.js": "var a = 1;"})
    decisions.decide(svc, v1, admin, "approve", scan_id=latest_scan_id(svc, v1))
    set_trust(svc, "pub-1", "trusted")
    waiting = submit(client, {"dist/bundle.js": "var a = 2;"}, version="1.0.1")
    page = watched(browser).page
    sign_in(page, base, "root")
    page.goto(f"{base}/admin/auto-approval")
    expect(page.locator("h1")).to_contain_text("off")
    expect(page.locator("table.dry-run tr.eligible")).to_contain_text("1.0.1")
    page.click("#auto-toggle")
    expect(page.locator("h1")).to_contain_text("on")
    update = submit(client, {"dist/bundle.js": "var a = 3;"}, version="1.0.2")
    assert status_of(svc, update) == "approved" and status_of(svc, waiting) == "awaiting_review"
    page.goto(f"{base}/submissions/{update}")
    expect(page.locator("#history")).to_contain_text("system approve by auto-approval")


def test_hostile_bundle_content_never_runs_in_the_reviewers_browser(
    browser: Browser, base: str, client: FlaskClient, svc: Services
) -> None:
    sid = submit(client, hostile_bundle())
    # Intake refuses a member name with markup: the refusal shows it, as text.
    refused = submit(client, {f"dist/{XSS}.js": "SUSPECT"}, version="1.0.1")
    make_user(svc, "alice")
    w = watched(browser)
    page = w.page
    sign_in(page, base, "alice")
    # A payload in a request URL and header of the desk itself, too.
    page.set_extra_http_headers({"X-Forwarded-Host": XSS, "Referer": f"{base}/{XSS}"})
    visited = [
        f"/submissions/{sid}",
        f"/submissions/{sid}/code?path=dist/bundle.js&line=1",
        f"/submissions/{sid}/code?path={XSS}",
        f"/submissions/{refused}",
        "/queue?due=all&plugin=" + XSS,
        f"/audit?actor={SCRIPT}",
        f"/publishers/{XSS}",
        f"/nowhere/{SCRIPT}",
    ]
    for path in visited:
        page.goto(base + path)
        assert page.evaluate("typeof window.__xss") == "undefined", path
        assert page.locator("img[src=x]").count() == 0, path
    page.goto(f"{base}/submissions/{sid}")
    expect(page.locator("#findings")).to_contain_text("<script>window.__xss=1</script>")
    expect(page.locator("#runtime")).to_contain_text("onerror")
    expect(page.locator("#manifest")).to_contain_text("<script>window.__xss=1</script>")
    page.goto(f"{base}/submissions/{refused}")
    expect(page.locator("#findings")).to_contain_text(f"dist/{XSS}.js")
    page.goto(f"{base}/submissions/{sid}")
    shot(page, "hostile")
    assert w.dialogs == []
    assert not [c for c in w.console if "__xss" in c]


def test_a_post_without_the_csrf_token_is_refused_in_the_browser(
    browser: Browser, base: str, client: FlaskClient, svc: Services
) -> None:
    sid = submit(client, {"dist/bundle.js": "SUSPECT"})
    make_user(svc, "alice")
    page = watched(browser).page
    sign_in(page, base, "alice")
    page.goto(f"{base}/submissions/{sid}")
    scan_id = latest_scan_id(svc, sid)
    status = page.evaluate(
        """async ([sid, scan]) => {
            const body = new URLSearchParams({action: "approve", scan_id: scan});
            const r = await fetch(`/submissions/${sid}/decision`, {method: "POST", body});
            const j = await fetch(`/api/v1/submissions/${sid}/decisions`, {method: "POST",
                headers: {"Content-Type": "application/json"},
                body: JSON.stringify({action: "approve", scan_id: scan})});
            return [r.status, j.status];
        }""",
        [sid, scan_id],
    )
    assert status == [400, 403]
    assert status_of(svc, sid) == "awaiting_review"
