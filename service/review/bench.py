"""The desk's figures (``gatehouse bench-service --only review``) on PostgreSQL: the queue
page with 10,000 waiting submissions and a submission page with 500 findings and a delta.

Rows are written with Core statements (seeding is not what is measured); the pages are
fetched from the real web server over loopback with a signed-in session, so a figure is
the server's time plus one local round trip.
"""

from __future__ import annotations

import functools
import http.client
import random
import re
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Engine, insert, select

from scanner.db import session_scope
from scanner.ruleset import ruleset_hash
from service.models import (
    Bundle,
    FindingRecord,
    Publisher,
    ReviewItem,
    Scan,
    ScanFacts,
    StageRun,
    Submission,
    new_id,
    utcnow,
)
from service.review.accounts import create_user, set_password

PASSWORD = "bench password 12345"  # noqa: S105 - a throwaway account in a throwaway database
CATEGORIES = ("obfuscation", "dynamic-code", "undeclared-capability", "dom-escape", "secrets")
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def _report(findings: list[dict[str, Any]], verdict: str, ruleset: str) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "verdict": verdict,
        "reasons": [
            {
                "action": verdict,
                "text": "medium obfuscation: packed code",
                "rule_id": "x",
                "stage": "js-static",
            }
        ],
        "risk_score": 10,
        "findings": findings,
        "stages": [
            {"name": "js-static", "version": 1, "status": "ok", "duration_ms": 1.0, "error": None}
        ],
        "coverage": {"js-static": {"scanned": ["dist/bundle.js"], "not_scanned": []}},
        "capabilities": [
            {
                "capability": "network",
                "declared": True,
                "static": True,
                "observed": True,
                "verdict": "ok",
            }
        ],
        "csp": "default-src 'none'",
        "sri": {},
        "ruleset": ruleset,
        "tool_versions": {},
    }


def _finding(i: int, path: str) -> dict[str, Any]:
    return {
        "rule_id": f"js-rule-{i % 40}",
        "stage": "js-static",
        "category": CATEGORIES[i % len(CATEGORIES)],
        "severity": "medium" if i % 3 else "low",
        "message": f"finding {i}",
        "path": path,
        "line": i + 1,
        "evidence": f"call{i % 40}(x)",
        "state": "enabled",
    }


def seed_queue(engine: Engine, n: int, ruleset: str) -> None:
    """``n`` submissions waiting for review, spread over 100 publishers and two weeks."""
    now = utcnow()
    rng = random.Random(7)  # noqa: S311 - a repeatable spread of test data, not a secret
    report = _report([_finding(i, "dist/bundle.js") for i in range(5)], "review", ruleset)
    with session_scope(engine) as s:
        s.execute(
            insert(Bundle), [{"sha256": "b" * 64, "size": 1, "blob_key": "none", "created_at": now}]
        )
        s.execute(
            insert(Publisher),
            [
                {"external_id": f"bench-pub-{p}", "created_at": now, "trust": "new"}
                for p in range(100)
            ],
        )
        pubs = {
            external: pid
            for external, pid in s.execute(select(Publisher.external_id, Publisher.id))
        }
        subs, scans, items = [], [], []
        for i in range(n):
            sid, scan_id = new_id(), new_id()
            created = now - timedelta(hours=rng.uniform(0, 24 * 7))
            pub = pubs[f"bench-pub-{i % 100}"]
            subs.append(
                {
                    "id": sid,
                    "publisher_id": pub,
                    "plugin_name": f"plugin-{i % 700}",
                    "plugin_version": f"1.{i}.0",
                    "bundle_sha256": "b" * 64,
                    "webhook_id": f"bench-{sid}",
                    "status": "awaiting_review",
                    "verdict": "review",
                    "created_at": created,
                    "updated_at": created,
                }
            )
            scans.append(
                {
                    "id": scan_id,
                    "kind": "submission",
                    "submission_id": sid,
                    "bundle_sha256": "b" * 64,
                    "bundle_name": "b.zip",
                    "status": "completed",
                    "verdict": "review",
                    "risk_score": rng.randint(0, 100),
                    "ruleset": ruleset,
                    "report": report,
                    "created_at": created,
                    "updated_at": created,
                    "finished_at": created,
                }
            )
            items.append(
                {
                    "submission_id": sid,
                    "scan_id": scan_id,
                    "status": "awaiting_review",
                    "publisher_id": pub,
                    "plugin_name": f"plugin-{i % 700}",
                    "plugin_version": f"1.{i}.0",
                    "verdict": "review",
                    "risk_score": scans[-1]["risk_score"],
                    "categories": " ".join(rng.sample(CATEGORIES, 2)),
                    "reasons": report["reasons"],
                    "submitted_at": created,
                    "due_at": created + timedelta(hours=rng.uniform(8, 72)),
                    "due_overridden": False,
                    "first_version": i % 3 == 0,
                    "updated_at": created,
                }
            )
        for table, rows in ((Submission, subs), (Scan, scans), (ReviewItem, items)):
            for k in range(0, len(rows), 2000):
                s.execute(insert(table), rows[k : k + 2000])


