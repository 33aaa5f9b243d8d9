"""Run intake and every stage over one bundle; no stage's crash or hang can crash the scan."""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from scanner.capabilities import CapabilityCheck
from scanner.config import Settings
from scanner.findings import Category, Finding, Severity, StageResult, StageStatus
from scanner.intake import (
    ArchiveViolation,
    BundleInfo,
    UnpackedFile,
    describe_bundle,
    nested_archives,
    unpack,
)
from scanner.policy import Decision, Policy, decide
from scanner.rulebook import load_rulebook
from scanner.ruleset import ruleset_hash
from scanner.stages.base import Stage
from scanner.suppressions import Suppression, apply_suppressions
from scanner.workspace import Workspace

log = logging.getLogger(__name__)

ARCHIVE_STAGE = "archive"
ARCHIVE_STAGE_VERSION = 1
StageFactory = Callable[[Settings], Stage]


@dataclass
class ScanResult:
    bundle_name: str
    bundle: BundleInfo
    files: tuple[UnpackedFile, ...]
    stages: list[StageResult]
    decision: Decision
    ruleset: str
    manifest_name: str | None = None
    manifest_version: str | None = None
    tool_versions: dict[str, str] = field(default_factory=dict)

    @property
    def findings(self) -> list[Finding]:
        out = [f for st in self.stages for f in st.findings]
        out.sort(
            key=lambda f: (-f.severity, f.category.value, f.path or "", f.line or 0, f.rule_id)
        )
        return out


def default_stage_factories() -> tuple[StageFactory, ...]:
    """The stages in report order; imported here because they pull in heavy libraries
    (Playwright, SQLAlchemy, bandit) that importing the pipeline should not pay for."""
    from scanner.stages.antivirus import AntivirusStage
    from scanner.stages.dependencies import DependencyStage
    from scanner.stages.directives import DirectivesStage
    from scanner.stages.js_static import JsStaticStage
    from scanner.stages.manifest import ManifestStage
    from scanner.stages.python_static import PythonStaticStage
    from scanner.stages.runtime import RuntimeStage
    from scanner.stages.secrets import SecretsStage
    from scanner.stages.yara import YaraStage

    return (
        ManifestStage.from_settings,
        JsStaticStage.from_settings,
        PythonStaticStage.from_settings,
        DependencyStage.from_settings,
        SecretsStage.from_settings,
        DirectivesStage.from_settings,
        YaraStage.from_settings,
        AntivirusStage.from_settings,
        RuntimeStage.from_settings,
    )


def stage_name(factory: StageFactory) -> str:
    """A stage's name without building it: factories are ``StageClass.from_settings``."""
    owner = getattr(factory, "__self__", None)
    return str(getattr(owner, "name", getattr(factory, "__qualname__", "stage")))


def build_stages(
    settings: Settings, factories: Sequence[StageFactory]
) -> tuple[list[Stage], list[StageResult]]:
    """Build each stage; one that cannot be built becomes an error result, not a crash."""
    stages: list[Stage] = []
    failed: list[StageResult] = []
    for factory in factories:
        try:
            stages.append(factory(settings))
        except Exception as exc:
            name = stage_name(factory)
            version = getattr(getattr(factory, "__self__", None), "version", 0)
            log.warning("stage %s unavailable: %s", name, exc)
            failed.append(StageResult(name, version, StageStatus.ERROR, error=_describe(exc)))
    return stages, failed


def scan_bundle(
    bundle: Path,
    settings: Settings,
    stages: Sequence[Stage],
    policy: Policy,
    *,
    unavailable: Sequence[StageResult] = (),
    keep_workdir: Path | None = None,
) -> ScanResult:
    """Unpack ``bundle`` into a private work dir, run the stages, decide, clean up."""
    with opened_bundle(bundle, settings) as opened:
        results = [opened.intake]
        if opened.workspace is not None:
            results += run_stages(opened.workspace, stages, settings.stage_timeout)
        else:
            results += [_skipped(s, "the archive was not admitted at intake") for s in stages]
        results += list(unavailable)
        if keep_workdir is not None:
            shutil.copytree(opened.root, keep_workdir, dirs_exist_ok=True)
        return conclude(opened, results, settings, policy, bundle.name)


@dataclass
class OpenedBundle:
    """A bundle unpacked into a private work dir; ``workspace`` is None when refused."""

    root: Path
    info: BundleInfo
    intake: StageResult
    files: tuple[UnpackedFile, ...]
    workspace: Workspace | None


