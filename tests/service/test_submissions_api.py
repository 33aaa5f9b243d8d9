"""The registry webhook: signatures, idempotency, bad input, rate limits, reads."""

from __future__ import annotations

import io
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select, update
from werkzeug.test import TestResponse

from review_ui.app import create_app
from scanner.config import Settings
from scanner.db import make_engine
from service.blobs import LocalBlobStore
from service.db import migrate
from service.models import AuditEntry, Bundle, Publisher, Scan, Submission, SubmissionEvent
from service.services import Services
from service.webhooks import new_secret, signed_headers
from tests.service.conftest import (
    SECRET,
    InlineJobQueue,
    files_under,
    multipart,
    post_submission,
    submission_fields,
    token,
    zip_bytes,
)
from tests.service.live import postgres_database


def counts(svc: Services) -> tuple[int, ...]:
    with svc.session() as s:
        return tuple(
            s.scalar(select(func.count()).select_from(m)) or 0
            for m in (Submission, Scan, Bundle, SubmissionEvent, AuditEntry)
        )


def test_signed_submission_is_accepted_queued_and_scanned(
    client: FlaskClient, svc: Services, jobs: InlineJobQueue
) -> None:
    jobs.hold = True
    r = post_submission(client, bundle=zip_bytes())
    assert r.status_code == 202
    body = r.get_json()
    assert body["status"] == "received" and body["duplicate"] is False
    assert r.headers["Location"] == body["status_url"]
    assert jobs.held == [("start", body["scan_id"], "scan")]
    with svc.session() as s:
        assert s.get_one(Scan, body["scan_id"]).status == "queued"


def test_redelivered_webhook_id_returns_the_same_submission(
    client: FlaskClient, svc: Services
) -> None:
    first = post_submission(client, bundle=zip_bytes(), msg_id="msg_same")
    before = counts(svc)
    again = post_submission(client, bundle=zip_bytes(), msg_id="msg_same")
    assert again.status_code == 202
    assert again.get_json()["id"] == first.get_json()["id"]
    assert again.get_json()["scan_id"] == first.get_json()["scan_id"]
    with svc.session() as s:  # the submission's status now, not the one it had then
        assert again.get_json()["status"] == s.get_one(Submission, first.get_json()["id"]).status
    assert again.get_json()["duplicate"] is True
    assert counts(svc) == before


def test_same_name_version_and_bytes_under_a_new_id_is_the_same_submission(
    client: FlaskClient, svc: Services
) -> None:
    first = post_submission(client, bundle=zip_bytes())
    again = post_submission(client, bundle=zip_bytes())
    assert again.get_json()["id"] == first.get_json()["id"]
    newer = post_submission(
        client, fields=submission_fields(version="1.0.1"), bundle=zip_bytes({"extra.txt": "x"})
    )
    assert newer.status_code == 202 and newer.get_json()["id"] != first.get_json()["id"]


@pytest.mark.parametrize("publisher", ["pub-1", "pub-2"])
def test_a_version_is_immutable_other_bytes_are_409_from_anyone(
    client: FlaskClient, svc: Services, publisher: str
) -> None:
    """npm's rule: demo@1.0.0 means one set of bytes forever, whoever sends other ones."""
    first = post_submission(client, bundle=zip_bytes())
    before = counts(svc)
    other = post_submission(
        client,
        fields=submission_fields(publisher_id=publisher),
        bundle=zip_bytes({"dist/bundle.js": "steal()"}),
    )
    assert other.status_code == 409, other.get_data(as_text=True)
    problem = other.get_json()
    assert problem["type"].endswith("version-exists") and problem["errors"][0]["field"] == "version"
    assert counts(svc) == before  # nothing written, no bytes stored under a name
    assert post_submission(client, bundle=zip_bytes()).get_json()["id"] == first.get_json()["id"]


def test_bundle_bytes_are_stored_once(client: FlaskClient, svc: Services) -> None:
    post_submission(client, bundle=zip_bytes())
    post_submission(client, fields=submission_fields(version="1.0.1"), bundle=zip_bytes())
    with svc.session() as s:
        assert s.scalar(select(func.count()).select_from(Bundle)) == 1
    assert len(files_under(svc.settings.data_dir / "blobs" / "bundles")) == 1


def test_signature_problems_are_401_and_write_nothing(client: FlaskClient, svc: Services) -> None:
    before = counts(svc)
    wrong = post_submission(client, bundle=zip_bytes(), secret=new_secret())
    stale = post_submission(client, bundle=zip_bytes(), timestamp=int(time.time()) - 301)
    future = post_submission(client, bundle=zip_bytes(), timestamp=int(time.time()) + 301)
    unsigned = client.post("/api/v1/submissions", data=b"{}", content_type="application/json")
    assert [r.status_code for r in (wrong, stale, future, unsigned)] == [401] * 4
    assert wrong.get_json()["type"].endswith("/bad-signature")
    assert stale.get_json()["type"].endswith("/stale-timestamp")
    assert unsigned.get_json()["type"].endswith("/missing-signature")
    assert wrong.mimetype == "application/problem+json"
    assert counts(svc) == before
    assert not files_under(svc.settings.data_dir / "blobs")


