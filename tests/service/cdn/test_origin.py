"""The origin at /cdn: the headers the issue lists, only listed files of live versions,
and nothing at all when the records cannot say whether a version is yanked."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from scanner.csp import sri
from service.cdn.paths import IMMUTABLE, SHORT_LIVED
from service.models import Promotion
from service.review.accounts import Actor
from service.services import Services
from tests.service.cdn.conftest import approve, dsse_payload, fetch

JS = "var P = { mount: function (el) { el.textContent = 'x'; } };"
FILES = {"dist/bundle.js": JS, "dist/readme.html": "<img src=x onerror=alert(1)>"}


@pytest.fixture
def promoted(client: FlaskClient, svc: Services, admin: Actor) -> str:
    return approve(client, svc, admin, FILES, name="@acme/w")


def test_a_file_is_served_with_the_cdn_headers(client: FlaskClient, promoted: str) -> None:
    r = fetch(client, "/cdn/@acme/w/1.0.0/dist/bundle.js")
    assert r.status == 200 and r.body == JS.encode()
    h = r.headers
    assert h["Content-Type"] == "text/javascript; charset=utf-8"
    assert h["Cache-Control"] == IMMUTABLE
    assert h["X-Content-Type-Options"] == "nosniff"
    assert h["Cross-Origin-Resource-Policy"] == "cross-origin"
    assert h["Access-Control-Allow-Origin"] == "*"
    assert "sandbox" in h["Content-Security-Policy"]
    assert "gh-version:@acme/w@1.0.0" in h["Surrogate-Key"]
    assert "Set-Cookie" not in h and "Cookie" not in h.get("Vary", "")
    again = fetch(client, "/cdn/@acme/w/1.0.0/dist/bundle.js", headers={"If-None-Match": h["ETag"]})
    assert again.status == 304 and again.body == b""
    html = fetch(client, "/cdn/@acme/w/1.0.0/dist/readme.html")
    assert html.headers["Content-Type"] == "text/plain; charset=utf-8"
    for doc in ("/cdn/@acme/w/index.json", "/cdn/@acme/w/1.0.0/gatehouse-manifest.json"):
        r = fetch(client, doc)
        assert r.status == 200 and r.headers["Cache-Control"] == SHORT_LIVED, doc
        assert r.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize(
    "path",
    [
        "/cdn/@acme/w/1.0.0/dist/missing.js",
        "/cdn/@acme/w/1.0.0/../../../gatehouse.db",
        "/cdn/@acme/w/1.0.0/dist/%2e%2e/%2e%2e/x",
        "/cdn/@acme/w/2.0.0/dist/bundle.js",
        "/cdn/_gatehouse/blocklist.json",
        "/cdn/@acme/w/1.0.0/",
        # Another spelling of a served URL would be another year-long cache entry.
        "/cdn/@acme/w/1.0.0/dist/bundle.js?cb=1",
        "/cdn/@acme/w/1.0.0/dist/bundle%2Ejs",
        "/cdn/@acme/w/1.0.0/%64ist/bundle.js",
        "/cdn/%40acme/w/1.0.0/dist/bundle.js",
    ],
)
def test_only_listed_files_of_a_published_version_are_served(
    client: FlaskClient, promoted: str, path: str
) -> None:
    assert fetch(client, path).status == 404


def test_files_of_a_version_not_yet_published_are_not_served(
    client: FlaskClient, svc: Services, admin: Actor
) -> None:
    svc.jobs.cdn = False  # type: ignore[attr-defined]
    approve(client, svc, admin, FILES)
    assert fetch(client, "/cdn/demo/1.0.0/dist/bundle.js").status == 404


@contextmanager
def broken_database(svc: Services) -> Iterator[None]:
    def refuse() -> None:
        raise OperationalError("SELECT", {}, Exception("the database went away"))

    original = svc.session
    svc.session = refuse  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        svc.session = original  # type: ignore[method-assign]


def test_unreadable_records_serve_nothing(
    client: FlaskClient, svc: Services, promoted: str
) -> None:
    with broken_database(svc):
        r = fetch(client, "/cdn/@acme/w/1.0.0/dist/bundle.js")
    assert r.status == 503 and JS.encode() not in r.body
    assert r.headers["Cache-Control"] == "no-store" and r.headers["Retry-After"]


def test_origin_hits_are_counted(
    client: FlaskClient, svc: Services, promoted: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("review_ui.cdn.FLUSH_EVERY", 0.0)
    for _ in range(3):
        fetch(client, "/cdn/@acme/w/1.0.0/dist/bundle.js")
    with svc.session() as s:
        assert s.scalar(select(Promotion.hits)) == 3


def test_the_signing_key_is_published(client: FlaskClient, svc: Services) -> None:
    well_known = client.get("/.well-known/gatehouse/cdn-keys.json").get_json()
    assert well_known == client.get("/api/v1/cdn/keys").get_json()
    (key,) = well_known["keys"]
    assert key["kid"] == svc.signer.key_id and key["kty"] == "OKP"
    raw = base64.urlsafe_b64decode(key["x"] + "=")
    assert base64.b64decode(key["public_key"]) == raw


def test_the_blocklist_is_there_signed_before_anything_is_yanked(
    client: FlaskClient, svc: Services
) -> None:
    r = fetch(client, "/cdn/blocklist.json")
    assert r.status == 200 and r.headers["Cache-Control"] == SHORT_LIVED
    body = dsse_payload(r.body, svc.signer.public)
    assert body["version"] == 0 and body["entries"] == []


def test_the_manifest_lists_the_sri_a_host_checks(
    client: FlaskClient, svc: Services, promoted: str
) -> None:
    manifest = dsse_payload(
        fetch(client, "/cdn/@acme/w/1.0.0/gatehouse-manifest.json").body, svc.signer.public
    )
    listed = {f["path"]: f["integrity"] for f in manifest["files"]}
    assert listed["dist/bundle.js"] == sri(fetch(client, "/cdn/@acme/w/1.0.0/dist/bundle.js").body)
