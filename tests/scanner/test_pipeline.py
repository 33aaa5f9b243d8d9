"""The pipeline survives crashing and hanging stages and always cleans its work dir."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

from scanner.config import Settings
from scanner.findings import Category, Finding, Severity, StageResult, StageStatus
from scanner.pipeline import build_stages, scan_bundle
from scanner.policy import Policy, Verdict
from scanner.workspace import Workspace
from tests.conftest import BundleMaker


class RecordingStage:
    name: ClassVar[str] = "recording"
    version: ClassVar[int] = 3

    def __init__(self) -> None:
        self.seen: list[str] = []

    def run(self, workspace: Workspace) -> StageResult:
        self.seen = sorted(f.path for f in workspace.files)
        result = StageResult(self.name, self.version)
        result.coverage.scanned = list(self.seen)
        return result


class CrashingStage:
    name: ClassVar[str] = "crashing"
    version: ClassVar[int] = 1

    def run(self, workspace: Workspace) -> StageResult:
        raise RuntimeError("the tool fell over")


class HangingStage:
    name: ClassVar[str] = "hanging"
    version: ClassVar[int] = 1

    def __init__(self) -> None:
        self.release = threading.Event()

    def run(self, workspace: Workspace) -> StageResult:
        self.release.wait(30)
        return StageResult(self.name, self.version)


class FindingStage:
    name: ClassVar[str] = "finding"
    version: ClassVar[int] = 1

    def run(self, workspace: Workspace) -> StageResult:
        f = Finding(
            self.name,
            "x",
            Category.DYNAMIC_CODE,
            Severity.MEDIUM,
            "looks odd",
            path="dist/bundle.js",
        )
        return StageResult(self.name, self.version, findings=[f])


def _policy(settings: Settings) -> Policy:
    return Policy.load(settings.policy_path)


def test_stages_see_the_unpacked_bundle_and_it_is_removed_after(
    settings: Settings, make_bundle: BundleMaker
) -> None:
    stage = RecordingStage()
    result = scan_bundle(
        make_bundle({"assets/a.png": b"\x89PNG"}), settings, [stage], _policy(settings)
    )
    assert stage.seen == ["assets/a.png", "dist/bundle.js", "plugin.json"]
    assert result.decision.verdict is Verdict.PASS
    assert [s.name for s in result.stages] == ["archive", "recording", "capabilities"]
    assert list(settings.work_root.iterdir()) == []


def test_a_crashing_stage_is_an_error_and_blocks_pass(
    settings: Settings, make_bundle: BundleMaker
) -> None:
    result = scan_bundle(
        make_bundle(), settings, [CrashingStage(), RecordingStage()], _policy(settings)
    )
    crashed = next(s for s in result.stages if s.name == "crashing")
    assert crashed.status is StageStatus.ERROR
    assert "the tool fell over" in (crashed.error or "")
    assert result.decision.verdict is Verdict.REVIEW
    assert next(s for s in result.stages if s.name == "recording").status is StageStatus.OK


def test_a_hanging_stage_times_out_without_stalling_the_scan(
    settings: Settings, make_bundle: BundleMaker
) -> None:
    hanging = HangingStage()
    quick = replace(settings, stage_timeout=0.5)
    try:
        result = scan_bundle(make_bundle(), quick, [hanging, FindingStage()], _policy(quick))
    finally:
        hanging.release.set()
    status = {s.name: s.status for s in result.stages}
    assert status["hanging"] is StageStatus.TIMEOUT
    assert status["finding"] is StageStatus.OK
    assert result.decision.verdict is Verdict.REVIEW


def test_archive_violation_rejects_and_skips_analysis(
    settings: Settings, make_bundle: BundleMaker
) -> None:
    stage = RecordingStage()
    result = scan_bundle(make_bundle({"../escape.js": "x"}), settings, [stage], _policy(settings))
    assert result.decision.verdict is Verdict.REJECT
    assert result.findings[0].category is Category.ARCHIVE
    assert next(s for s in result.stages if s.name == "recording").status is StageStatus.SKIPPED
    assert stage.seen == []
    assert list(settings.work_root.iterdir()) == []


def test_a_stage_that_cannot_be_built_fails_closed(
    settings: Settings, make_bundle: BundleMaker
) -> None:
    def broken(_: Settings) -> RecordingStage:
        raise OSError("rules directory unreadable")

    stages, unavailable = build_stages(settings, [broken])
    result = scan_bundle(
        make_bundle(), settings, stages, _policy(settings), unavailable=unavailable
    )
    assert [s.status for s in unavailable] == [StageStatus.ERROR]
    assert result.decision.verdict is Verdict.REVIEW


def test_keep_workdir_copies_the_tree(
    settings: Settings, make_bundle: BundleMaker, tmp_path: Path
) -> None:
    keep = tmp_path / "kept"
    scan_bundle(make_bundle(), settings, [], _policy(settings), keep_workdir=keep)
    assert (keep / "plugin.json").is_file()


def test_nested_archive_is_a_coverage_gap_not_a_refusal(
    settings: Settings, make_bundle: BundleMaker
) -> None:
    import gzip

    stage = RecordingStage()
    bundle = make_bundle({"assets/data.json.gz": gzip.compress(b"{}")})
    result = scan_bundle(bundle, settings, [stage], _policy(settings))
    assert [f.rule_id for f in result.findings] == ["archive-nested"]
    assert "assets/data.json.gz" in stage.seen  # the other stages still ran
    assert result.decision.verdict is Verdict.REVIEW
