"""What killed tasks leave behind is swept: old work dirs and jails of dead processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from sandbox.isolation import remove_orphans
from scanner.config import Settings
from service.workdirs import sweep_leftovers


def test_old_work_dirs_go_and_live_ones_stay(settings: Settings) -> None:
    settings = replace(settings, task_time_limit=300.0, stage_timeout=120.0)
    root = settings.work_root
    root.mkdir(parents=True)
    old = [root / name for name in ("scan-a1", "blob-b2", "fetch-c3", "upload-d4")]
    fresh = root / "scan-live"
    other = root / "keep-me"
    for path in [*old, fresh, other]:
        (path / "bundle").mkdir(parents=True)
    an_hour_ago = time.time() - 3600
    for path in [*old, other]:
        os.utime(path, (an_hour_ago, an_hour_ago))
    assert sweep_leftovers(settings) >= 4
    assert [p.exists() for p in old] == [False] * 4
    assert fresh.exists() and other.exists()


def test_jails_of_dead_processes_go(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    gone = tmp_path / f"gatehouse-browser-{dead.stdout.strip()}-abc"
    ours = tmp_path / f"gatehouse-driver-{os.getpid()}-def"
    gone.mkdir()
    ours.mkdir()
    assert remove_orphans(tmp_path) == 1
    assert not gone.exists() and ours.exists()
