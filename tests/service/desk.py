"""Helpers for the desk's tests: users, signing in, a concluded submission."""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

from flask.testing import FlaskClient
from sqlalchemy import select

from scanner.config import Settings
from scanner.db import session_scope
from scanner.findings import Category, Finding, Severity, StageResult
from scanner.workspace import Workspace
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


# Words a test puts in a bundle's files to get findings of a severity from DeskStage.
MARKERS = {
    b"EVIL": ("desk-evil", Category.MALWARE, Severity.CRITICAL),
    b"SUSPECT": ("desk-suspect", Category.OBFUSCATION, Severity.MEDIUM),
    b"NOTE": ("desk-note", Category.DYNAMIC_CODE, Severity.LOW),
}
# A valid 1x1 PNG, for the screenshot artifact.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0000003010100c9fe92ef"
    "0000000049454e44ae426082"
)


class DeskStage:
    """Findings from marker words, one per occurrence line; enough to drive verdicts."""

    name: ClassVar[str] = "desk"
    version: ClassVar[int] = 1

    @classmethod
    def from_settings(cls, _: Settings) -> DeskStage:
        return cls()

    def run(self, workspace: Workspace) -> StageResult:
        result = StageResult(self.name, self.version)
        for f in workspace.files:
            data = workspace.read_bytes(f.path)
            for number, line in enumerate(data.splitlines(), 1):
                for word, (rule, category, severity) in MARKERS.items():
                    if word in line:
                        # Like a real rule: the code from the match on, not the whole line.
                        at = line.index(word)
                        evidence = line[at : at + 60].decode("utf-8", "replace")
                        result.findings.append(
                            Finding(
                                self.name,
                                rule,
                                category,
                                severity,
                                f"{rule} seen",
                                f.path,
                                number,
                                evidence,
                            )
                        )
        result.coverage.scanned = [f.path for f in workspace.files]
        return result


class FakeRuntimeStage:
    """A runtime stage without a browser: its trace repeats what the bundle's trace.json
    says (so a test controls every trace value) and a real PNG screenshot."""

    name: ClassVar[str] = "runtime"
    version: ClassVar[int] = 1

    @classmethod
    def from_settings(cls, _: Settings) -> FakeRuntimeStage:
        return cls()

    def run(self, workspace: Workspace) -> StageResult:
        result = StageResult(self.name, self.version)
        trace: dict[str, Any] = {"role": "user", "events": [], "requests": []}
        if workspace.has("trace.json"):
            trace.update(json.loads(workspace.read_bytes("trace.json")))
        result.artifacts["trace-user.json"] = json.dumps(trace).encode()
        result.artifacts["screenshot-user.png"] = PNG
        return result


DESK_FACTORIES = (DeskStage.from_settings, FakeRuntimeStage.from_settings)
