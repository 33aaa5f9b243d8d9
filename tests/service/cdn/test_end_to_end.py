"""The whole way on real parts: a registry stub sends a signed webhook; the scan runs on a
real Celery worker (PostgreSQL, Redis, clamd, Chromium); a reviewer approves in the desk
(Playwright, Debian's Chromium); the files land on an S3 API (moto's server) with their
headers; a host page in Chromium verifies the signed manifest and loads the entry with
SRI; the registry hears submission.promoted; a rule deployment triggers a retro-scan
that flags the version; an admin yanks it: 410 from the origin, the blocklist lists it,
the purge hook and submission.yanked arrive, signed."""

from __future__ import annotations

import base64
import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Engine, select
from standardwebhooks.webhooks import Webhook

from scanner.advisories.snapshot import ensure_snapshot
from scanner.advisories.store import AdvisoryStore
from scanner.config import Settings, packaged_rules
from scanner.db import make_engine, session_scope
from service.blobs import LocalBlobStore
from service.jobs import RecordingJobQueue
from service.models import ReviewItem, Submission, User
from service.services import Services
from service.tokens import create_token
from service.webhooks import new_secret, signed_headers
from tests.conftest import CLEAN_JS
from tests.service.cdn.conftest import dsse_payload
from tests.service.conftest import multipart, submission_fields, zip_bytes
from tests.service.desk import make_user
from tests.service.httpserver import Behaviour, serving
from tests.service.live import (
    REDIS,
    Live,
    postgres_database,
    require_redis,
    service_env,
    wait_for,
)
from tests.service.review.browser import chromium, sign_in

pytestmark = pytest.mark.integration
SECRET, PURGE = new_secret(), new_secret()
PLUGIN = "@acme/widget"
BASE = f"/cdn/{PLUGIN}/1.0.0"
JS = CLEAN_JS + "// build SLEEPER-CANARY 7\n"
SLEEPER_RULE = """rule sleeper_canary
{
    meta:
        description = "a marker the rules learned about after this version shipped"
        category = "obfuscation"
        severity = "high"
        state = "enabled"
    strings:
        $a = "SLEEPER-CANARY"
    condition:
        $a
}
"""
# A host page's check, as docs/cdn.md gives it: verify the DSSE envelope with the pinned
# key (WebCrypto Ed25519), then load the entry with the manifest's SRI, cross-origin.
HOST_CHECK = """async ({manifestUrl, jwk, base}) => {
  const bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const env = await (await fetch(manifestUrl)).json();
  const enc = new TextEncoder();
  const type = enc.encode(env.payloadType), body = bytes(env.payload);
  const head = enc.encode(`DSSEv1 ${type.length} `), mid = enc.encode(` ${body.length} `);
  const pae = new Uint8Array([...head, ...type, ...mid, ...body]);
  const key = await crypto.subtle.importKey("jwk", jwk, {name: "Ed25519"}, false, ["verify"]);
  const ok = await crypto.subtle.verify({name: "Ed25519"}, key, bytes(env.signatures[0].sig), pae);
  const manifest = JSON.parse(new TextDecoder().decode(body));
  const entry = manifest.files.find((f) => f.path === manifest.entry);
  const load = (integrity) => new Promise((done) => {
    const s = document.createElement("script");
    s.src = base + manifest.entry; s.integrity = integrity; s.crossOrigin = "anonymous";
    s.onload = () => done(true); s.onerror = () => done(false);
    document.head.appendChild(s);
  });
  const forged = "sha384-" + btoa("x".repeat(48));
  return {verified: ok, loaded: await load(entry.integrity), forgedLoads: await load(forged)};
}"""


@pytest.fixture
def pg() -> Iterator[str]:
    with postgres_database() as url:
        yield url


def _events(behaviour: Behaviour) -> dict[str, dict[str, Any]]:
    return {json.loads(r.body)["type"]: json.loads(r.body)["data"] for r in behaviour.requests}


