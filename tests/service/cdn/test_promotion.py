"""Promotion publishes exactly the scanned tree, verified, manifest last, once; a crash
is finished by the sweeper; what cannot be published is rolled back."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from scanner.csp import sri
from service import orchestration
from service.blobs import repack_key
from service.cdn import sync as cdn_sync
from service.cdn.paths import IMMUTABLE, file_key, index_key, manifest_key
from service.cdn.storage import CdnNotFoundError, CdnStore, LocalCdnStore, S3CdnStore
from service.models import AuditEntry, Promotion, Scan, WebhookDelivery, utcnow
from service.review import decisions
from service.review.accounts import Actor
from service.services import Services
from tests.service.cdn.conftest import approve, dsse_payload, fetch
from tests.service.conftest import InlineJobQueue
from tests.service.desk import latest_scan_id, status_of, submit
from tests.service.httpserver import Behaviour, serving

FILES = {
    "dist/bundle.js": "var Plugin = { mount: function (el) { el.textContent = 'hi'; } };",
    "dist/styles.css": ".p { color: red }",
    "dist/page.html": "<script>alert(1)</script>",
}


@pytest.fixture
def registry(svc: Services) -> Iterator[tuple[str, Behaviour]]:
    behaviour = Behaviour(status=204, body=b"")
    with serving(behaviour) as url:
        svc.settings = replace(svc.settings, callback_origins=url)
        yield f"{url}/hooks", behaviour


def _promotion(svc: Services, sid: str) -> Promotion:
    with svc.session() as s:
        p = s.scalars(select(Promotion).where(Promotion.submission_id == sid)).one()
        s.expunge(p)
        return p


def test_an_approval_publishes_the_scanned_tree_to_s3_verified_and_signed(
    client: FlaskClient,
    svc: Services,
    admin: Actor,
    s3_cdn: S3CdnStore,
    registry: tuple[str, Behaviour],
) -> None:
    hook, behaviour = registry
    sid = approve(client, svc, admin, FILES, name="@acme/widget", callback_url=hook)
    assert status_of(svc, sid) == "promoted"
    p = _promotion(svc, sid)
    with svc.session() as s:
        scan = s.get_one(Scan, p.scan_id)
        assert (p.repack_sha256, p.tree_sha256) == (scan.repack_sha256, scan.tree_sha256)
        report = scan.report or {}
    for path, text in FILES.items():
        obj = s3_cdn.client.get_object(
            Bucket=s3_cdn.bucket, Key="cdn/" + file_key("@acme/widget", "1.0.0", path)
        )
        assert obj["Body"].read() == text.encode()
        assert obj["CacheControl"] == IMMUTABLE
        assert obj["Metadata"]["integrity"] == sri(text.encode())
    html = s3_cdn.client.head_object(
        Bucket=s3_cdn.bucket, Key="cdn/" + file_key("@acme/widget", "1.0.0", "dist/page.html")
    )
    assert html["ContentType"] == "text/plain; charset=utf-8"
    manifest = dsse_payload(s3_cdn.get(manifest_key("@acme/widget", "1.0.0")), svc.signer.public)
    listed = {f["path"]: f for f in manifest["files"]}
    assert set(listed) == {*FILES, "plugin.json"}
    assert listed["dist/bundle.js"]["integrity"] == sri(FILES["dist/bundle.js"].encode())
    assert listed["dist/bundle.js"]["content_type"] == "text/javascript; charset=utf-8"
    assert manifest["entry"] == "dist/bundle.js" and manifest["csp"] == report["csp"]
    assert manifest["scan_id"] == p.scan_id and manifest["decision_id"] == p.decision_id
    assert manifest["ruleset"] == report["ruleset"] and manifest["yanked"] is None
    index = json.loads(s3_cdn.get(index_key("@acme/widget")))
    assert index["latest"] == "1.0.0" and index["versions"][0]["yanked"] is False
    promoted = [json.loads(r.body) for r in behaviour.requests]
    data = next(e["data"] for e in promoted if e["type"] == "submission.promoted")
    assert data["entry_url"] == "http://cdn.test:80/cdn/@acme/widget/1.0.0/dist/bundle.js"
    assert {f["path"]: f["integrity"] for f in data["files"]}["dist/styles.css"] == sri(
        FILES["dist/styles.css"].encode()
    )
    assert data["csp"] == report["csp"] and data["key_id"] == svc.signer.key_id


def test_running_a_promotion_again_does_nothing_twice(
    client: FlaskClient, svc: Services, admin: Actor
) -> None:
    sid = approve(client, svc, admin, FILES)
    p = _promotion(svc, sid)
    before = svc.cdn.get(manifest_key("demo", "1.0.0"))
    assert cdn_sync.sync(svc, p.id) == "in sync"
    with svc.session() as s:
        s.execute(update(Promotion).values(updated_at=utcnow() - timedelta(hours=1)))
    assert orchestration.sweep(svc)["promotions"] == 0  # nothing left to finish
    assert svc.cdn.get(manifest_key("demo", "1.0.0")) == before
    with svc.session() as s:
        published = s.scalar(select(func.count()).where(AuditEntry.action == "promotion.published"))
    assert published == 1


class FlakyStore:
    """A store that fails the n-th put (a crash or an outage mid-promotion)."""

    def __init__(self, inner: CdnStore, fail_at: int) -> None:
        self.inner, self.fail_at, self.puts = inner, fail_at, 0
        self.label = inner.label

    def put(self, key: str, data: bytes, ctype: str, cache: str, meta: Mapping[str, str]) -> None:
        self.puts += 1
        if self.puts == self.fail_at:
            raise OSError("storage went away")
        self.inner.put(key, data, ctype, cache, meta)

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def open(self, key: str):  # type: ignore[no-untyped-def]
        return self.inner.open(key)

    def delete(self, key: str) -> None:
        self.inner.delete(key)


def test_a_crash_mid_promotion_is_finished_by_the_sweeper(
    client: FlaskClient, svc: Services, admin: Actor, jobs: InlineJobQueue
) -> None:
    local = svc.cdn
    svc.cdn = FlakyStore(local, fail_at=3)  # type: ignore[misc]
    sid = approve(client, svc, admin, FILES)  # the inline promotion fails mid-way
    assert status_of(svc, sid) == "approved"
    p = _promotion(svc, sid)
    assert p.state == "pending" and not p.store_synced and p.files  # the plan is recorded
    assert fetch(client, "/cdn/demo/1.0.0/dist/bundle.js").status == 404  # not published
    with pytest.raises(CdnNotFoundError):
        local.get(manifest_key("demo", "1.0.0"))
    svc.cdn = local  # type: ignore[misc]
    with svc.session() as s:
        s.execute(update(Promotion).values(updated_at=utcnow() - timedelta(hours=1)))
    assert orchestration.sweep(svc)["promotions"] == 1
    assert status_of(svc, sid) == "promoted"
    assert fetch(client, "/cdn/demo/1.0.0/dist/bundle.js").status == 200


def test_a_repack_changed_in_storage_is_never_published_and_is_rolled_back(
    client: FlaskClient, svc: Services, admin: Actor, jobs: InlineJobQueue
) -> None:
    jobs.cdn = False  # keep the promotion back while its tree is tampered with
    sid = approve(client, svc, admin, FILES)
    p = _promotion(svc, sid)
    svc.blobs.put_bytes(repack_key(p.repack_sha256), b"PK\x05\x06" + b"\0" * 18)
    assert cdn_sync.sync(svc, p.id) == "failed"
    p = _promotion(svc, sid)
    assert p.state == "failed" and p.store_synced and "read back" in (p.error or "")
    assert status_of(svc, sid) == "approved"
    assert isinstance(svc.cdn, LocalCdnStore)
    assert [x for x in svc.cdn.root.rglob("*") if x.is_file()] == []
    assert fetch(client, "/cdn/demo/1.0.0/gatehouse-manifest.json").status == 404


def test_another_bytes_or_another_publisher_never_reach_a_promoted_version(
    client: FlaskClient, svc: Services, admin: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    approve(client, svc, admin, FILES)
    # Past the webhook's check (two deliveries racing): the approval itself refuses.
    monkeypatch.setattr("service.submissions._immutable", lambda *a: None)
    same = submit(client, {"dist/bundle.js": "steal()"})
    other = submit(client, {"dist/bundle.js": "x"}, version="2.0.0", publisher_id="mallory")
    for sid in (same, other):
        with pytest.raises(decisions.DecisionError, match="CDN"):
            decisions.decide(svc, sid, admin, "approve", scan_id=latest_scan_id(svc, sid))
        assert status_of(svc, sid) == "awaiting_review"
    with svc.session() as s:
        assert s.scalar(select(func.count()).select_from(Promotion)) == 1


def test_a_name_on_the_cdn_is_its_publishers_at_the_webhook(
    client: FlaskClient, svc: Services, admin: Actor
) -> None:
    from tests.service.conftest import post_submission, submission_fields, zip_bytes

    approve(client, svc, admin, FILES)
    fields = submission_fields(version="2.0.0", publisher_id="mallory")
    refused = post_submission(client, fields=fields, bundle=zip_bytes({"a.js": "x"}))
    assert refused.status_code == 409
    assert refused.get_json()["errors"][0]["field"] == "name"


def test_a_bundle_shipping_the_manifest_name_cannot_be_approved(
    client: FlaskClient, svc: Services, admin: Actor
) -> None:
    sid = submit(client, {"gatehouse-manifest.json": '{"files": []}'})
    with pytest.raises(decisions.DecisionError, match=r"gatehouse-manifest\.json"):
        decisions.decide(svc, sid, admin, "approve", scan_id=latest_scan_id(svc, sid))


def test_a_yank_during_the_upload_publishes_nothing(
    client: FlaskClient, svc: Services, admin: Actor, jobs: InlineJobQueue
) -> None:
    from service.cdn import yank

    jobs.cdn = False
    sid = approve(client, svc, admin, FILES)
    p = _promotion(svc, sid)
    local = svc.cdn

    class YankingStore(FlakyStore):
        def put(
            self, key: str, data: bytes, ctype: str, cache: str, meta: Mapping[str, str]
        ) -> None:
            super().put(key, data, ctype, cache, meta)
            if self.puts == 1:
                yank.yank(svc, sid, "root", "taken over while it uploaded")

    svc.cdn = YankingStore(local, fail_at=-1)  # type: ignore[misc]
    assert cdn_sync.sync(svc, p.id) == "withdrawn"
    svc.cdn = local  # type: ignore[misc]
    assert fetch(client, "/cdn/demo/1.0.0/dist/bundle.js").status == 404  # never published
    assert cdn_sync.sync(svc, p.id) == "withdrawn"
    assert isinstance(local, LocalCdnStore)
    stored = {x.relative_to(local.root).as_posix() for x in local.root.rglob("*") if x.is_file()}
    assert stored == {"_gatehouse/blocklist.json"}  # no file, no manifest, no index
    assert _promotion(svc, sid).published_at is None
    with svc.session() as s:
        kinds = set(s.scalars(select(WebhookDelivery.event_type)))
    assert "submission.promoted" not in kinds
