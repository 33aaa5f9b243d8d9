"""CI pre-flight over HTTP: tokens and scopes, long-poll, SARIF, expiry, limits."""

from __future__ import annotations

import json
from datetime import timedelta

from flask.testing import FlaskClient
from sqlalchemy import func, select, update
from werkzeug.test import TestResponse

from service import orchestration
from service.blobs import artifact_key
from service.models import Artifact, FindingRecord, Scan, utcnow
from service.services import Services
from tests.service.conftest import InlineJobQueue, multipart, token, zip_bytes


def _upload(client: FlaskClient, bearer: str | None, data: bytes | None = None) -> TestResponse:
    body, ctype = multipart({}, {"bundle": ("plugin.zip", data or zip_bytes())})
    headers = {"Content-Type": ctype}
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    return client.post("/api/v1/scans", data=body, headers=headers)


def _auth(bearer: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {bearer}"}


def test_preflight_needs_a_token_with_the_preflight_scope(
    client: FlaskClient, svc: Services
) -> None:
    assert _upload(client, None).status_code == 401
    assert _upload(client, "gh_not-a-token").status_code == 401
    forbidden = _upload(client, token(svc, "read"))
    assert forbidden.status_code == 403
    assert forbidden.mimetype == "application/problem+json"


def test_preflight_scan_runs_and_reports_json_and_sarif(client: FlaskClient, svc: Services) -> None:
    ci = token(svc, "preflight")
    r = _upload(client, ci, zip_bytes({"a.js": "EVIL"}))
    assert r.status_code == 202
    scan_id = r.get_json()["id"]
    view = client.get(f"/api/v1/scans/{scan_id}?wait=5", headers=_auth(ci)).get_json()
    assert view["status"] == "completed" and view["kind"] == "preflight"
    assert view["verdict"] == "reject" and view["report"]["verdict"] == "reject"
    assert view["expires_at"] is not None and view["submission_id"] is None
    sarif = client.get(view["sarif_url"], headers=_auth(ci))
    assert sarif.mimetype == "application/sarif+json"
    assert json.loads(sarif.data)["version"] == "2.1.0"


def test_preflight_sarif_takes_a_code_scanning_category(client: FlaskClient, svc: Services) -> None:
    ci = token(svc, "preflight")
    scan_id = _upload(client, ci, zip_bytes({"a.js": "EVIL"})).get_json()["id"]
    url = f"/api/v1/scans/{scan_id}?format=sarif&wait=5"
    default = json.loads(client.get(url, headers=_auth(ci)).data)
    assert default["runs"][0]["automationDetails"] == {"id": "gatehouse/demo/"}
    named = json.loads(client.get(url + "&category=ci/acme", headers=_auth(ci)).data)
    assert named["runs"][0]["automationDetails"] == {"id": "ci/acme/"}
    assert named["runs"][0]["results"] == default["runs"][0]["results"]
    bad = client.get(url + "&category=%1b%5b2J", headers=_auth(ci))
    assert bad.status_code == 400 and bad.get_json()["type"].endswith("/bad-category")


def test_a_token_sees_only_its_own_scans(client: FlaskClient, svc: Services) -> None:
    mine, other, reader = token(svc, "preflight"), token(svc, "preflight"), token(svc, "read")
    scan_id = _upload(client, mine).get_json()["id"]
    assert client.get(f"/api/v1/scans/{scan_id}", headers=_auth(other)).status_code == 404
    assert client.get(f"/api/v1/scans/{scan_id}", headers=_auth(reader)).status_code == 200
    assert client.get("/api/v1/scans/nope", headers=_auth(mine)).status_code == 404


def test_unfinished_scans_wait_and_have_no_sarif_yet(
    client: FlaskClient, svc: Services, jobs: InlineJobQueue
) -> None:
    jobs.hold = True
    ci = token(svc, "preflight")
    scan_id = _upload(client, ci).get_json()["id"]
    view = client.get(f"/api/v1/scans/{scan_id}?wait=0.3", headers=_auth(ci)).get_json()
    assert view["status"] == "queued" and view["report"] is None
    conflict = client.get(f"/api/v1/scans/{scan_id}?format=sarif", headers=_auth(ci))
    assert conflict.status_code == 409
    for bad in ("x", "61", "-1", "nan"):  # out of the documented 0-60: refused, not capped
        answer = client.get(f"/api/v1/scans/{scan_id}?wait={bad}", headers=_auth(ci))
        assert answer.status_code == 400 and answer.get_json()["type"].endswith("bad-wait")
    assert client.get(f"/api/v1/scans/{scan_id}?format=pdf", headers=_auth(ci)).status_code == 400


def test_bad_preflight_uploads_are_refused(client: FlaskClient, svc: Services) -> None:
    ci = token(svc, "preflight")
    wrong_type = client.post(
        "/api/v1/scans", data=b"x", headers={**_auth(ci), "Content-Type": "application/zip"}
    )
    assert wrong_type.status_code == 415
    body, ctype = multipart({"note": "x"}, {"bundle": ("b.zip", zip_bytes())})
    extra = client.post("/api/v1/scans", data=body, headers={**_auth(ci), "Content-Type": ctype})
    assert extra.status_code == 422
    with svc.session() as s:
        assert s.scalar(select(func.count()).select_from(Scan)) == 0


def test_token_rate_limit_is_429_with_retry_after(client: FlaskClient, svc: Services) -> None:
    ci = token(svc, "preflight", hourly_limit=2)
    assert [_upload(client, ci).status_code for _ in range(2)] == [202, 202]
    limited = _upload(client, ci)
    assert limited.status_code == 429
    assert 0 < int(limited.headers["Retry-After"]) <= 3600


def test_expired_preflight_reports_are_purged_and_gone(client: FlaskClient, svc: Services) -> None:
    ci = token(svc, "preflight")
    scan_id = _upload(client, ci, zip_bytes({"a.js": "EVIL"})).get_json()["id"]
    assert svc.blobs.exists(artifact_key(scan_id, "report.sarif"))
    with svc.session() as s:
        s.execute(
            update(Scan)
            .where(Scan.id == scan_id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    assert orchestration.sweep(svc)["expired"] == 1
    assert client.get(f"/api/v1/scans/{scan_id}", headers=_auth(ci)).status_code == 410
    assert not svc.blobs.exists(artifact_key(scan_id, "report.sarif"))
    with svc.session() as s:
        for model in (FindingRecord, Artifact):
            assert (
                s.scalar(select(func.count()).select_from(model).where(model.scan_id == scan_id))
                == 0
            )
        assert s.get_one(Scan, scan_id).report is None
