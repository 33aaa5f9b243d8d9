"""Yank: a 410 from the moment it commits; storage, the manifest, the index, the
blocklist and the CDN caches follow; nothing brings the version back but an un-yank."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from scanner.db import session_scope
from service import orchestration
from service.cdn import sync as cdn_sync
from service.cdn.paths import file_key, index_key
from service.cdn.storage import CdnNotFoundError
from service.models import AuditEntry, Promotion, User, WebhookDelivery
from service.review import decisions
from service.review.accounts import Actor
from service.services import Services
from service.tokens import create_token
from service.webhooks import new_secret
from tests.service.cdn.conftest import approve, dsse_payload, fetch
from tests.service.conftest import InlineJobQueue, post_submission, zip_bytes
from tests.service.desk import make_user, status_of
from tests.service.httpserver import Behaviour, serving

FILES = {"dist/bundle.js": "var P = {mount: function (e) {}};", "dist/a.css": ".a{}"}
PURGE_SECRET = new_secret()


@pytest.fixture
def hooks(svc: Services) -> Iterator[tuple[str, Behaviour, Behaviour]]:
    """The registry's callback endpoint and one CDN's purge hook, both recording."""
    registry, cdn = Behaviour(status=204, body=b""), Behaviour(status=200)
    with serving(registry) as reg_url, serving(cdn) as cdn_url:
        svc.settings = replace(
            svc.settings,
            callback_origins=reg_url,
            cdn_purge_urls=f"{cdn_url}/purge",
            cdn_purge_secret=PURGE_SECRET,
        )
        yield f"{reg_url}/hooks", registry, cdn


def _events(behaviour: Behaviour) -> dict[str, dict[str, object]]:
    return {json.loads(r.body)["type"]: json.loads(r.body) for r in behaviour.requests}


def test_a_yank_is_410_at_once_then_storage_blocklist_and_caches_follow(
    client: FlaskClient,
    svc: Services,
    admin: Actor,
    jobs: InlineJobQueue,
    hooks: tuple[str, Behaviour, Behaviour],
) -> None:
    hook, registry, cdn = hooks
    sid = approve(client, svc, admin, FILES, callback_url=hook)
    assert fetch(client, "/cdn/demo/1.0.0/dist/bundle.js").status == 200
    jobs.cdn = False  # storage work waits: the origin must not
    decisions.yank(svc, sid, admin, "the maintainer's account was taken over")
    assert status_of(svc, sid) == "yanked"
    gone = fetch(client, "/cdn/demo/1.0.0/dist/bundle.js")
    assert gone.status == 410 and b"blocklist" in gone.body
    # The manifest in storage still predates the yank: not served until it says so.
    assert fetch(client, "/cdn/demo/1.0.0/gatehouse-manifest.json").status == 503
    with svc.session() as s:
        promotion_id = s.scalars(select(Promotion.id)).one()
    assert cdn_sync.sync(svc, promotion_id) == "withdrawn"
    with pytest.raises(CdnNotFoundError):
        svc.cdn.get(file_key("demo", "1.0.0", "dist/bundle.js"))
    manifest = dsse_payload(
        fetch(client, "/cdn/demo/1.0.0/gatehouse-manifest.json").body, svc.signer.public
    )
    assert manifest["yanked"]["reason"] == "the maintainer's account was taken over"
    index = json.loads(svc.cdn.get(index_key("demo")))
    assert index["versions"][0]["yanked"] is True and index["latest"] is None
    blocklist = dsse_payload(fetch(client, "/cdn/blocklist.json").body, svc.signer.public)
    assert blocklist["version"] >= 1
    (entry,) = blocklist["entries"]
    assert (entry["plugin"], entry["version"]) == ("demo", "1.0.0")
    assert {f["path"] for f in entry["files"]} >= set(FILES)
    (purge,) = cdn.requests
    headers = {k: v for k, v in purge.headers.items() if k.startswith("webhook-")}
    Webhook(PURGE_SECRET).verify(purge.body, headers)  # signed, as the reference checks
    data = json.loads(purge.body)["data"]
    assert "http://cdn.test:80/cdn/demo/1.0.0/dist/bundle.js" in data["urls"]
    assert "http://cdn.test:80/cdn/blocklist.json" in data["urls"]
    assert "gh-version:demo@1.0.0" in data["tags"] and data["reason"] == "yank"
    yanked = _events(registry)["submission.yanked"]["data"]
    assert yanked["reason"] == "the maintainer's account was taken over"  # type: ignore[index]
    with svc.session() as s:
        actions = set(s.scalars(select(AuditEntry.action)))
    assert {"cdn.yank", "decision.yank"} & actions == {
        "cdn.yank"
    } and "promotion.published" in actions


def test_a_yanked_version_never_comes_back_by_retry_rescan_or_resubmission(
    client: FlaskClient, svc: Services, admin: Actor
) -> None:
    sid = approve(client, svc, admin, FILES)
    decisions.yank(svc, sid, admin, "malware")
    with svc.session() as s:
        p = s.scalars(select(Promotion)).one()
    assert cdn_sync.sync(svc, p.id) == "in sync"
    orchestration.sweep(svc)
    with pytest.raises(decisions.DecisionError):
        decisions.rescan(svc, sid, admin)
    same = post_submission(client, bundle=zip_bytes(FILES))
    assert same.get_json()["id"] == sid and same.get_json()["status"] == "yanked"
    other = post_submission(client, bundle=zip_bytes({"dist/bundle.js": "x"}))
    assert other.status_code == 409
    assert fetch(client, "/cdn/demo/1.0.0/dist/bundle.js").status == 410
    assert status_of(svc, sid) == "yanked"


def test_only_an_admin_unyanks_and_the_version_is_published_again(
    client: FlaskClient, svc: Services, admin: Actor, hooks: tuple[str, Behaviour, Behaviour]
) -> None:
    _, _, cdn = hooks
    sid = approve(client, svc, admin, FILES)
    decisions.yank(svc, sid, admin, "suspected, checking")
    first = dsse_payload(fetch(client, "/cdn/blocklist.json").body, svc.signer.public)
    alice = make_user(svc, "alice")
    with pytest.raises(decisions.DecisionError):
        decisions.unyank(svc, sid, alice, "looks fine")
    token_body = {"why": "a false alarm: the finding was a test fixture"}
    with session_scope(svc.engine) as s:
        user = s.scalars(select(User).where(User.name == "root")).one()
        _, bearer = create_token(s, "root-cli", {"review"}, user=user)
    r = client.post(
        f"/api/v1/submissions/{sid}/unyank",
        json=token_body,
        headers={"Authorization": f"Bearer {bearer}"},
    )
    assert r.status_code == 201, r.get_data(as_text=True)
    assert status_of(svc, sid) == "promoted"
    assert fetch(client, "/cdn/demo/1.0.0/dist/bundle.js").status == 200
    manifest = dsse_payload(
        fetch(client, "/cdn/demo/1.0.0/gatehouse-manifest.json").body, svc.signer.public
    )
    assert manifest["yanked"] is None
    later = dsse_payload(fetch(client, "/cdn/blocklist.json").body, svc.signer.public)
    assert later["version"] > first["version"] and later["entries"] == []
    assert [json.loads(q.body)["data"]["reason"] for q in cdn.requests] == ["yank", "unyank"]
    with svc.session() as s:
        kinds = [d.event_type for d in s.scalars(select(WebhookDelivery))]
    assert kinds.count("cdn.purge") == 2
