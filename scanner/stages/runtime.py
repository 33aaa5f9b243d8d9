"""Runtime analysis: detonate the bundle in headless Chromium as a user and as an admin."""

from __future__ import annotations

import atexit
import json
from functools import lru_cache
from pathlib import Path
from typing import ClassVar, Protocol

from sandbox.browser import BrowserPool, BrowserSettings, SandboxUnavailableError
from sandbox.detonation import DEFAULT_ORIGIN, DetonationRequest, Trace
from scanner.config import Settings
from scanner.csp import asset_integrity, build_csp
from scanner.findings import StageResult, StageStatus
from scanner.js.rules import CompiledRules
from scanner.js.runtime_code import runtime_code_findings
from scanner.runtime import STAGE, observed_capabilities, trace_findings
from scanner.stages.js_static import compiled_rules
from scanner.workspace import Workspace

ROLES = ("user", "admin")
SCRIPT_SUFFIXES = [".js", ".mjs", ".cjs"]


def _sources(workspace: Workspace) -> list[bytes]:
    return [workspace.path_of(f.path).read_bytes() for f in workspace.with_suffix(SCRIPT_SUFFIXES)]


class DetonationPool(Protocol):
    """What the stage needs of sandbox.browser.BrowserPool (a fake in unit tests)."""

    def detonate(self, request: DetonationRequest, timeout: float) -> Trace: ...

    def abort(self) -> None: ...


# What a detonation may take on top of its own time limit: starting a jail, driver and
# browser when none is warm. Past it the detonation is cut and its browser killed.
START_GRACE = 15.0


@lru_cache(maxsize=2)
def shared_pool(
    executable: str, max_scans: int, user: str, status_dir: Path | None = None
) -> BrowserPool:
    """One warm browser per process, whatever the number of scans."""
    pool = BrowserPool(
        BrowserSettings(
            executable=executable, max_scans=max_scans, user=user, status_dir=status_dir
        )
    )
    atexit.register(pool.close)  # no Chromium outlives the process
    return pool


class RuntimeStage:
    name: ClassVar[str] = STAGE
    version: ClassVar[int] = 2  # 2: code built at run time analysed with the JS rules

    def __init__(
        self,
        detonator: DetonationPool,
        time_limit: float,
        origin: str = DEFAULT_ORIGIN,
        rules: CompiledRules | None = None,
    ) -> None:
        self.detonator = detonator
        self.time_limit = time_limit
        self.origin = origin.rstrip("/")
        # The JS rules, for the code the plugin builds at run time (None: not analysed).
        self.rules = rules

    @classmethod
    def from_settings(cls, settings: Settings) -> RuntimeStage:
        return cls(
            shared_pool(
                settings.chromium_path,
                settings.browser_max_scans,
                settings.sandbox_user,
                settings.data_dir / "browser-state",
            ),
            settings.detonation_timeout,
            settings.detonation_origin,
            compiled_rules(settings.rules_dir / "js"),
        )

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
        for role in ROLES:
            request = DetonationRequest(
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
            try:
                trace = self.detonator.detonate(request, timeout=self.time_limit + START_GRACE)
            except TimeoutError:
                self.detonator.abort()
                result.status, result.error = (
                    StageStatus.TIMEOUT,
                    f"detonation as {role} did not finish within"
                    f" {self.time_limit + START_GRACE:g} s",
                )
                return result
            except SandboxUnavailableError as exc:
                result.status, result.error = StageStatus.ERROR, str(exc)[:500]
                return result
            data = {**trace.to_dict(), "canaries": trace.canaries}
            result.findings.extend(trace_findings(data, caps))
            if self.rules is not None:
                result.findings.extend(
                    runtime_code_findings(data, self.rules, caps, _sources(workspace))
                )
            observed = set(result.raw.get("observed_capabilities", [])) | observed_capabilities(
                data
            )
            result.raw["observed_capabilities"] = sorted(observed)
            result.artifacts[f"trace-{role}.json"] = json.dumps(data, indent=1).encode()
            if trace.screenshot:
                result.artifacts[f"screenshot-{role}.png"] = trace.screenshot
            if trace.error:
                # A detonation that broke off saw only part of the behaviour: fail closed.
                result.status, result.error = StageStatus.ERROR, f"as {role}: {trace.error}"
        result.coverage.scanned = [manifest.entry, *manifest.styles]
        return result
