"""Bandit over the bundle's Python code, run in-process once per scan."""

from __future__ import annotations

import logging
import threading
from importlib.metadata import version
from typing import Any, ClassVar

from scanner.config import Settings
from scanner.findings import Category, Finding, Severity, StageResult, truncate
from scanner.pyflow import secret_flows
from scanner.workspace import Workspace

# Bandit loads its plugins on import; its optional SARIF formatter is not installed and
# the loader would log an error about it on every run.
logging.getLogger("stevedore").setLevel(logging.CRITICAL)

_SEVERITY = {"LOW": Severity.LOW, "MEDIUM": Severity.MEDIUM, "HIGH": Severity.HIGH}
# Bandit keeps state on module-level objects; one scan at a time per process.
_LOCK = threading.Lock()


class PythonStaticStage:
    name: ClassVar[str] = "python-static"
    version: ClassVar[int] = 2  # 2: secrets followed to the network (scanner.pyflow)
    # CPU-bound: a worker process that can be killed (whole bundle: it joins files up).
    runs_in_process: ClassVar[bool] = True

    @classmethod
    def from_settings(cls, settings: Settings) -> PythonStaticStage:
        logging.getLogger("bandit").setLevel(logging.ERROR)
        return cls()

    def run(self, workspace: Workspace) -> StageResult:
        result = StageResult(self.name, self.version, tool_versions={"bandit": version("bandit")})
        sources = [f.path for f in workspace.with_suffix([".py", ".pyw"])]
        if not sources:
            return result
        manifest = workspace.manifest.manifest
        if manifest is not None and manifest.backend_entry is None:
            result.findings.append(
                Finding(
                    self.name,
                    "python-undeclared-backend",
                    Category.UNDECLARED_CAPABILITY,
                    Severity.MEDIUM,
                    "the bundle ships Python code but declares no backend",
                    path=sources[0],
                )
            )
        with _LOCK:
            issues, skipped = _run_bandit([str(workspace.path_of(p)) for p in sources])
        root = str(workspace.root) + "/"
        skipped_paths = {fname.removeprefix(root) for fname, _ in skipped}
        for fname, reason in skipped:
            rel = fname.removeprefix(root)
            result.coverage.skip(rel, f"bandit could not parse it: {reason}")
            result.findings.append(
                Finding(
                    self.name,
                    "python-not-analysed",
                    Category.COVERAGE,
                    Severity.MEDIUM,
                    f"{rel} could not be analysed: {reason}",
                    path=rel,
                )
            )
        result.coverage.scanned = [p for p in sources if p not in skipped_paths]
        result.findings.extend(_to_finding(self.name, issue, root) for issue in issues)
        # Bandit matches names; reflection hides them. Follow the data instead.
        for rel in result.coverage.scanned:
            result.findings.extend(secret_flows(rel, workspace.read_text(rel)))
        result.raw["bandit"] = [issue.as_dict(with_code=False) for issue in issues]
        return result


def _run_bandit(paths: list[str]) -> tuple[list[Any], list[tuple[str, str]]]:
    # Imported here: bandit loads its plugins on import (0.15 s), and most bundles have no
    # Python, so most scans never need it.
    from bandit.core import config as bandit_config
    from bandit.core import manager as bandit_manager

    conf = bandit_config.BanditConfig()
    # A bundle never configures its own scanner: `# nosec` inside it is ignored.
    mgr = bandit_manager.BanditManager(conf, "file", quiet=True, ignore_nosec=True)
    mgr.discover_files(paths, recursive=False)
    mgr.run_tests()
    return list(mgr.get_issue_list()), list(mgr.skipped)


def _to_finding(stage: str, issue: Any, root: str) -> Finding:
    severity = _SEVERITY.get(str(issue.severity), Severity.MEDIUM)
    confidence = str(issue.confidence)
    if confidence == "LOW":
        severity = severity.lowered()
    return Finding(
        stage=stage,
        rule_id=f"bandit-{issue.test_id}",
        category=Category.BACKEND_CODE,
        severity=severity,
        message=(
            f"{issue.text} (bandit {issue.test_id} {issue.test}, confidence {confidence.lower()})"
        ),
        path=str(issue.fname).removeprefix(root),
        line=int(issue.lineno) if issue.lineno else None,
        evidence=truncate(issue.get_code(max_lines=1) or ""),
        details=(
            ("confidence", confidence.lower()),
            ("bandit_severity", str(issue.severity).lower()),
        ),
    )