def _submit(web: str, callback: str) -> str:
    body, ctype = multipart(
        submission_fields(name=PLUGIN, callback_url=callback),
        {"bundle": ("widget.zip", zip_bytes({"dist/bundle.js": JS}))},
    )
    headers = signed_headers(SECRET, f"msg_{uuid.uuid4().hex}", body)
    r = requests.post(
        f"{web}/api/v1/submissions",
        data=body,
        headers={**headers, "Content-Type": ctype},
        timeout=30,
    )
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def _status(engine: Engine, sid: str) -> str:
    with session_scope(engine) as s:
        return s.get_one(Submission, sid).status


def _logs(live: Live) -> str:
    return "\n".join(p.read_text(errors="replace")[-4000:] for p in live.logs.iterdir())


def test_webhook_to_cdn_to_retro_flag_to_yank(
    tmp_path: Path, pg: str, clamd_settings: Settings, s3_endpoint: str
) -> None:
    require_redis(REDIS)
    rules = tmp_path / "rules"
    shutil.copytree(packaged_rules(), rules)
    bucket = f"cdn-{uuid.uuid4().hex[:10]}"
    aws = {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        **{
            "aws_access_key_id": "test",
            "aws_secret_access_key": "test",
            "region_name": "us-east-1",
        },
    )
    s3.create_bucket(Bucket=bucket)
    engine = make_engine(pg)
    ensure_snapshot(AdvisoryStore(engine), rules)  # as `gatehouse serve` does at start
    registry, cdn = Behaviour(status=204, body=b""), Behaviour(status=200)
    host = Behaviour(status=200, body=b"<!doctype html><title>a host page</title>")
    with serving(registry) as reg_url, serving(cdn) as purge_url, serving(host) as host_url:
        env = service_env(
            tmp_path / "data",
            pg,
            REDIS,
            clamd_settings.clamd_socket_path,
            GATEHOUSE_WEBHOOK_SECRETS=SECRET,
            GATEHOUSE_CALLBACK_SECRET=SECRET,
            GATEHOUSE_CALLBACK_ORIGINS=reg_url,
            GATEHOUSE_RULES_DIR=str(rules),
            GATEHOUSE_CDN_URL=f"s3://{bucket}/cdn",
            GATEHOUSE_S3_ENDPOINT_URL=s3_endpoint,
            GATEHOUSE_CDN_BASE_URL="https://cdn.example/cdn",
            GATEHOUSE_CDN_PURGE_URLS=f"{purge_url}/purge",
            GATEHOUSE_CDN_PURGE_SECRET=PURGE,
            GATEHOUSE_COOKIE_SECURE="0",
            **aws,
        )
        (tmp_path / "logs").mkdir()
        with Live(env, tmp_path / "logs") as live:
            live.start_web()
            live.start_worker()
            try:
                _run(live, engine, s3, bucket, rules, (reg_url, host_url), registry, cdn)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{_logs(live)}") from None
            finally:
                engine.dispose()


