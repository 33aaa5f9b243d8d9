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
from typing import cast

from scanner.capabilities import CapabilityCheck
from scanner.config import Settings, packaged_rules
from scanner.findings import Category, Finding, Severity, StageResult, StageStatus
from scanner.intake import (
    ArchiveViolation,
    BundleInfo,
    UnpackedFile,
    describe_bundle,
    nested_archives,
    unpack,
    unpack_confined,
)
from scanner.policy import Decision, Policy, decide
from scanner.private_dirs import private_dir
from scanner.repack import Repack, RepackError, tree_digest, verify_repack, write_repack
from scanner.rulebook import load_rulebook
from scanner.ruleset import ruleset_hash
from scanner.stagepool import ProcessStage, runs_in_process, shared_pool
from scanner.stages.base import Stage
from scanner.suppressions import Suppression, apply_suppressions
from scanner.workspace import Workspace

log = logging.getLogger(__name__)

ARCHIVE_STAGE = "archive"
# 2: strict zip and tar.gz readers, a budgeted child process, the canonical repack.
ARCHIVE_STAGE_VERSION = 2
StageFactory = Callable[[Settings], Stage]
# How long past the deadline to wait for a process stage: its pool kills the worker at
# the deadline itself and then returns the TIMEOUT result, with the stage's own name.
KILL_GRACE_S = 10.0


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
    # The admitted tree's digest and its canonical repack (scanner/repack.py); None when
    # intake refused the bundle.
    tree_sha256: str | None = None
    repack_sha256: str | None = None
    # The rules/ tree the scan ran with: reporters read rule-level text from it.
    rules_dir: Path = field(default_factory=packaged_rules)

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
    from scanner.stages.libraries import LibrariesStage
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
        LibrariesStage.from_settings,
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


def make_stage(factory: StageFactory, settings: Settings) -> Stage:
    """A CPU-bound stage is built in worker processes (see ``scanner.stagepool``); the
    caller gets a stand-in. Any other stage is built here."""
    if runs_in_process(factory):
        # Its name and version are per instance (those of the stage it stands for).
        return cast(Stage, ProcessStage(factory, settings, shared_pool(settings.stage_processes)))
    return factory(settings)


def build_stages(
    settings: Settings, factories: Sequence[StageFactory]
) -> tuple[list[Stage], list[StageResult]]:
    """Build each stage; one that cannot be built becomes an error result, not a crash.

    Nothing starts here: worker processes start when intake has admitted a bundle (a
    refused one costs no worker, and no browser), and build their stages on first use."""
    stages: list[Stage] = []
    failed: list[StageResult] = []
    for factory in factories:
        try:
            stages.append(make_stage(factory, settings))
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
        assert opened.intake is not None
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
    """A bundle unpacked into a private work dir; ``workspace`` is None when refused.

    ``intake`` is None when the tree was opened from its repack (intake ran before).
    """

    root: Path
    info: BundleInfo
    intake: StageResult | None
    files: tuple[UnpackedFile, ...]
    workspace: Workspace | None
    repack: Repack | None = None
    # Where the repack's bytes are while the bundle is open (below the work dir).
    repack_path: Path | None = None


@contextmanager
def _workdir(settings: Settings) -> Iterator[Path]:
    """A fresh 0700 dir below the work root, removed on the way out."""
    workdir = Path(tempfile.mkdtemp(prefix="scan-", dir=private_dir(settings.work_root)))
    try:
        yield workdir
    finally:
        _remove_tree(workdir)


@contextmanager
def opened_bundle(bundle: Path, settings: Settings) -> Iterator[OpenedBundle]:
    """Unpack an upload through intake, and repack what was admitted."""
    info = describe_bundle(bundle)
    with _workdir(settings) as workdir:
        root = workdir / "bundle"
        root.mkdir(mode=0o700)
        repack_path = workdir / "repack.zip"
        intake, files, repack = _intake(bundle, root, repack_path, settings)
        workspace = Workspace(root, tuple(files), info) if repack is not None else None
        yield OpenedBundle(
            root,
            info,
            intake,
            tuple(files),
            workspace,
            repack,
            repack_path if repack is not None else None,
        )


