"""Runtime analysis: detonate the bundle in headless Chromium as a user and as an admin."""

from __future__ import annotations

import atexit
import json
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

from scanner.config import Settings
from scanner.csp import asset_integrity, build_csp
from scanner.findings import StageResult, StageStatus
from scanner.runtime import STAGE, observed_capabilities, trace_findings
from scanner.workspace import Workspace

if TYPE_CHECKING:
    # The sandbox (Playwright, cryptography: about 0.8 s to import) is imported where a
    # detonation happens, so a scan that never mounts a bundle never pays for it.
    from sandbox.browser import BrowserPool
    from sandbox.detonation import DetonationRequest, Trace
    from scanner.js.rules import CompiledRules

ROLES = ("user", "admin")
SCRIPT_SUFFIXES = [".js", ".mjs", ".cjs"]


def _sources(workspace: Workspace) -> list[bytes]:
    return [workspace.path_of(f.path).read_bytes() for f in workspace.with_suffix(SCRIPT_SUFFIXES)]


class DetonationPool(Protocol):
    """What the stage needs of sandbox.browser.BrowserPool (a fake in unit tests)."""

    def detonate_all(
        self, requests: Sequence[DetonationRequest], timeout: float
    ) -> list[Trace]: ...

    def abort(self) -> None: ...


# What a detonation may take on top of its own time limit: starting a jail, driver and
# browser when none is warm. Past it the detonation is cut and its browser killed.
START_GRACE = 15.0


@lru_cache(maxsize=2)
def shared_pool(
    executable: str, max_scans: int, user: str, status_dir: Path | None = None
) -> BrowserPool:
    """One warm browser per process, whatever the number of scans."""
    from sandbox.browser import BrowserPool, BrowserSettings

    pool = BrowserPool(
        BrowserSettings(
            executable=executable, max_scans=max_scans, user=user, status_dir=status_dir
        )
    )
    atexit.register(pool.close)  # no Chromium outlives the process
    return pool


class RuntimeStage:
    name: ClassVar[str] = STAGE
    # 2: code built at run time analysed with the JS rules; 3: CPU burn on the page's thread
    version: ClassVar[int] = 4

    def __init__(
        self,
        detonator: DetonationPool,
        time_limit: float,
        origin: str | None = None,
        rules: CompiledRules | None = None,
        rules_dir: Path | None = None,
    ) -> None:
        if origin is None:
            from sandbox.detonation import DEFAULT_ORIGIN

            origin = DEFAULT_ORIGIN
        self.detonator = detonator
        self.time_limit = time_limit
        self.origin = origin.rstrip("/")
        # The JS rules, for the code the plugin builds at run time (None: not analysed).
        self.rules = rules
        # The JS rules judge code built at run time; compiled on the first detonation.
        self.rules_dir = rules_dir

    @classmethod
    def from_settings(cls, settings: Settings) -> RuntimeStage:
        return cls(
            _SharedBrowser(settings),
            settings.detonation_timeout,
            settings.detonation_origin,
            rules_dir=settings.rules_dir / "js",
        )

    def _rules(self) -> CompiledRules | None:
        if self.rules is None and self.rules_dir is not None:
            from scanner.stages.js_static import compiled_rules

            self.rules = compiled_rules(self.rules_dir)
        return self.rules

    def run(self, workspace: Workspace) -> StageResult:
        result = StageResult(self.name, self.version)
        manifest = workspace.manifest.manifest
        if manifest is None:
            result.status = StageStatus.SKIPPED
            result.error = "no valid manifest: nothing to mount"
            return result
        integrity = asset_integrity(workspace)
        csp = build_csp(manifest, integrity)
        result.raw.update({"csp": csp, "sri": integrity})
        caps = manifest.capabilities
        origins = ("*",) if caps.network_any else tuple(str(o) for o in caps.network)
        from sandbox.browser import SandboxUnavailableError
        from sandbox.detonation import DetonationRequest

        requests = [
            DetonationRequest(
                root=workspace.root,
                files=tuple(f.path for f in workspace.files),
                entry=manifest.entry,
                styles=manifest.styles,
                global_name=manifest.global_name,
                allowed_origins=origins,
                csp=csp,
                role=role,
                time_limit_s=self.time_limit,
                origin=self.origin,
            )
            for role in ROLES
        ]
        # The roles run side by side, each in its own context with its own full
        # observation window, so the job takes about as long as one of them.
        try:
            traces = self.detonator.detonate_all(requests, timeout=self.time_limit + START_GRACE)
        except TimeoutError:
            self.detonator.abort()
            result.status, result.error = (
                StageStatus.TIMEOUT,
                f"detonation as {' and '.join(ROLES)} did not finish within"
                f" {self.time_limit + START_GRACE:g} s",
            )
            return result
        except SandboxUnavailableError as exc:
            result.status, result.error = StageStatus.ERROR, str(exc)[:500]
            return result
        for role, trace in zip(ROLES, traces, strict=True):
            data = {**trace.to_dict(), "canaries": trace.canaries}
            result.findings.extend(trace_findings(data, caps))
            rules = self._rules()
            if rules is not None:
                from scanner.js.runtime_code import runtime_code_findings

                result.findings.extend(
                    runtime_code_findings(data, rules, caps, _sources(workspace))
                )
            observed = set(result.raw.get("observed_capabilities", [])) | observed_capabilities(
                data
            )
            result.raw["observed_capabilities"] = sorted(observed)
            result.artifacts[f"trace-{role}.json"] = json.dumps(data, indent=1).encode()
            if trace.screenshot:
                result.artifacts[f"screenshot-{role}.png"] = trace.screenshot
            if trace.error and result.status is StageStatus.OK:
                # A detonation that broke off saw only part of the behaviour: fail closed.
                result.status, result.error = StageStatus.ERROR, f"as {role}: {trace.error}"
        result.coverage.scanned = [manifest.entry, *manifest.styles]
        return result


class _SharedBrowser:
    """The process's warm browser pool, made on the first detonation (not when the
    pipeline is assembled: most of a refused or static-only scan's start-up was this)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def pool(self) -> BrowserPool:
        s = self.settings
        return shared_pool(
            s.chromium_path, s.browser_max_scans, s.sandbox_user, s.data_dir / "browser-state"
        )

    def detonate_all(self, requests: Sequence[DetonationRequest], timeout: float) -> list[Trace]:
        return self.pool().detonate_all(requests, timeout)

    def abort(self) -> None:
        self.pool().abort()