def seed_big_submission(engine: Engine, findings: int, files: int, ruleset: str) -> str:
    """An update with ``findings`` findings whose previous version was approved; its id."""
    now = utcnow()
    paths = [f"dist/chunk-{i}.js" for i in range(files)]
    ids = {}
    with session_scope(engine) as s:
        pub = s.execute(
            insert(Publisher).returning(Publisher.id),
            [{"external_id": "bench-big", "created_at": now, "trust": "trusted"}],
        ).scalar_one()
        for version, status in (("1.0.0", "approved"), ("1.1.0", "awaiting_review")):
            sid, scan_id = new_id(), new_id()
            ids[version] = sid
            listed = [
                _finding(i, paths[i % files])
                for i in range(findings - (50 if version == "1.0.0" else 0))
            ]
            s.execute(
                insert(Submission),
                [
                    {
                        "id": sid,
                        "publisher_id": pub,
                        "plugin_name": "big",
                        "plugin_version": version,
                        "bundle_sha256": "b" * 64,
                        "webhook_id": f"bench-big-{sid}",
                        "status": status,
                        "verdict": "review",
                        "created_at": now - timedelta(days=2 if version == "1.0.0" else 0),
                        "updated_at": now,
                    }
                ],
            )
            s.execute(
                insert(Scan),
                [
                    {
                        "id": scan_id,
                        "kind": "submission",
                        "submission_id": sid,
                        "bundle_sha256": "b" * 64,
                        "bundle_name": "b.zip",
                        "status": "completed",
                        "verdict": "review",
                        "risk_score": 100,
                        "ruleset": ruleset,
                        "report": _report(listed, "review", ruleset),
                        "created_at": now,
                        "updated_at": now,
                        "finished_at": now,
                    }
                ],
            )
            run_id = s.execute(
                insert(StageRun).returning(StageRun.id),
                [
                    {
                        "scan_id": scan_id,
                        "stage": "js-static",
                        "version": 1,
                        "status": "ok",
                        "attempts": 1,
                    }
                ],
            ).scalar_one()
            s.execute(
                insert(FindingRecord),
                [
                    {
                        "scan_id": scan_id,
                        "stage_run_id": run_id,
                        "stage": f["stage"],
                        "rule_id": f["rule_id"],
                        "category": f["category"],
                        "severity": 2 if f["severity"] == "medium" else 1,
                        "message": f["message"],
                        "path": f["path"],
                        "line": f["line"],
                        "evidence": f["evidence"],
                        "state": "enabled",
                        "details": [],
                    }
                    for f in listed
                ],
            )
            changed = 1 if version == "1.0.0" else 2
            s.execute(
                insert(ScanFacts),
                [
                    {
                        "scan_id": scan_id,
                        "created_at": now,
                        "data": {
                            "version": 1,
                            "files": [
                                [p, f"{changed if i % 10 == 0 else 0}" * 64, 1000]
                                for i, p in enumerate(paths)
                            ],
                            "manifest": None,
                            "declared_origins": ["https://api.big.example"],
                            "observed_origins": [],
                            "capabilities": ["network"],
                            "dependencies": [f"npm:dep-{i}@1.0.0" for i in range(50)],
                            "vendored": {},
                            "advisories": [],
                            "stage_gaps": [],
                        },
                    }
                ],
            )
            if status == "awaiting_review":
                s.execute(
                    insert(ReviewItem),
                    [
                        {
                            "submission_id": sid,
                            "scan_id": scan_id,
                            "status": status,
                            "publisher_id": pub,
                            "plugin_name": "big",
                            "plugin_version": version,
                            "verdict": "review",
                            "risk_score": 100,
                            "categories": "obfuscation",
                            "reasons": [],
                            "submitted_at": now,
                            "due_at": now + timedelta(hours=1),
                            "due_overridden": False,
                            "first_version": False,
                            "updated_at": now,
                        }
                    ],
                )
    return ids["1.1.0"]