@contextmanager
def opened_bundle(bundle: Path, settings: Settings) -> Iterator[OpenedBundle]:
    """Unpack under a fresh 0700 dir below the work root; removed on the way out."""
    info = describe_bundle(bundle)
    settings.work_root.mkdir(parents=True, exist_ok=True, mode=0o700)
    workdir = Path(tempfile.mkdtemp(prefix="scan-", dir=settings.work_root))
    try:
        root = workdir / "bundle"
        root.mkdir(mode=0o700)
        intake, files, admitted = _intake(bundle, root, settings)
        workspace = Workspace(root, tuple(files), info) if admitted else None
        yield OpenedBundle(root, info, intake, tuple(files), workspace)
    finally:
        _remove_tree(workdir)


def conclude(
    opened: OpenedBundle,
    results: Sequence[StageResult],
    settings: Settings,
    policy: Policy,
    bundle_name: str,
    suppressions: Sequence[Suppression] = (),
) -> ScanResult:
    """Add the capability check to the stages' results, apply the allowlist, and decide."""
    results = list(results)
    manifest = None
    if opened.workspace is not None:
        results.append(CapabilityCheck().run(opened.workspace, results))
        manifest = opened.workspace.manifest.manifest
    if suppressions:
        hashes = {f.path: f.sha256 for f in opened.files}
        book = load_rulebook(settings.rules_dir)
        results = apply_suppressions(results, suppressions, hashes, book)
    decision = decide([f for r in results for f in r.findings], results, policy)
    tools = {k: v for r in results for k, v in r.tool_versions.items()}
    return ScanResult(
        bundle_name=bundle_name,
        bundle=opened.info,
        files=opened.files,
        stages=results,
        decision=decision,
        ruleset=ruleset_hash(settings.rules_dir),
        manifest_name=manifest.name if manifest else None,
        manifest_version=manifest.version if manifest else None,
        tool_versions=tools,
    )


def _intake(
    bundle: Path, root: Path, settings: Settings
) -> tuple[StageResult, list[UnpackedFile], bool]:
    """Unpack; the flag says whether the bundle got in (refused or failed: analyse nothing)."""
    result = StageResult(ARCHIVE_STAGE, ARCHIVE_STAGE_VERSION)
    start = time.perf_counter()
    files: list[UnpackedFile] = []
    admitted = False
    try:
        files = unpack(bundle, root, settings.archive)
        result.coverage.scanned = [f.path for f in files]
        result.findings.extend(
            Finding(
                ARCHIVE_STAGE,
                "archive-nested",
                Category.COVERAGE,
                Severity.LOW,
                f"{path} is itself an archive: only ClamAV looked inside it",
                path=path,
            )
            for path in nested_archives(root, files)
        )
        admitted = True
    except ArchiveViolation as v:
        result.findings.append(
            Finding(
                ARCHIVE_STAGE,
                v.rule_id,
                Category.ARCHIVE,
                Severity.CRITICAL,
                v.message,
                path=v.path,
            )
        )
    except OSError as exc:
        # Our own disk failing is not the bundle's fault: an error, so a person looks.
        result.status = StageStatus.ERROR
        result.error = _describe(exc)
    result.duration_ms = (time.perf_counter() - start) * 1000
    return result, files, admitted


def run_stages(workspace: Workspace, stages: Sequence[Stage], timeout: float) -> list[StageResult]:
    """Run stages side by side in daemon threads; a hung one is recorded as timed out."""
    workspace.manifest  # noqa: B018 - parse once before threads race to the cached property
    slots: dict[int, StageResult] = {}
    threads = []
    for i, stage in enumerate(stages):
        t = threading.Thread(target=_run_one, args=(stage, workspace, slots, i), daemon=True)
        t.start()
        threads.append(t)
    deadline = time.monotonic() + timeout
    results = []
    for i, (stage, t) in enumerate(zip(stages, threads, strict=True)):
        t.join(max(0.0, deadline - time.monotonic()))
        if i in slots:
            results.append(slots[i])
        else:
            results.append(
                StageResult(
                    stage.name,
                    stage.version,
                    StageStatus.TIMEOUT,
                    duration_ms=timeout * 1000,
                    error=f"did not finish within {timeout:g} s",
                )
            )
    return results


def _run_one(stage: Stage, workspace: Workspace, slots: dict[int, StageResult], i: int) -> None:
    start = time.perf_counter()
    try:
        result = stage.run(workspace)
    except Exception as exc:
        log.warning("stage %s crashed: %s", stage.name, _describe(exc))
        log.debug("stage %s traceback", stage.name, exc_info=True)
        result = StageResult(stage.name, stage.version, StageStatus.ERROR, error=_describe(exc))
    result.duration_ms = (time.perf_counter() - start) * 1000
    slots[i] = result


def _skipped(stage: Stage, why: str) -> StageResult:
    return StageResult(stage.name, stage.version, StageStatus.SKIPPED, error=why)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or "no message"
    return f"{type(exc).__name__}: {text}"[:500]


def _remove_tree(path: Path) -> None:
    # Unlinking a read-only file needs only a writable directory, which ours all are.
    shutil.rmtree(path, ignore_errors=True)
