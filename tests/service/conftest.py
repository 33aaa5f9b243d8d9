"""The service on an embedded database, with fake stages and an in-process job queue."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from review_ui.app import create_app
from scanner.config import Settings
from scanner.db import make_engine, session_scope
from scanner.findings import Category, Finding, Severity, StageResult
from scanner.workspace import Workspace
from service import callbacks, orchestration
from service.blobs import LocalBlobStore
from service.cdn import sync as cdn_sync
from service.db import migrate
from service.jobs import QUEUES, queue_of
from service.orchestration import StageRegistry
from service.services import Services
from service.tokens import create_token
from service.webhooks import new_secret, signed_headers
from tests.conftest import CLEAN_JS, manifest

SECRET = new_secret()


class MarkerStage:
    """Finds the text EVIL in any file: enough to drive verdicts without real tools."""

    name: ClassVar[str] = "marker"
    version: ClassVar[int] = 1

    @classmethod
    def from_settings(cls, _: Settings) -> MarkerStage:
        return cls()

    def run(self, workspace: Workspace) -> StageResult:
        result = StageResult(self.name, self.version)
        for f in workspace.files:
            if b"EVIL" in workspace.read_bytes(f.path):
                result.findings.append(
                    Finding(self.name, "evil", Category.MALWARE, Severity.CRITICAL, "evil", f.path)
                )
        result.artifacts["trace.json"] = b'{"seen": true}'
        result.raw = {"files": len(workspace.files)}
        return result


class CountingStage:
    name: ClassVar[str] = "counting"
    version: ClassVar[int] = 1
    runs: ClassVar[int] = 0

    @classmethod
    def from_settings(cls, _: Settings) -> CountingStage:
        return cls()

    def run(self, workspace: Workspace) -> StageResult:
        type(self).runs += 1
        return StageResult(self.name, self.version)


FAKE_FACTORIES = (MarkerStage.from_settings, CountingStage.from_settings)


@dataclass
class InlineJobQueue:
    """Runs each job at once, in this process; ``hold`` keeps jobs back to test recovery.

    Promotions to the CDN are kept back too unless ``cdn`` is set: the desk's tests see a
    decision's own effect (``approved``), the CDN's tests the whole way to ``promoted``.
    """

    svc: Services | None = None
    registry: StageRegistry = field(default_factory=lambda: StageRegistry(FAKE_FACTORIES))
    hold: bool = False
    held: list[tuple[str, Any]] = field(default_factory=list)
    identity: str | None = None  # what broker_identity() answers
    urgent: list[str] = field(default_factory=list)
    cdn: bool = False
    # Scans whose stages were sent as background (retro) work.
    background: list[str] = field(default_factory=list)

    def start_scan(self, scan_id: str, urgent: bool = False) -> None:
        if urgent:
            self.urgent.append(scan_id)
        if self.hold:
            self.held.append(("start", scan_id, queue_of("intake", urgent)))
            return
        assert self.svc is not None
        orchestration.start_scan(self.svc, scan_id, self.registry)

    def run_stages(
        self, scan_id: str, stages: Sequence[str], urgent: bool = False, background: bool = False
    ) -> None:
        if urgent:
            self.urgent.append(scan_id)
        if background:
            self.background.append(scan_id)
        if self.hold:
            for name in stages:
                self.held.append(("stages", (scan_id, (name,)), queue_of(name, urgent, background)))
            return
        assert self.svc is not None
        for name in stages:
            orchestration.run_stage(self.svc, scan_id, name, self.registry)

    def start_retro(self, scan_id: str) -> None:
        if self.hold:
            self.held.append(("retro", scan_id, "retro"))
            return
        self.start_scan(scan_id)

    def promote(self, promotion_id: int) -> None:
        if self.hold or not self.cdn:
            self.held.append(("promote", promotion_id, "cdn"))
            return
        assert self.svc is not None
        cdn_sync.sync(self.svc, promotion_id)

    def deliver(self, delivery_id: int) -> None:
        if self.hold:
            self.held.append(("deliver", delivery_id, "callbacks"))
            return
        assert self.svc is not None
        callbacks.attempt(self.svc, delivery_id)

    def ping(self) -> None:
        return None

    def depths(self) -> dict[str, int]:
        """Held jobs wait in their queues, as messages would in a broker."""
        out: dict[str, int] = dict.fromkeys(QUEUES, 0)
        for *_, queue in self.held:
            out[queue] = out.get(queue, 0) + 1
        return out

    def broker_identity(self) -> str | None:
        return self.identity


@pytest.fixture
def service_settings(settings: Settings) -> Settings:
    return replace(
        settings,
        webhook_secrets=SECRET,
        callback_secret=SECRET,
        registry_origins="http://127.0.0.1:1 https://registry.example",
        callback_origins="http://127.0.0.1:1 https://registry.example",
    )


@pytest.fixture
def jobs() -> InlineJobQueue:
    return InlineJobQueue()


@pytest.fixture
def svc(service_settings: Settings, jobs: InlineJobQueue) -> Iterator[Services]:
    service_settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(f"sqlite:///{service_settings.data_dir / 'test.db'}")
    migrate(engine)
    services = Services(
        service_settings, engine, LocalBlobStore(service_settings.data_dir / "blobs"), jobs
    )
    jobs.svc = services
    yield services
    engine.dispose()


@pytest.fixture
def app(svc: Services) -> Flask:
    return create_app(svc.settings, svc)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def zip_bytes(files: dict[str, str | bytes] | None = None) -> bytes:
    content: dict[str, str | bytes] = {
        "plugin.json": json.dumps(manifest(name="demo")),
        "dist/bundle.js": CLEAN_JS,
    }
    content.update(files or {})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in content.items():
            # A fixed timestamp: the same files must give the same bytes (content addressing).
            zf.writestr(zipfile.ZipInfo(name, (2026, 1, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    prepared = requests.Request("POST", "http://x/", data=fields, files=files).prepare()
    assert isinstance(prepared.body, bytes)
    return prepared.body, prepared.headers["Content-Type"]


def submission_fields(**overrides: str) -> dict[str, str]:
    fields = {"name": "demo", "version": "1.0.0", "publisher_id": "pub-1"}
    fields.update(overrides)
    return fields


_ids = iter(range(1_000_000))


def post_submission(
    client: FlaskClient,
    *,
    fields: dict[str, str] | None = None,
    bundle: bytes | None = None,
    msg_id: str | None = None,
    secret: str = SECRET,
    timestamp: int | None = None,
) -> Any:
    body, ctype = multipart(
        fields or submission_fields(),
        {} if bundle is None else {"bundle": ("demo.zip", bundle)},
    )
    headers = signed_headers(secret, msg_id or f"msg_{next(_ids)}", body, timestamp)
    return client.post("/api/v1/submissions", data=body, headers={**headers, "Content-Type": ctype})


def token(svc: Services, *scopes: str, hourly_limit: int | None = None) -> str:
    with session_scope(svc.engine) as s:
        _, plaintext = create_token(s, "test", set(scopes), hourly_limit=hourly_limit)
    return plaintext


def files_under(path: Path) -> set[Path]:
    return {p for p in path.rglob("*") if p.is_file()} if path.exists() else set()