def test_a_tampered_body_fails_the_signature(client: FlaskClient, svc: Services) -> None:
    body, ctype = multipart(submission_fields(), {"bundle": ("b.zip", zip_bytes())})
    headers = signed_headers(SECRET, "msg_t", body)
    tampered = body.replace(b"demo", b"dema", 1)
    r = client.post(
        "/api/v1/submissions", data=tampered, headers={**headers, "Content-Type": ctype}
    )
    assert r.status_code == 401


def test_rotated_secrets_are_both_accepted(client: FlaskClient, svc: Services) -> None:
    new = new_secret()
    app = create_app(svc.settings, svc)
    svc.settings = replace(svc.settings, webhook_secrets=f"{new} {SECRET}")
    c = app.test_client()
    assert post_submission(c, bundle=zip_bytes(), secret=new).status_code == 202
    other = zip_bytes({"a": "b"})
    fields = submission_fields(version="1.0.1")
    assert post_submission(c, fields=fields, bundle=other, secret=SECRET).status_code == 202


def _signed(client: FlaskClient, body: bytes, ctype: str, msg_id: str = "msg_x") -> TestResponse:
    headers = signed_headers(SECRET, msg_id, body)
    return client.post("/api/v1/submissions", data=body, headers={**headers, "Content-Type": ctype})


def test_bad_bodies_get_clear_problems_and_write_nothing(
    client: FlaskClient, svc: Services
) -> None:
    before = counts(svc)
    cases = {
        "malformed json": (b"{not json", "application/json", 400, "malformed-json"),
        "json array": (b"[]", "application/json", 400, "malformed-json"),
        "malformed multipart": (
            b'--xyz\r\nContent-Disposition: form-data; name="name"\r\n\r\nab',
            "multipart/form-data; boundary=xyz",
            400,
            "malformed-multipart",
        ),
        "text": (b"hello", "text/plain", 415, "unsupported-media-type"),
        "unknown field": (
            json.dumps(
                {
                    **submission_fields(),
                    "bundle_url": "https://registry.example/b.zip",
                    "sha256": "a" * 64,
                    "tracking": "1",
                }
            ).encode(),
            "application/json",
            422,
            "invalid-submission",
        ),
        "missing version": (
            json.dumps({"name": "demo", "publisher_id": "p"}).encode(),
            "application/json",
            422,
            "invalid-submission",
        ),
        "ssrf bundle_url": (
            json.dumps(
                {
                    **submission_fields(),
                    "bundle_url": "http://169.254.169.254/latest",
                    "sha256": "a" * 64,
                }
            ).encode(),
            "application/json",
            422,
            "invalid-submission",
        ),
        "userinfo bundle_url": (
            json.dumps(
                {
                    **submission_fields(),
                    "bundle_url": "https://registry.example@evil.example/b.zip",
                    "sha256": "a" * 64,
                }
            ).encode(),
            "application/json",
            422,
            "invalid-submission",
        ),
        "bad version": (
            json.dumps(
                {
                    **submission_fields(version="latest"),
                    "bundle_url": "https://registry.example/b.zip",
                    "sha256": "a" * 64,
                }
            ).encode(),
            "application/json",
            422,
            "invalid-submission",
        ),
    }
    for i, (label, (body, ctype, status, code)) in enumerate(cases.items()):
        r = _signed(client, body, ctype, f"msg_bad_{i}")
        assert r.status_code == status, label
        assert r.get_json()["type"].endswith("/" + code), label
    assert counts(svc) == before


def test_callback_url_outside_the_allowlist_is_refused(client: FlaskClient, svc: Services) -> None:
    r = post_submission(
        client,
        fields=submission_fields(callback_url="http://10.0.0.1:8080/hook"),
        bundle=zip_bytes(),
    )
    assert r.status_code == 422
    assert r.get_json()["errors"][0]["field"] == "callback_url"


def test_bundle_url_submission_is_accepted_without_a_body(
    client: FlaskClient, svc: Services, jobs: InlineJobQueue
) -> None:
    jobs.hold = True
    body = json.dumps(
        {
            **submission_fields(),
            "bundle_url": "https://registry.example/demo-1.0.0.zip",
            "sha256": "b" * 64,
        }
    ).encode()
    r = _signed(client, body, "application/json")
    assert r.status_code == 202
    with svc.session() as s:
        scan = s.get_one(Scan, r.get_json()["scan_id"])
        assert scan.bundle_sha256 is None  # fetched by the worker


def test_oversize_upload_is_413_before_and_while_reading(
    client: FlaskClient, svc: Services
) -> None:
    small = replace(svc.settings, archive=replace(svc.settings.archive, max_bundle_bytes=10_000))
    svc.settings = small
    c = create_app(small, svc).test_client()
    big = zip_bytes({"blob.bin": os.urandom(200_000)})
    before = counts(svc)
    r = post_submission(c, bundle=big)
    assert r.status_code == 413
    assert r.get_json()["type"].endswith("/too-large")
    # Without a Content-Length (chunked), the cap applies while streaming.
    body, ctype = multipart(submission_fields(), {"bundle": ("b.zip", big)})
    headers = signed_headers(SECRET, "msg_chunked", body)
    r = c.post(
        "/api/v1/submissions",
        input_stream=io.BytesIO(body),
        headers={**headers, "Content-Type": ctype, "Transfer-Encoding": "chunked"},
    )
    assert r.status_code == 413
    assert counts(svc) == before
    assert not list((svc.settings.work_root).glob("upload-*"))


