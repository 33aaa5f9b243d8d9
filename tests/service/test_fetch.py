"""bundle_url fetching: allowlisted origins only, no redirects, capped, hash-checked."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from service.fetch import FetchError, allowed, fetch_bundle
from service.models import Scan
from service.services import Services
from service.webhooks import signed_headers
from tests.service.conftest import SECRET, InlineJobQueue, submission_fields, zip_bytes
from tests.service.httpserver import Behaviour, serving


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://registry.example/b.zip", True),
        ("https://registry.example:443/b.zip", True),
        ("https://REGISTRY.example/b.zip", True),
        ("http://registry.example/b.zip", False),
        ("https://registry.example:8443/b.zip", False),
        ("https://registry.example@evil.example/b.zip", False),
        ("https://registry.example.evil.example/b.zip", False),
        ("file:///etc/passwd", False),
        ("http://169.254.169.254/latest/meta-data", False),
    ],
)
def test_only_configured_origins_are_allowed(url: str, ok: bool) -> None:
    assert allowed(url, ("https://registry.example",)) is ok


def _fetch(url: str, dest: Path, sha: str, max_bytes: int = 1_000_000) -> int:
    origin = url.split("/b", 1)[0]
    return fetch_bundle(
        url, dest, origins=(origin,), max_bytes=max_bytes, expected_sha256=sha, timeout=5
    )


def test_fetch_checks_hash_size_and_redirects(tmp_path: Path) -> None:
    data = zip_bytes()
    sha = hashlib.sha256(data).hexdigest()
    with serving(Behaviour(body=data)) as url:
        assert _fetch(f"{url}/b.zip", tmp_path / "ok", sha) == len(data)
        with pytest.raises(FetchError, match="sha256") as bad_hash:
            _fetch(f"{url}/b.zip", tmp_path / "h", "0" * 64)
        with pytest.raises(FetchError, match="larger") as too_big:
            _fetch(f"{url}/b.zip", tmp_path / "s", sha, max_bytes=100)
    assert bad_hash.value.permanent and too_big.value.permanent
    with (
        serving(Behaviour(status=302, location="http://10.0.0.1/")) as url,
        pytest.raises(FetchError, match="302") as redirect,
    ):
        _fetch(f"{url}/b.zip", tmp_path / "r", sha)
    assert redirect.value.permanent
    with serving(Behaviour(status=503)) as url, pytest.raises(FetchError) as flaky:
        _fetch(f"{url}/b.zip", tmp_path / "t", sha)
    assert not flaky.value.permanent
    with pytest.raises(FetchError) as elsewhere:
        fetch_bundle(
            "http://127.0.0.1:9/b.zip",
            tmp_path / "x",
            origins=("https://registry.example",),
            max_bytes=10,
            expected_sha256=sha,
            timeout=1,
        )
    assert elsewhere.value.permanent


def _submit_url(client: FlaskClient, url: str, sha: str) -> str:
    body = json.dumps({**submission_fields(), "bundle_url": url, "sha256": sha}).encode()
    headers = signed_headers(SECRET, f"msg_{sha[:8]}", body)
    r = client.post(
        "/api/v1/submissions", data=body, headers={**headers, "Content-Type": "application/json"}
    )
    assert r.status_code == 202, r.get_json()
    return str(r.get_json()["scan_id"])


def test_a_worker_fetches_the_bundle_url_and_scans_it(client: FlaskClient, svc: Services) -> None:
    data = zip_bytes({"a.js": "EVIL"})
    sha = hashlib.sha256(data).hexdigest()
    with serving(Behaviour(body=data)) as url:
        svc.settings = replace(svc.settings, registry_origins=url)
        scan_id = _submit_url(client, f"{url}/b.zip", sha)
    with svc.session() as s:
        scan = s.get_one(Scan, scan_id)
        assert (scan.status, scan.verdict, scan.bundle_sha256) == ("completed", "reject", sha)


def test_an_unfetchable_bundle_fails_closed(client: FlaskClient, svc: Services) -> None:
    with serving(Behaviour(body=b"other bytes")) as url:
        svc.settings = replace(svc.settings, registry_origins=url)
        scan_id = _submit_url(client, f"{url}/b.zip", "c" * 64)
    with svc.session() as s:
        scan = s.get_one(Scan, scan_id)
        assert scan.status == "completed" and scan.verdict != "pass"
        assert scan.report is not None
        stages = {st["name"]: st["status"] for st in scan.report["stages"]}
        assert stages["fetch"] == "error"


def test_a_fetch_that_keeps_failing_is_retried_with_jittered_backoff_then_fails_closed(
    client: FlaskClient, svc: Services, jobs: InlineJobQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers import tasks

    jobs.hold = True
    monkeypatch.setattr(tasks, "services", lambda: svc)
    monkeypatch.setattr(tasks, "registry", lambda: jobs.registry)
    countdowns: list[int] = []
    retry = tasks.start_scan.retry

    def recording_retry(*args: Any, **kwargs: Any) -> Any:
        countdowns.append(kwargs["countdown"])
        return retry(*args, **kwargs)

    monkeypatch.setattr(tasks.start_scan, "retry", recording_retry)
    flaky = Behaviour(status=503)
    with serving(flaky) as url:
        svc.settings = replace(svc.settings, registry_origins=url)
        scan_id = _submit_url(client, f"{url}/b.zip", "d" * 64)
        # Eager apply runs each retry at once, in this process, ignoring the countdown.
        tasks.start_scan.apply(args=[scan_id])
    assert len(flaky.requests) == tasks.FETCH_RETRIES + 1
    # Celery's retry_backoff with full jitter: each wait is drawn below 5 s doubling.
    assert len(countdowns) == tasks.FETCH_RETRIES
    assert all(0 <= c <= 5 * 2**n for n, c in enumerate(countdowns)), countdowns
    assert tasks.start_scan.retry_jitter and tasks.start_scan.retry_backoff == 5
    with svc.session() as s:
        scan = s.get_one(Scan, scan_id)
        assert scan.status == "completed" and scan.verdict != "pass"
        assert scan.report is not None
        assert {st["name"]: st["status"] for st in scan.report["stages"]}["fetch"] == "error"


@pytest.mark.parametrize(
    "behaviour",
    [
        Behaviour(body=b"x" * 200, trickle=0.1),  # every read succeeds, the body never ends
        Behaviour(stall_in_headers=10),  # silent half-way through the headers
    ],
    ids=["trickle", "stall"],
)
def test_the_fetch_deadline_is_wall_clock_whatever_the_peer_does(
    tmp_path: Path, behaviour: Behaviour
) -> None:
    with serving(behaviour) as url:
        start = time.monotonic()
        with pytest.raises(FetchError, match="longer than 1 s") as slow:
            fetch_bundle(
                f"{url}/b.zip",
                tmp_path / "b",
                origins=(url,),
                max_bytes=1_000_000,
                expected_sha256="0" * 64,
                timeout=1,
            )
        elapsed = time.monotonic() - start
    assert elapsed < 1.5, elapsed
    assert not slow.value.permanent


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:99999/b.zip", "http://127.0.0.1:x/b.zip", "http://[::1/b.zip"]
)
def test_a_url_with_a_bad_port_is_not_allowed(url: str) -> None:
    assert allowed(url, ("http://127.0.0.1",)) is False