def _run(
    live: Live,
    engine: Engine,
    s3: Any,
    bucket: str,
    rules: Path,
    urls: tuple[str, str],
    registry: Behaviour,
    cdn: Behaviour,
) -> None:
    web, (reg_url, host_url) = live.web_url, urls
    sid = _submit(web, f"{reg_url}/hooks")
    wait_for(lambda: _status(engine, sid) == "awaiting_review", 180, "the scan")
    desk = Services(Settings(), engine, LocalBlobStore(live.logs / "unused"), RecordingJobQueue())
    make_user(desk, "alice")
    with chromium() as browser:
        page = browser.new_context().new_page()
        sign_in(page, web, "alice")
        page.goto(f"{web}/submissions/{sid}")
        page.click("#approve")
        page.wait_for_url(f"{web}/queue")
        wait_for(lambda: "submission.promoted" in _events(registry), 60, "submission.promoted")
        promoted = _events(registry)["submission.promoted"]
        entry = s3.get_object(Bucket=bucket, Key=f"cdn/{PLUGIN}/1.0.0/dist/bundle.js")
        assert entry["Body"].read() == JS.encode()
        assert entry["ContentType"] == "text/javascript; charset=utf-8"
        assert entry["CacheControl"] == "public, max-age=31536000, immutable"
        integrity = {f["path"]: f["integrity"] for f in promoted["files"]}["dist/bundle.js"]
        assert entry["Metadata"]["integrity"] == integrity
        assert promoted["entry_url"] == f"https://cdn.example{BASE}/dist/bundle.js"
        keys = requests.get(f"{web}/.well-known/gatehouse/cdn-keys.json", timeout=10).json()
        host = browser.new_context().new_page()
        # Another origin than the CDN's (localhost, not 127.0.0.1): CORS and SRI for real.
        host.goto(host_url.replace("127.0.0.1", "localhost") + "/host-page")
        check = host.evaluate(
            HOST_CHECK,
            {
                "manifestUrl": f"{web}{BASE}/gatehouse-manifest.json",
                "jwk": {k: v for k, v in keys["keys"][0].items() if k != "public_key"},
                "base": f"{web}{BASE}/",
            },
        )
        assert check == {"verified": True, "loaded": True, "forgedLoads": False}, check
    # A rule deployment: new rule data, the workers restarted on it.
    (rules / "yara" / "sleeper_canary.yar").write_text(SLEEPER_RULE)
    live.kill("worker")
    live.start_worker()
    wait_for(lambda: _retro_state(engine, sid) == "flagged", 240, "the retro-scan's flag")
    assert _status(engine, sid) == "promoted"  # flagged for a person, not killed
    with session_scope(engine) as s:
        delta = s.get_one(ReviewItem, sid).retro_delta or {}
        root = make_user(desk, "root", "admin")
        user = s.get_one(User, root.user_id)
        _, token = create_token(s, "root", {"review"}, user=user)
    assert [f["rule_id"] for f in delta["new_findings"]] == ["sleeper_canary"]
    yank = requests.post(
        f"{web}/api/v1/submissions/{sid}/yank",
        json={"why": delta["suggested_yank"]},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert yank.status_code == 201, yank.text
    assert requests.get(f"{web}{BASE}/dist/bundle.js", timeout=10).status_code == 410
    key = _public_key(requests.get(f"{web}/api/v1/cdn/keys", timeout=10).json())
    wait_for(lambda: _blocklisted(web, key), 60, "the blocklist")
    wait_for(lambda: cdn.requests and "submission.yanked" in _events(registry), 60, "hooks")
    purge = cdn.requests[0]
    Webhook(PURGE).verify(
        purge.body, {k: v for k, v in purge.headers.items() if k.startswith("webhook-")}
    )
    assert f"https://cdn.example{BASE}/dist/bundle.js" in json.loads(purge.body)["data"]["urls"]
    assert _events(registry)["submission.yanked"]["reason"] == delta["suggested_yank"]
    for hook in registry.requests:  # every callback verifies as the registry checks it
        Webhook(SECRET).verify(
            hook.body, {k: v for k, v in hook.headers.items() if k.startswith("webhook-")}
        )


def _retro_state(engine: Engine, sid: str) -> str | None:
    with session_scope(engine) as s:
        return s.scalar(select(ReviewItem.retro_state).where(ReviewItem.submission_id == sid))


def _public_key(doc: dict[str, Any]) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(doc["keys"][0]["public_key"]))


def _blocklisted(web: str, key: Ed25519PublicKey) -> bool:
    r = requests.get(f"{web}/cdn/blocklist.json", timeout=10)
    if r.status_code != 200:
        return False
    entries = dsse_payload(r.content, key)["entries"]
    return any(e["plugin"] == PLUGIN and e["version"] == "1.0.0" for e in entries)