class Browser:
    """A signed-in desk session over one keep-alive connection."""

    def __init__(self, addr: str) -> None:
        self.conn = http.client.HTTPConnection(addr, timeout=60)
        self.cookie = ""

    def get(self, path: str) -> tuple[int, str]:
        self.conn.request("GET", path, headers={"Cookie": self.cookie})
        resp = self.conn.getresponse()
        body = resp.read().decode()
        self._keep(resp)
        return resp.status, body

    def _keep(self, resp: http.client.HTTPResponse) -> None:
        for header in resp.headers.get_all("Set-Cookie") or []:
            self.cookie = header.split(";", 1)[0]

    def sign_in(self, name: str, password: str) -> None:
        _, page = self.get("/login")
        token = CSRF_RE.search(page)
        assert token is not None
        body = urlencode(
            {"name": name, "password": password, "csrf_token": token.group(1), "next": ""}
        )
        self.conn.request(
            "POST",
            "/login",
            body=body,
            headers={"Cookie": self.cookie, "Content-Type": "application/x-www-form-urlencoded"},
        )
        resp = self.conn.getresponse()
        resp.read()
        self._keep(resp)
        if resp.status != 302:
            raise RuntimeError(f"bench sign-in failed: {resp.status}")


def _timed(fetch: Callable[[], tuple[int, str]], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        status, _body = fetch()
        out.append((time.perf_counter() - t0) * 1000)
        if status != 200:
            raise RuntimeError(f"bench page answered {status}")
    return out


def prepare(engine: Engine, rules_dir: Any, pending: int) -> tuple[str, float]:
    """Seed the database; the big submission's id and the seconds seeding took."""
    start = time.perf_counter()
    ruleset = ruleset_hash(rules_dir)
    seed_queue(engine, pending, ruleset)
    big = seed_big_submission(engine, 500, 200, ruleset)
    with session_scope(engine) as s:
        user, otp = create_user(s, "bench-reviewer", "reviewer", "bench")
        set_password(s, user, otp, PASSWORD)
    return big, time.perf_counter() - start


def measure(
    addr: str, big: str, pending: int, runs: int, pct: Callable[[list[float], float], float]
) -> list[str]:
    browser = Browser(addr)
    browser.sign_in("bench-reviewer", PASSWORD)
    pages = [
        (f"queue page (default view) with {pending:,} waiting", "/queue"),
        ("queue page, every due date, page 20", "/queue?due=all&page=20"),
        ("queue page filtered by category", "/queue?due=all&category=dom-escape"),
        ("GET /api/v1/queue", "/api/v1/queue"),
        ("submission page: 500 findings and a delta over 200 files", f"/submissions/{big}"),
        ("GET /api/v1/submissions/{id}/review (same)", f"/api/v1/submissions/{big}/review"),
    ]
    lines = []
    for label, path in pages:
        browser.get(path)  # warm the process
        times = _timed(functools.partial(browser.get, path), runs)
        p50, p95 = pct(times, 0.5), pct(times, 0.95)
        lines.append(f"{label}: p50 {p50:.1f} ms, p95 {p95:.1f} ms ({runs} requests)")
    return lines
