"""The CDN's tests: the service with promotions run inline, a rules-driven fake stage (so a
rule change can find something new), and a real S3 API on loopback (moto's server)."""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from flask.testing import FlaskClient

from scanner.config import Settings, packaged_rules
from scanner.findings import Category, Finding, Severity, StageResult
from scanner.ruleset import ruleset_hash
from scanner.workspace import Workspace
from service.cdn.storage import S3CdnStore
from service.orchestration import StageRegistry
from service.review import decisions
from service.review.accounts import Actor
from service.services import Services
from tests.service.conftest import FAKE_FACTORIES, InlineJobQueue
from tests.service.desk import latest_scan_id, make_user, submit

WORDS = "retro-words.txt"


class RulesMarkerStage:
    """Flags files holding a word listed in <rules_dir>/retro-words.txt as critical
    malware: a rule deployment is a new word in that file."""

    name: ClassVar[str] = "rules-marker"
    version: ClassVar[int] = 1

    def __init__(self, rules_dir: Path) -> None:
        self.rules_dir = rules_dir

    @classmethod
    def from_settings(cls, settings: Settings) -> RulesMarkerStage:
        return cls(settings.rules_dir)

    def run(self, workspace: Workspace) -> StageResult:
        """Each word is ``WORD[:category[:severity]]`` (critical malware by default)."""
        result = StageResult(self.name, self.version)
        path = self.rules_dir / WORDS
        words = path.read_text().split() if path.exists() else []
        for f in workspace.files:
            data = workspace.read_bytes(f.path)
            for spec in words:
                word, category, severity = [*spec.split(":"), "malware", "critical"][:3]
                if word.encode() in data:
                    result.findings.append(
                        Finding(
                            self.name,
                            f"sleeper-{word.lower()}",
                            Category(category),
                            Severity.parse(severity),
                            f"{word} wakes up",
                            f.path,
                        )
                    )
        return result


@pytest.fixture
def rules_copy(tmp_path: Path) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(packaged_rules(), target)
    return target


@pytest.fixture
def service_settings(service_settings: Settings, rules_copy: Path) -> Settings:
    from dataclasses import replace

    return replace(service_settings, rules_dir=rules_copy, listen="cdn.test:80")


@pytest.fixture
def jobs() -> InlineJobQueue:
    return InlineJobQueue(
        registry=StageRegistry((*FAKE_FACTORIES, RulesMarkerStage.from_settings)), cdn=True
    )


def deploy_words(svc: Services, *words: str) -> None:
    """A rule deployment: new rule data, and processes that read the rules again."""
    (svc.settings.rules_dir / WORDS).write_text(" ".join(words) + "\n")
    ruleset_hash.cache_clear()


@pytest.fixture
def admin(svc: Services) -> Actor:
    return make_user(svc, "root", "admin")


def approve(
    client: FlaskClient,
    svc: Services,
    admin: Actor,
    files: dict[str, Any] | None = None,
    **fields: str,
) -> str:
    """A submission through the webhook, scanned and approved; its id."""
    sid = submit(client, files, **fields)
    decisions.decide(svc, sid, admin, "approve", scan_id=latest_scan_id(svc, sid))
    return sid


@dataclass
class Fetched:
    status: int
    headers: dict[str, str]
    body: bytes


def fetch(client: FlaskClient, url: str, **kwargs: Any) -> Fetched:
    """GET from the origin, the body read and the response closed (it streams a file)."""
    response = client.get(url, **kwargs)
    try:
        return Fetched(response.status_code, dict(response.headers), response.get_data())
    finally:
        response.close()


def dsse_payload(envelope: bytes, public: Ed25519PublicKey) -> dict[str, Any]:
    """Verify a DSSE envelope as a host would, from the spec (not through our code)."""
    doc = json.loads(envelope)
    body = base64.b64decode(doc["payload"])
    kind = doc["payloadType"].encode()
    pae = b"DSSEv1 " + str(len(kind)).encode() + b" " + kind + b" "
    pae += str(len(body)).encode() + b" " + body
    public.verify(base64.b64decode(doc["signatures"][0]["sig"]), pae)  # raises if forged
    return dict(json.loads(body))


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 API on loopback (moto's server), reached the way MinIO or AWS would be."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_cdn(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, svc: Services) -> S3CdnStore:
    import uuid

    for key, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    bucket = f"cdn-{uuid.uuid4().hex[:12]}"
    store = S3CdnStore(bucket, "cdn/", endpoint_url=s3_endpoint)
    store.client.create_bucket(Bucket=bucket)
    svc.cdn = store  # type: ignore[misc]
    return store