@contextmanager
def opened_repack(
    path: Path, recorded: Repack, info: BundleInfo, settings: Settings
) -> Iterator[OpenedBundle]:
    """The scanned tree again, from its repack: checked against the recorded hashes and
    read by the same strict reader (in process: these are our own bytes, hash-checked)."""
    verify_repack(path, recorded.sha256)
    with _workdir(settings) as workdir:
        root = workdir / "bundle"
        root.mkdir(mode=0o700)
        files = tuple(unpack(path, root, settings.archive))
        if tree_digest(files) != recorded.tree_sha256:
            raise RepackError("the repack does not hold the tree the scan recorded")
        yield OpenedBundle(root, info, None, files, Workspace(root, files, info), recorded, path)


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
        tree_sha256=opened.repack.tree_sha256 if opened.repack else None,
        repack_sha256=opened.repack.sha256 if opened.repack else None,
        rules_dir=settings.rules_dir,
    )


def _intake(
    bundle: Path, root: Path, repack_path: Path, settings: Settings
) -> tuple[StageResult, list[UnpackedFile], Repack | None]:
    """Unpack under the intake budget and repack; the repack is None when the bundle did
    not get in (refused, or intake failed): then nothing of it is analysed."""
    result = StageResult(ARCHIVE_STAGE, ARCHIVE_STAGE_VERSION)
    start = time.perf_counter()
    files: list[UnpackedFile] = []
    repack = None
    try:
        files = unpack_confined(bundle, root, settings.archive)
        result.coverage.scanned = [f.path for f in files]
        result.findings.extend(_nested(root, files))
        repack = write_repack(root, files, repack_path)
        result.raw = {"tree_sha256": repack.tree_sha256, "repack_sha256": repack.sha256}
    except ArchiveViolation as v:
        files = []
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
    except Exception as exc:
        # Our side failing (disk full, no interpreter to start) is not the bundle's fault:
        # an error, so a person looks; it can never read as clean.
        log.warning("intake failed: %s", _describe(exc))
        files = []
        result.status = StageStatus.ERROR
        result.error = _describe(exc)
    result.duration_ms = (time.perf_counter() - start) * 1000
    return result, files, repack


def _nested(root: Path, files: list[UnpackedFile]) -> list[Finding]:
    return [
        Finding(
            ARCHIVE_STAGE,
            "archive-nested",
            Category.COVERAGE,
            Severity.LOW,
            f"{path} is itself an archive: only ClamAV looked inside it",
            path=path,
        )
        for path in nested_archives(root, files)
    ]


def run_stages(workspace: Workspace, stages: Sequence[Stage], timeout: float) -> list[StageResult]:
    """Run stages side by side, all by one deadline; a hung one is recorded as timed out.

    CPU-bound stages run in worker processes, killed at the deadline; the others (the
    browser, clamd: waiting on I/O) in daemon threads here."""
    workspace.manifest  # noqa: B018 - parse once before threads race to the cached property
    pools = {id(s.pool): s.pool for s in stages if isinstance(s, ProcessStage)}
    for pool in pools.values():
        pool.warm()  # every worker at once, not one per stage thread that finds none idle
    deadline = time.monotonic() + timeout
    slots: dict[int, StageResult] = {}
    threads = []
    for i, stage in enumerate(stages):
        t = threading.Thread(
            target=_run_one, args=(stage, workspace, slots, i, deadline), daemon=True
        )
        t.start()
        threads.append(t)
    results = []
    for i, (stage, t) in enumerate(zip(stages, threads, strict=True)):
        grace = KILL_GRACE_S if isinstance(stage, ProcessStage) else 0.0
        t.join(max(0.0, deadline + grace - time.monotonic()))
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


def _run_one(
    stage: Stage, workspace: Workspace, slots: dict[int, StageResult], i: int, deadline: float
) -> None:
    start = time.perf_counter()
    try:
        if isinstance(stage, ProcessStage):
            result = stage.run_until(workspace, deadline)
        else:
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
