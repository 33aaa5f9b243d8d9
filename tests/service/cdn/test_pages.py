"""The desk's CDN views: where a version is, the retro flag with its pre-filled yank,
yank and un-yank from the page (CSRF), the stale versions and when they are reached."""

from __future__ import annotations

from flask.testing import FlaskClient

from service import orchestration
from service.review.accounts import Actor
from service.services import Services
from tests.service.cdn.conftest import approve, deploy_words, fetch
from tests.service.cdn.test_retro import SLEEPER
from tests.service.desk import page_token, sign_in, status_of


def test_a_flagged_version_pages_the_queue_and_is_yanked_from_its_page(
    client: FlaskClient, svc: Services, admin: Actor
) -> None:
    sid = approve(client, svc, admin, SLEEPER, name="@acme/w")
    orchestration.sweep(svc)
    sign_in(client, "root")
    page = client.get(f"/submissions/{sid}").get_data(as_text=True)
    assert 'id="cdn"' in page and "http://cdn.test:80/cdn/@acme/w/1.0.0/" in page
    deploy_words(svc, "SLEEPER:obfuscation:high")
    orchestration.sweep(svc)
    queue = client.get("/queue").get_data(as_text=True)
    assert 'id="retro-flags"' in queue and "1 promoted version judged worse" in queue
    page = client.get(f"/submissions/{sid}").get_data(as_text=True)
    assert "judged it worse" in page and "sleeper-sleeper" in page
    assert "SLEEPER wakes up" in page.split('id="yank-why"')[1].split("</textarea>")[0]
    refused = client.post(f"/submissions/{sid}/yank", data={"why": "no token"})
    assert refused.status_code == 400 and status_of(svc, sid) == "promoted"
    token = page_token(client, f"/submissions/{sid}")
    client.post(f"/submissions/{sid}/yank", data={"why": "sleeper code", "csrf_token": token})
    assert status_of(svc, sid) == "yanked"
    assert fetch(client, "/cdn/@acme/w/1.0.0/dist/bundle.js").status == 410
    token = page_token(client, f"/submissions/{sid}")
    client.post(f"/submissions/{sid}/unyank", data={"why": "cleared", "csrf_token": token})
    assert status_of(svc, sid) == "promoted"


def test_the_cdn_page_lists_stale_versions_and_when_they_are_reached(
    client: FlaskClient, svc: Services, admin: Actor
) -> None:
    sid = approve(client, svc, admin, SLEEPER)
    orchestration.sweep(svc)
    sign_in(client, "root")
    assert "Every promoted version was scanned" in client.get("/promoted").get_data(as_text=True)
    svc.jobs.hold = True  # type: ignore[attr-defined]
    deploy_words(svc, "NEW")
    orchestration.sweep(svc)
    page = client.get("/promoted").get_data(as_text=True)
    assert f"/submissions/{sid}" in page and "running now" in page
