"""The webhook and the read API fail closed: secrets, header-vs-body differentials, full
matches, publisher scoping, malformed URLs and scoped names (issue 11, section 6)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import replace
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select, text
from werkzeug.test import TestResponse

from review_ui.app import create_app
from scanner.config import Settings, SettingsError
from scanner.db import make_engine, session_scope
from service.models import Publisher, Scan, StageRun, Submission
from service.services import Services
from service.submissions import publisher_named
from service.tokens import create_token
from service.webhooks import check_secrets, signed_headers
from tests.service.conftest import (
    SECRET,
    multipart,
    post_submission,
    submission_fields,
    zip_bytes,
)


def _post(client: FlaskClient, body: bytes, ctype: str, secret: str = SECRET) -> TestResponse:
    headers = signed_headers(secret, f"msg_{time.monotonic_ns()}", body)
    return client.post("/api/v1/submissions", data=body, headers={**headers, "Content-Type": ctype})


def _publishers(svc: Services) -> list[str]:
    with svc.session() as s:
        return sorted(s.scalars(select(Publisher.external_id)))


# --- secrets ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("webhook_secrets", "whsec_"),
        ("webhook_secrets", "whsec_" + base64.b64encode(b"short").decode()),
        ("webhook_secrets", "whsec_not*base64"),
        ("webhook_secrets", f"{SECRET} whsec_"),
        ("callback_secret", "whsec_"),
        ("cdn_purge_secret", "whsec_short"),
        ("cdn_signing_key", "not-a-seed"),
        ("cdn_signing_key", base64.b64encode(b"sixteen bytes!!!").decode()),
    ],
)
def test_unusable_secrets_stop_the_app_at_start(svc: Services, variable: str, value: str) -> None:
    bad = replace(svc.settings, **{variable: value})
    with pytest.raises(SettingsError, match=f"GATEHOUSE_{variable.upper()}"):
        create_app(bad, svc)


def test_callback_origins_without_a_callback_secret_stop_the_service() -> None:
    unsigned = Settings(callback_origins="https://registry.example", callback_secret="")
    with pytest.raises(SettingsError, match="GATEHOUSE_CALLBACK_SECRET"):
        check_secrets(unsigned)
    check_secrets(Settings())  # nothing configured: nothing to sign, nothing refused


def test_an_unpadded_secret_is_read_as_the_reference_library_reads_it() -> None:
    key = bytes(range(32))
    padded = "whsec_" + base64.b64encode(key).decode()
    assert padded.endswith("=")
    check_secrets(Settings(webhook_secrets=padded.rstrip("=")))
    body = b"{}"
    assert signed_headers(padded.rstrip("="), "m", body, 1) == signed_headers(padded, "m", body, 1)


def test_a_forgery_with_an_empty_key_is_refused_even_if_settings_slipped_through(
    client: FlaskClient, svc: Services
) -> None:
    svc.settings = replace(svc.settings, webhook_secrets="whsec_")
    body = json.dumps(
        {**submission_fields(), "bundle_url": "https://registry.example/b.zip", "sha256": "a" * 64}
    ).encode()
    ts = int(time.time())
    mac = hmac.new(b"", f"msg_forged.{ts}.".encode() + body, hashlib.sha256).digest()
    headers = {
        "webhook-id": "msg_forged",
        "webhook-timestamp": str(ts),
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
        "Content-Type": "application/json",
    }
    r = client.post("/api/v1/submissions", data=body, headers=headers)
    assert r.status_code == 401
    assert r.get_json()["type"].endswith("/no-secret")


def test_a_malformed_secret_beside_a_good_one_does_not_break_every_webhook(
    client: FlaskClient, svc: Services
) -> None:
    svc.settings = replace(svc.settings, webhook_secrets=f"whsec_%%% {SECRET}")
    assert post_submission(client, bundle=zip_bytes()).status_code == 202


def test_compose_refuses_to_start_without_the_secrets() -> None:
    from tests.test_compose import _compose

    env = _compose()["x-gatehouse"]["environment"]
    for name in ("GATEHOUSE_WEBHOOK_SECRETS", "GATEHOUSE_CALLBACK_SECRET"):
        assert env[name].startswith("${" + name + ":?"), env[name]


# --- the signature binds what the body means ------------------------------------------


def _part(boundary: str, name: str, value: str) -> bytes:
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
    ).encode()


def test_changing_only_the_boundary_header_cannot_change_the_submission(
    client: FlaskClient, svc: Services
) -> None:
    """A signed body readable two ways: honest under boundary A, another publisher under B."""
    honest = b"".join(_part("AAA", k, v) for k, v in submission_fields().items())
    evil = b"".join(_part("BBB", k, v) for k, v in submission_fields(publisher_id="victim").items())
    zipped = zip_bytes()
    bundle = (
        b'--AAA\r\nContent-Disposition: form-data; name="bundle"; filename="b.zip"\r\n\r\n'
        + zipped
        + b"\r\n"
    )
    evil_bundle = bundle.replace(b"--AAA", b"--BBB")
    body = honest + bundle + b"--AAA--\r\n" + evil + evil_bundle + b"--BBB--\r\n"
    swapped = _post(client, body, "multipart/form-data; boundary=BBB")
    assert swapped.status_code == 400
    assert swapped.get_json()["type"].endswith("/ambiguous-body")
    assert _publishers(svc) == []
    assert _post(client, body, "multipart/form-data; boundary=AAA").status_code == 202
    assert _publishers(svc) == ["pub-1"]


@pytest.mark.parametrize(
    "ctype",
    [
        "multipart/form-data; boundary={b}; charset=utf-16",
        "multipart/form-data; boundary={b}, multipart/form-data; boundary=other",
        "multipart/form-data; boundary={b}; boundary=other",
    ],
)
def test_content_type_parameters_a_parser_could_read_differently_are_refused(
    client: FlaskClient, svc: Services, ctype: str
) -> None:
    body, honest = multipart(submission_fields(), {"bundle": ("b.zip", zip_bytes())})
    boundary = honest.split("boundary=", 1)[1]
    r = _post(client, body, ctype.format(b=boundary))
    assert r.status_code == 400, r.get_json()
    assert _publishers(svc) == []


@pytest.mark.parametrize(
    ("body", "ctype"),
    [
        (
            b'{"name":"demo","version":"1.0.0","publisher_id":"pub-1","publisher_id":"victim",'
            b'"bundle_url":"https://registry.example/b.zip","sha256":"' + b"a" * 64 + b'"}',
            "application/json",
        ),
        (
            json.dumps(
                {
                    **submission_fields(),
                    "bundle_url": "https://registry.example/b.zip",
                    "sha256": "a" * 64,
                }
            ).encode(),
            "application/json; charset=utf-16",
        ),
        (
            json.dumps(
                {
                    **submission_fields(),
                    "bundle_url": "https://registry.example/b.zip",
                    "sha256": "a" * 64,
                }
            ).encode("utf-16"),
            "application/json",
        ),
    ],
    ids=["duplicate-key", "charset", "utf-16-body"],
)
def test_json_bodies_have_one_reading(
    client: FlaskClient, svc: Services, body: bytes, ctype: str
) -> None:
    assert _post(client, body, ctype).status_code == 400
    assert _publishers(svc) == []


def test_a_file_part_under_a_field_name_is_refused(client: FlaskClient, svc: Services) -> None:
    # Ignored before: a parser that reads file parts as fields would see another callback.
    body, ctype = multipart(
        submission_fields(),
        {"bundle": ("b.zip", zip_bytes()), "callback_url": ("c", b"https://evil.example/")},
    )
    r = _post(client, body, ctype)
    assert r.status_code == 422
    assert r.get_json()["errors"][0]["field"] == "callback_url"


# --- full matches and one publisher per id ---------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("publisher_id", "pub-1\n"),
        ("name", "demo\n"),
        ("version", "1.0.0\n"),
        ("version", "01.0.0"),
        ("version", "1.0.0-a..b"),
        ("version", "1.0.0+a+b"),
        ("version", "1.0.0+build.2"),  # the same precedence as 1.0.0: never another version
        ("name", "@" + "a" * 220 + "/x"),
    ],
)
def test_field_patterns_match_the_whole_value(
    client: FlaskClient, svc: Services, field: str, value: str
) -> None:
    r = post_submission(client, fields=submission_fields(**{field: value}), bundle=zip_bytes())
    assert r.status_code == 422, r.get_json()
    assert r.get_json()["errors"][0]["field"] == field


def test_publisher_ids_are_one_publisher_whatever_their_case(
    client: FlaskClient, svc: Services
) -> None:
    svc.settings = replace(svc.settings, publisher_daily_limit=1)
    first = post_submission(
        client, fields=submission_fields(publisher_id="pub-1"), bundle=zip_bytes()
    )
    assert first.status_code == 202
    again = post_submission(
        client,
        fields=submission_fields(publisher_id="PUB-1", version="1.0.1"),
        bundle=zip_bytes({"x.txt": "1"}),
    )
    assert again.status_code == 429  # the same quota, not a fresh one
    assert _publishers(svc) == ["pub-1"]


# --- read tokens tied to a publisher ----------------------------------------------------


def _publisher_token(svc: Services, external_id: str) -> str:
    with session_scope(svc.engine) as s:
        publisher = publisher_named(s, external_id, "test")
        _, plaintext = create_token(s, "reader", {"read"}, publisher=publisher)
    return plaintext


def test_a_read_token_tied_to_a_publisher_reads_only_its_submissions(
    client: FlaskClient, svc: Services
) -> None:
    mine = post_submission(
        client, fields=submission_fields(publisher_id="acme"), bundle=zip_bytes()
    )
    theirs = post_submission(
        client,
        fields=submission_fields(publisher_id="other", name="theirs"),
        bundle=zip_bytes({"o": "1"}),
    )
    auth = {"Authorization": f"Bearer {_publisher_token(svc, 'ACME')}"}
    ok = client.get(f"/api/v1/submissions/{mine.get_json()['id']}", headers=auth)
    assert ok.status_code == 200 and ok.get_json()["publisher_id"] == "acme"
    other = client.get(f"/api/v1/submissions/{theirs.get_json()['id']}", headers=auth)
    assert other.status_code == 404
    scan = client.get(f"/api/v1/scans/{theirs.get_json()['scan_id']}", headers=auth)
    assert scan.status_code == 404
    assert (
        client.get(f"/api/v1/scans/{mine.get_json()['scan_id']}", headers=auth).status_code == 200
    )


# --- malformed URLs and scoped names ---------------------------------------------------


@pytest.mark.parametrize("field", ["callback_url", "bundle_url"])
@pytest.mark.parametrize(
    "url", ["https://registry.example:99999/x", "https://registry.example:abc/x", "https://[::1/x"]
)
def test_a_url_with_a_bad_port_is_a_422(
    client: FlaskClient, svc: Services, field: str, url: str
) -> None:
    fields = {**submission_fields(), field: url}
    if field == "bundle_url":
        body = json.dumps({**fields, "sha256": "a" * 64}).encode()
        r = _post(client, body, "application/json")
    else:
        r = post_submission(client, fields=fields, bundle=zip_bytes())
    assert r.status_code == 422, r.get_json()
    assert r.get_json()["errors"][0]["field"] == field


def test_a_scoped_plugin_name_is_scanned_end_to_end(client: FlaskClient, svc: Services) -> None:
    r = post_submission(
        client, fields=submission_fields(name="@acme/widget"), bundle=zip_bytes({"a.js": "EVIL"})
    )
    assert r.status_code == 202
    with svc.session() as s:
        scan = s.get_one(Scan, r.get_json()["scan_id"])
        assert scan.status == "completed" and scan.error is None
        assert scan.verdict == "reject"  # the marker stage saw the bundle's content
        errors = s.scalar(
            select(func.count()).where(StageRun.scan_id == scan.id, StageRun.status == "error")
        )
        assert errors == 0
        assert s.get_one(Submission, r.get_json()["id"]).plugin_name == "@acme/widget"


def test_publishers_recorded_with_capitals_keep_their_limit_after_the_upgrade(
    tmp_path: Path,
) -> None:
    from alembic import command
    from alembic.config import Config

    from service.db import MIGRATIONS, VERSION_TABLE, migrate

    engine = make_engine(f"sqlite:///{tmp_path / 'up.db'}")
    migrate(engine)
    with engine.begin() as conn:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = conn
        config.attributes["version_table"] = VERSION_TABLE
        command.downgrade(config, "0003")
        conn.execute(
            text(
                "INSERT INTO publishers (external_id, daily_limit, created_at) VALUES"
                " ('Acme', 50, '2026-01-01'), ('Twin', NULL, '2026-01-01'),"
                " ('twin', NULL, '2026-01-01')"
            )
        )
        command.upgrade(config, "head")
    with engine.connect() as conn:
        rows = dict(conn.execute(text("SELECT external_id, daily_limit FROM publishers")).all())
    assert rows == {"acme": 50, "Twin": None, "twin": None}
    engine.dispose()
