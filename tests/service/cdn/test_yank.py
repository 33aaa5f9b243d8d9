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
from service.models import AuditEntry, Promotion, Submission, User, WebhookDelivery
from service.review import autoapprove, decisions
from service.review.accounts import Actor
from service.review.comparison import completed_scan, delta_for
from service.services import Services
from service.tokens import create_token
from service.webhooks import new_secret
from tests.service.cdn.conftest import approve, dsse_payload, fetch
from tests.service.conftest import InlineJobQueue, post_submission, zip_bytes
from tests.service.desk import latest_scan_id, make_user, set_trust, status_of, submit
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


def test_yanked_bytes_do_not_return_under_the_next_version(
    client: FlaskClient, svc: Services, admin: Actor
) -> None:
    good = approve(client, svc, admin, {"dist/bundle.js": "var P = {mount: function () {}};"})
    set_trust(svc, "pub-1", "trusted")
    with session_scope(svc.engine) as s:
        autoapprove.set_enabled(s, admin, True)
    evil = {"dist/bundle.js": "var P = {mount: function () { document.title = 'x'; }};"}
    yanked = submit(client, evil, version="1.0.1")
    assert status_of(svc, yanked) == "promoted"  # a trusted publisher's routine update
    decisions.yank(svc, yanked, admin, "skims payment forms")

    again = submit(client, evil, version="1.0.2")
    assert status_of(svc, again) == "awaiting_review"  # auto-approval declined it
    with svc.session() as s:
        declined = s.scalars(
            select(AuditEntry).where(
                AuditEntry.action == "auto_approval.declined", AuditEntry.subject_id == again
            )
        ).one()
        scan = completed_scan(s, again)
        assert scan is not None
        delta = delta_for(s, s.get_one(Submission, again), scan)
    assert "files of a yanked version" in json.dumps(declined.data)
    assert delta.yanked_files == [
        f"{path} (the same bytes as yanked demo@1.0.1)"
        for path in ("dist/bundle.js", "plugin.json")
    ]
    assert not delta.routine
    with pytest.raises(decisions.DecisionError, match=r"yanked as demo@1\.0\.1"):
        decisions.decide(svc, again, admin, "approve", scan_id=latest_scan_id(svc, again))
    assert fetch(client, "/cdn/demo/1.0.2/dist/bundle.js").status == 404
    assert status_of(svc, good) == "promoted"


def test_a_version_sharing_a_yanked_file_goes_to_a_person_who_may_approve_it(
    client: FlaskClient, svc: Services, admin: Actor
) -> None:
    approve(client, svc, admin, FILES)
    set_trust(svc, "pub-1", "trusted")
    with session_scope(svc.engine) as s:
        autoapprove.set_enabled(s, admin, True)
    bad = submit(client, {**FILES, "dist/extra.js": "var x = 1;"}, version="1.0.1")
    decisions.yank(svc, bad, admin, "broken build")
    fixed = submit(client, {**FILES, "dist/extra.js": "var x = 2;"}, version="1.0.2")
    assert status_of(svc, fixed) == "awaiting_review"
    with svc.session() as s:
        scan = completed_scan(s, fixed)
        assert scan is not None
        delta = delta_for(s, s.get_one(Submission, fixed), scan)
    assert [f.split(" ")[0] for f in delta.yanked_files] == [
        "dist/a.css",
        "dist/bundle.js",
        "plugin.json",
    ]
    decisions.decide(svc, fixed, admin, "approve", scan_id=latest_scan_id(svc, fixed))
    assert status_of(svc, fixed) == "promoted"
