"""The runtime stage fails closed: a timeout, a dead browser or no manifest is never clean."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from sandbox.browser import SandboxUnavailableError
from sandbox.detonation import DetonationRequest, Trace
from scanner.findings import Category, StageStatus
from scanner.stages.runtime import RuntimeStage
from scanner.workspace import Workspace
from tests.conftest import CLEAN_JS, manifest


class FakePool:
    """Answers every detonation the same way; records requests and aborts."""

    def __init__(self, answer: Trace | BaseException) -> None:
        self.answer = answer
        self.requests: list[DetonationRequest] = []
        self.aborted = 0

    def detonate_all(self, requests: Sequence[DetonationRequest], timeout: float) -> list[Trace]:
        self.requests.extend(requests)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return [self.answer for _ in requests]

    def abort(self) -> None:
        self.aborted += 1


def _ws(tmp_path: Path, plugin: object) -> Workspace:
    root = tmp_path / "b"
    (root / "dist").mkdir(parents=True)
    (root / "plugin.json").write_text(json.dumps(plugin))
    (root / "dist" / "bundle.js").write_text(CLEAN_JS)
    return Workspace.from_directory(root)


def test_runs_as_user_and_admin_under_the_derived_csp(tmp_path: Path) -> None:
    pool = FakePool(Trace("user", {"cookie": "c"}, screenshot=b"\x89PNG"))
    result = RuntimeStage(pool, 5).run(_ws(tmp_path, manifest()))
    assert result.status is StageStatus.OK
    assert [r.role for r in pool.requests] == ["user", "admin"]
    assert pool.requests[0].csp.startswith("default-src 'none'")
    assert {"trace-user.json", "trace-admin.json", "screenshot-user.png"} <= set(result.artifacts)


def test_timeout_kills_the_browser_and_is_recorded(tmp_path: Path) -> None:
    pool = FakePool(TimeoutError())
    result = RuntimeStage(pool, 5).run(_ws(tmp_path, manifest()))
    assert result.status is StageStatus.TIMEOUT and pool.aborted == 1


def test_unavailable_browser_is_a_stage_error(tmp_path: Path) -> None:
    pool = FakePool(SandboxUnavailableError("no browser at /usr/bin/chromium"))
    result = RuntimeStage(pool, 5).run(_ws(tmp_path, manifest()))
    assert result.status is StageStatus.ERROR and "no browser" in (result.error or "")


def test_a_broken_off_detonation_is_an_error_not_clean(tmp_path: Path) -> None:
    pool = FakePool(Trace("user", {}, error="TargetClosedError: page crashed"))
    result = RuntimeStage(pool, 5).run(_ws(tmp_path, manifest()))
    assert result.status is StageStatus.ERROR


def test_mount_failure_is_a_coverage_finding(tmp_path: Path) -> None:
    pool = FakePool(Trace("user", {}, mount_error="window.TestPlugin.mount is not a function"))
    result = RuntimeStage(pool, 5).run(_ws(tmp_path, manifest()))
    assert {f.category for f in result.findings} == {Category.COVERAGE}


def test_no_valid_manifest_is_skipped(tmp_path: Path) -> None:
    pool = FakePool(Trace("user", {}))
    result = RuntimeStage(pool, 5).run(_ws(tmp_path, {"name": "Bad Name"}))
    assert result.status is StageStatus.SKIPPED and pool.requests == []
