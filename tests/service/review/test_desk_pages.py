"""The desk's pages through Flask's client: its own defences and what they show."""

from __future__ import annotations

import json
import re
import time
from dataclasses import replace

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from review_ui.app import create_app
from review_ui.security import SEEN
from scanner.db import session_scope
from service.models import Artifact, Decision, User
from service.review.accounts import create_user
from service.services import Services
from tests.service.desk import (
    PASSWORD,
    latest_scan_id,
    make_user,
    page_token,
    sign_in,
    status_of,
    submit,
)

XSS = '<img src=x onerror="window.__xss=1">'
SCRIPT = "<script>window.__xss=1</script>"


def test_every_page_carries_a_strict_csp_and_the_other_headers(client: FlaskClient) -> None:
    response = client.get("/login")
    csp = response.headers["Content-Security-Policy"]
    for directive in (
        "default-src 'self'",
        "script-src 'self'",
        "object-src 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    ):
        assert directive in csp
    assert "unsafe" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"


def test_session_cookies_are_secure_httponly_lax_and_secure_can_be_off_for_localhost(
    client: FlaskClient, svc: Services
) -> None:
    make_user(svc, "alice")
    cookie = sign_in(client, "alice").headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    plain = create_app(
        replace(svc.settings, cookie_secure=False),
        replace(svc, settings=replace(svc.settings, cookie_secure=False)),
    )
    cookie = sign_in(plain.test_client(), "alice").headers["Set-Cookie"]
    assert "Secure" not in cookie and "HttpOnly" in cookie


def test_pages_need_a_signed_in_user_and_sign_in_never_redirects_off_site(
    client: FlaskClient, svc: Services
) -> None:
    assert client.get("/queue").headers["Location"].startswith("/login?next=")
    make_user(svc, "alice")
    token = page_token(client, "/login")
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:x"):
        response = client.post(
            "/login",
            data={"name": "alice", "password": PASSWORD, "csrf_token": token, "next": target},
        )
        assert response.headers["Location"] == "/queue", target
        client.post("/logout", data={"csrf_token": page_token(client)})
        token = page_token(client, "/login")


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(
    client: FlaskClient, svc: Services
) -> None:
    sid = submit(client, {"dist/bundle.js": "SUSPECT"})
    make_user(svc, "alice")
    assert client.post("/login", data={"name": "alice", "password": PASSWORD}).status_code == 400
    sign_in(client, "alice")
    response = client.post(
        f"/submissions/{sid}/decision",
        data={"action": "approve", "scan_id": latest_scan_id(svc, sid)},
    )
    assert response.status_code == 400
    assert status_of(svc, sid) == "awaiting_review"
    forged = client.post(
        f"/submissions/{sid}/decision",
        data={"action": "approve", "scan_id": latest_scan_id(svc, sid), "csrf_token": "forged"},
    )
    assert forged.status_code == 400 and status_of(svc, sid) == "awaiting_review"


def test_sign_in_is_throttled_even_for_the_right_password(
    client: FlaskClient, svc: Services
) -> None:
    make_user(svc, "alice")
    for _ in range(svc.settings.login_max_failures):
        assert sign_in(client, "alice", "wrong password").status_code == 401
    assert sign_in(client, "alice").status_code == 429
    with session_scope(svc.engine) as s:
        stored = s.scalars(select(User.password_hash).where(User.name == "alice")).one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


def test_a_one_time_password_must_be_changed_first(client: FlaskClient, svc: Services) -> None:
    with session_scope(svc.engine) as s:
        _, otp = create_user(s, "carol", "reviewer", "test")
    assert sign_in(client, "carol", otp).headers["Location"] == "/account/password"
    assert client.get("/queue").headers["Location"] == "/account/password"
    token = page_token(client, "/account/password")
    short = client.post(
        "/account/password", data={"current": otp, "new": "short", "csrf_token": token}
    )
    assert short.status_code == 422
    done = client.post(
        "/account/password",
        data={"current": otp, "new": "a much longer secret", "csrf_token": token},
    )
    assert done.headers["Location"] == "/queue"
    assert client.get("/queue").status_code == 200
    assert sign_in(client.application.test_client(), "carol", otp).status_code == 401


def test_an_idle_session_ends(client: FlaskClient, svc: Services) -> None:
    make_user(svc, "alice")
    sign_in(client, "alice")
    assert client.get("/queue").status_code == 200
    with client.session_transaction() as session:
        session[SEEN] = time.time() - svc.settings.session_idle_minutes * 60 - 5
    response = client.get("/queue")
    assert response.status_code == 302 and "expired=1" in response.headers["Location"]
    assert client.get("/queue").headers["Location"].startswith("/login")


def test_admin_pages_and_actions_are_for_admins(client: FlaskClient, svc: Services) -> None:
    make_user(svc, "alice")
    sign_in(client, "alice")
    for path in ("/admin/users", "/admin/allowlist", "/admin/reasons", "/admin/auto-approval"):
        assert client.get(path).status_code == 403, path
    token = page_token(client)
    response = client.post(
        "/admin/users",
        data={"op": "create", "name": "mallory", "role": "admin", "csrf_token": token},
    )
    assert response.status_code == 403
    with session_scope(svc.engine) as s:
        assert s.scalars(select(User).where(User.name == "mallory")).first() is None


def test_the_decision_form_decides_and_is_audited_under_the_reviewer(
    client: FlaskClient, svc: Services
) -> None:
    sid = submit(client, {"dist/bundle.js": "SUSPECT"})
    make_user(svc, "alice")
    sign_in(client, "alice")
    page = client.get(f"/submissions/{sid}").get_data(as_text=True)
    assert 'id="approve"' in page and "First version of this plugin" in page
    response = client.post(
        f"/submissions/{sid}/decision",
        data={
            "action": "approve",
            "scan_id": latest_scan_id(svc, sid),
            "csrf_token": page_token(client),
        },
    )
    assert response.headers["Location"] == "/queue"
    assert status_of(svc, sid) == "approved"
    with session_scope(svc.engine) as s:
        assert (
            s.scalars(select(Decision.actor).where(Decision.kind == "reviewer")).one()
            == "user:alice"
        )


def hostile_bundle() -> dict[str, str | bytes]:
    trace = {
        "events": [
            {
                "type": "request",
                "t": 1,
                "api": "fetch",
                "url": f"https://x.example/{XSS}",
                "body": SCRIPT,
            },
            {"type": "dom-outside", "t": 2, "html": SCRIPT},
        ],
        "requests": [
            {
                "method": "POST",
                "url": f"https://collect.example/?q={XSS}",
                "outcome": "blocked",
                "body": SCRIPT,
                "headers": {"x-evil": XSS},
            },
        ],
        "console_errors": [SCRIPT],
    }
    manifest = {
        "name": "demo",
        "version": "1.0.0",
        "displayName": SCRIPT,
        "globalName": "Demo",
        "entry": "dist/bundle.js",
        "capabilities": {"network": [], "dom": "container"},
    }
    return {
        "plugin.json": json.dumps(manifest),
        "dist/bundle.js": f"var a = 1; // SUSPECT {SCRIPT} {XSS}\n",
        "dist/other.js": "SUSPECT",
        "trace.json": json.dumps(trace),
    }


def test_bundle_content_is_escaped_everywhere_it_is_shown(
    client: FlaskClient, svc: Services
) -> None:
    sid = submit(client, hostile_bundle())
    make_user(svc, "alice")
    sign_in(client, "alice")
    page = client.get(f"/submissions/{sid}").get_data(as_text=True)
    code = client.get(f"/submissions/{sid}/code?path=dist/bundle.js&line=1").get_data(as_text=True)
    queue = client.get("/queue?due=all").get_data(as_text=True)
    for html in (page, code, queue):
        assert SCRIPT not in html and XSS not in html
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in page
    manifest = page[page.index('id="manifest"') : page.index('id="capabilities"')]
    assert "displayName" in manifest and "&lt;script&gt;" in manifest
    assert "&lt;img src=x onerror=" in page
    assert "window.__xss" in code  # shown, as highlighted text


def test_artifacts_are_served_as_what_they_are_and_never_as_pages(
    client: FlaskClient, svc: Services
) -> None:
    sid = submit(client, hostile_bundle())
    scan_id = latest_scan_id(svc, sid)
    make_user(svc, "alice")
    sign_in(client, "alice")
    shot = client.get(f"/scans/{scan_id}/artifacts/runtime-screenshot-user.png")
    assert shot.status_code == 200 and shot.mimetype == "image/png"
    assert shot.headers["X-Content-Type-Options"] == "nosniff"
    assert shot.headers["Content-Disposition"].startswith("inline; filename=")
    trace = client.get(f"/scans/{scan_id}/artifacts/runtime-trace-user.json")
    assert trace.mimetype == "application/json"
    assert trace.headers["Content-Disposition"].startswith("attachment;")
    assert "sandbox" in trace.headers["Content-Security-Policy"]
    with session_scope(svc.engine) as s:
        row = s.scalars(select(Artifact).where(Artifact.name == "runtime-trace-user.json")).one()
        s.add(
            Artifact(
                scan_id=scan_id,
                name="fake.png",
                media_type="image/png",
                blob_key=row.blob_key,
                sha256=row.sha256,
                size=row.size,
            )
        )
    assert client.get(f"/scans/{scan_id}/artifacts/fake.png").status_code == 404
    assert client.get(f"/scans/{scan_id}/artifacts/..%2F..%2Fetc%2Fpasswd").status_code == 404


def test_errors_on_pages_are_pages_without_tracebacks(client: FlaskClient, svc: Services) -> None:
    make_user(svc, "alice")
    sign_in(client, "alice")
    missing = client.get("/submissions/nope")
    assert missing.status_code == 404 and missing.mimetype == "text/html"
    assert "Traceback" not in missing.get_data(as_text=True)


@pytest.mark.parametrize("path", ["/rules", "/audit?actor=alice&action=claim", "/publishers/pub-1"])
def test_the_record_pages_render(client: FlaskClient, svc: Services, path: str) -> None:
    submit(client, {"dist/bundle.js": "SUSPECT"})
    make_user(svc, "alice")
    sign_in(client, "alice")
    assert client.get(path).status_code == 200


def test_the_code_viewer_opens_minified_code_pretty_at_the_finding(
    client: FlaskClient, svc: Services
) -> None:
    minified = "var a=1;" * 200 + "window.x=function(){return 'SUSPECT'};" + "b();" * 200
    sid = submit(client, {"dist/bundle.js": minified})
    make_user(svc, "alice")
    sign_in(client, "alice")
    page = client.get(f"/submissions/{sid}").get_data(as_text=True)
    found = re.search(r'id="f(\d+)"', page)
    assert found is not None
    code = client.get(
        f"/submissions/{sid}/code?path=dist/bundle.js&line=1&finding={found.group(1)}"
    )
    html = code.get_data(as_text=True)
    assert "pretty-printed" in html
    highlighted_line = html.split('class="hll"', 1)[1].split("\n", 1)[0]
    assert "SUSPECT" in highlighted_line
    raw = client.get(f"/submissions/{sid}/code?path=dist/bundle.js&line=1&view=raw")
    assert "Pretty-print" in raw.get_data(as_text=True)