def test_publisher_rate_limit_is_429_with_retry_after(
    client: FlaskClient, svc: Services, jobs: InlineJobQueue
) -> None:
    jobs.hold = True
    svc.settings = replace(svc.settings, publisher_daily_limit=2)
    for i in range(2):
        ok = post_submission(
            client, fields=submission_fields(version=f"1.0.{i}"), bundle=zip_bytes()
        )
        assert ok.status_code == 202
    r = post_submission(
        client, fields=submission_fields(version="1.0.9"), bundle=zip_bytes({"n": "9"})
    )
    assert r.status_code == 429
    assert 0 < int(r.headers["Retry-After"]) <= 86400
    other = post_submission(
        client, fields=submission_fields(publisher_id="pub-2", version="1.0.9"), bundle=zip_bytes()
    )
    assert other.status_code == 202


def test_a_redelivery_at_the_limit_is_still_the_accepted_submission(
    client: FlaskClient, svc: Services, jobs: InlineJobQueue
) -> None:
    # The registry retries deliveries it did not see answered: that is not a new submission.
    jobs.hold = True
    svc.settings = replace(svc.settings, publisher_daily_limit=1)
    first = post_submission(client, bundle=zip_bytes(), msg_id="msg_once")
    again = post_submission(client, bundle=zip_bytes(), msg_id="msg_once")
    assert again.status_code == 202 and again.get_json()["id"] == first.get_json()["id"]


def test_a_publishers_own_daily_limit_overrides_the_default(
    client: FlaskClient, svc: Services, jobs: InlineJobQueue
) -> None:
    jobs.hold = True
    svc.settings = replace(svc.settings, publisher_daily_limit=1)
    assert post_submission(client, bundle=zip_bytes()).status_code == 202
    with svc.session() as s:
        s.execute(update(Publisher).values(daily_limit=3))
    statuses = [
        post_submission(
            client, fields=submission_fields(version=f"2.0.{i}"), bundle=zip_bytes({"n": str(i)})
        ).status_code
        for i in range(3)
    ]
    assert statuses == [202, 202, 429]


def test_get_submission_shows_status_verdict_summary_and_history(
    client: FlaskClient, svc: Services
) -> None:
    sub_id = post_submission(client, bundle=zip_bytes({"x.js": "EVIL"})).get_json()["id"]
    read = token(svc, "read")
    r = client.get(f"/api/v1/submissions/{sub_id}", headers={"Authorization": f"Bearer {read}"})
    assert r.status_code == 200
    body = r.get_json()
    assert body["status"] == "rejected" and body["verdict"] == "reject"
    assert body["findings_summary"].get("critical", 0) >= 1
    assert [(h["from"], h["to"]) for h in body["history"]] == [
        (None, "received"),
        ("received", "scanning"),
        ("scanning", "rejected"),
    ]
    assert client.get(f"/api/v1/submissions/{sub_id}").status_code == 401
    pre = token(svc, "preflight")
    forbidden = client.get(
        f"/api/v1/submissions/{sub_id}", headers={"Authorization": f"Bearer {pre}"}
    )
    assert forbidden.status_code == 403
    missing = client.get("/api/v1/submissions/nope", headers={"Authorization": f"Bearer {read}"})
    assert missing.status_code == 404


@pytest.mark.integration
def test_racing_deliveries_on_postgresql_make_one_submission(
    service_settings: Settings, jobs: InlineJobQueue
) -> None:
    # The registry retries and fans out: the same delivery, and the same version under new
    # delivery ids, arrive at once for a publisher nobody has seen yet.
    with postgres_database() as url:
        engine = make_engine(url)
        migrate(engine)
        svc = Services(
            service_settings, engine, LocalBlobStore(service_settings.data_dir / "blobs"), jobs
        )
        jobs.svc, jobs.hold = svc, True
        app = create_app(svc.settings, svc)
        start = threading.Barrier(8)
        fields = submission_fields(publisher_id="pub-racing")

        def deliver(i: int) -> tuple[int, str]:
            client = app.test_client()
            start.wait()
            r = post_submission(
                client, fields=fields, bundle=zip_bytes(), msg_id="msg_race" if i % 2 else f"m{i}"
            )
            return r.status_code, r.get_json()["id"]

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(deliver, range(8)))
        assert {status for status, _ in answers} == {202}
        assert len({sub_id for _, sub_id in answers}) == 1
        with svc.session() as s:
            for model in (Submission, Scan, Bundle, Publisher, SubmissionEvent):
                assert s.scalar(select(func.count()).select_from(model)) == 1, model
            for action in ("submission.received", "publisher.created"):
                entries = select(func.count()).where(AuditEntry.action == action)
                assert s.scalar(entries) == 1, action
        engine.dispose()
