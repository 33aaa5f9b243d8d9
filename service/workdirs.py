"""What killed tasks leave behind: work dirs under the work root, and browser jails."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from sandbox.isolation import remove_orphans
from scanner.config import Settings

# Every private dir a scan, a fetch, a blob download or an upload makes under the work
# root (scanner.pipeline, service.orchestration, service.bundles, review_ui uploads).
PREFIXES = ("scan-", "blob-", "fetch-", "upload-")


def sweep_leftovers(settings: Settings, now: float | None = None) -> int:
    """Remove work dirs older than any task may run (a task SIGKILLed mid-scan never
    reached its clean-up) and browser jails of processes that are gone; returns how many."""
    now = time.time() if now is None else now
    # A task is killed at its hard limit and a CLI scan's stages at theirs: past twice the
    # longer one, nothing alive owns the dir.
    age = 2 * max(settings.task_time_limit, settings.stage_timeout)
    removed = 0
    root: Path = settings.work_root
    if root.is_dir():
        for entry in root.iterdir():
            if not entry.name.startswith(PREFIXES) or entry.is_symlink() or not entry.is_dir():
                continue
            try:
                old = entry.stat().st_mtime < now - age
            except OSError:
                continue
            if old:
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
    return removed + remove_orphans()
