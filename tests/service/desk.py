"""Helpers for the desk's tests: users, signing in, a concluded submission."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import select

from scanner.db import session_scope
from service.models import Publisher, Scan, Submission, User
from service.review.accounts import Actor, create_user, set_password
from service.services import Services
from tests.service.conftest import post_submission, submission_fields, zip_bytes

PASSWORD = "correct horse battery"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def make_user(svc: Services, name: str, role: str = "reviewer") -> Actor:
    """An account with its own password set (no one-time password pending)."""
    with session_scope(svc.engine) as s:
        user, otp = create_user(s, name, role, "test")
        set_password(s, user, otp, PASSWORD)
        return Actor(user.id, user.name, user.role)


def csrf_of(html: str) -> str:
    found = CSRF_RE.search(html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def sign_in(client: FlaskClient, name: str, password: str = PASSWORD) -> Any:
    page = client.get("/login")
    token = csrf_of(page.get_data(as_text=True))
    return client.post(
        "/login", data={"name": name, "password": password, "csrf_token": token, "next": ""}
    )


def page_token(client: FlaskClient, path: str = "/queue") -> str:
    return csrf_of(client.get(path).get_data(as_text=True))


def submit(
    client: FlaskClient,
    files: dict[str, str | bytes] | None = None,
    **fields: str,
) -> str:
    """A submission through the signed webhook, scanned by the fake stages; its id."""
    response = post_submission(client, fields=submission_fields(**fields), bundle=zip_bytes(files))
    assert response.status_code == 202, response.get_data(as_text=True)
    return str(response.get_json()["id"])


def latest_scan_id(svc: Services, submission_id: str) -> str:
    with session_scope(svc.engine) as s:
        scan = s.scalars(
            select(Scan).where(Scan.submission_id == submission_id).order_by(Scan.created_at.desc())
        ).first()
        assert scan is not None
        return scan.id


def status_of(svc: Services, submission_id: str) -> str:
    with session_scope(svc.engine) as s:
        return s.get_one(Submission, submission_id).status


def set_trust(svc: Services, publisher: str, level: str) -> None:
    with session_scope(svc.engine) as s:
        row = s.scalars(select(Publisher).where(Publisher.external_id == publisher)).one()
        row.trust = level


def user_id(svc: Services, name: str) -> int:
    with session_scope(svc.engine) as s:
        return s.scalars(select(User.id).where(User.name == name)).one()


__all__ = ["replace"]
