"""A CPU-bound stage past its deadline is killed: TIMEOUT recorded, its process gone."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

from scanner.config import Settings
from scanner.findings import Category, Finding, Severity, StageResult, StageStatus
from scanner.pipeline import make_stage, run_stages
from scanner.stagepool import StagePool, merge_results, split_by_size
from scanner.workspace import Workspace
from tests.conftest import workspace_of


class SpinStage:
    """Holds the GIL in a pure-Python loop forever, as a runaway regex would."""

    name: ClassVar[str] = "spin"
    version: ClassVar[int] = 1
    runs_in_process: ClassVar[bool] = True

    @classmethod
    def from_settings(cls, settings: Settings) -> SpinStage:
        return cls()

    def run(self, workspace: Workspace) -> StageResult:
        n = 0
        while True:
            n += 1


class PidStage:
    """Reports each file it saw and the process that saw it."""

    name: ClassVar[str] = "pid"
    version: ClassVar[int] = 1
    runs_in_process: ClassVar[bool] = True
    per_file: ClassVar[bool] = True

    @classmethod
    def from_settings(cls, settings: Settings) -> PidStage:
        return cls()

    def run(self, workspace: Workspace) -> StageResult:
        time.sleep(0.3)  # long enough that both workers are needed at once
        out = StageResult(self.name, self.version)
        for f in workspace.files:
            out.coverage.scanned.append(f.path)
            out.findings.append(
                Finding(
                    self.name, "pid", Category.COVERAGE, Severity.INFO, str(os.getpid()), f.path
                )
            )
        return out


def _cpu_ticks(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return None
    return int(fields[11]) + int(fields[12])  # utime + stime


def test_a_spinning_stage_is_timed_out_and_its_worker_killed(tmp_path: Path) -> None:
    settings = replace(Settings(), stage_timeout=2.0, stage_processes=1)
    pool = StagePool(1)
    stage = make_stage(SpinStage.from_settings, settings)
    stage.pool = pool  # type: ignore[attr-defined] - a private pool, not the shared one
    ws = workspace_of(tmp_path / "b", {"a.js": "x"})
    pool.warm()
    deadline = time.monotonic() + 20
    while not pool.pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    [pid] = pool.pids()
    start = time.monotonic()
    [result] = run_stages(ws, [stage], settings.stage_timeout)
    took = time.monotonic() - start
    assert result.status is StageStatus.TIMEOUT and result.name == "spin"
    assert took < settings.stage_timeout + 3
    assert pool.pids() == []
    # The process is gone (reaped), so it burns no more CPU.
    assert _cpu_ticks(pid) is None
    assert not Path(f"/proc/{pid}").exists()
    pool.close()


def test_the_pool_recovers_after_a_kill(tmp_path: Path) -> None:
    settings = replace(Settings(), stage_timeout=1.0, stage_processes=1)
    pool = StagePool(1)
    spin = make_stage(SpinStage.from_settings, settings)
    spin.pool = pool  # type: ignore[attr-defined]
    ok = make_stage(PidStage.from_settings, settings)
    ok.pool = pool  # type: ignore[attr-defined]
    ws = workspace_of(tmp_path / "b", {"a.js": "x"})
    assert run_stages(ws, [spin], 1.0)[0].status is StageStatus.TIMEOUT
    [result] = run_stages(ws, [ok], 20.0)
    assert result.status is StageStatus.OK and result.coverage.scanned == ["a.js"]
    pool.close()


def test_per_file_stages_use_both_workers_on_a_multi_file_bundle(tmp_path: Path) -> None:
    settings = replace(Settings(), stage_processes=2)
    pool = StagePool(2)
    stage = make_stage(PidStage.from_settings, settings)
    stage.pool = pool  # type: ignore[attr-defined]
    big = "x" * 200_000
    ws = workspace_of(tmp_path / "b", {f"f{i}.js": big for i in range(4)})
    [result] = run_stages(ws, [stage], 30.0)
    assert sorted(result.coverage.scanned) == ["f0.js", "f1.js", "f2.js", "f3.js"]
    assert len({f.message for f in result.findings}) == 2  # two worker processes
    assert os.getpid() not in {int(f.message) for f in result.findings}
    pool.close()


def test_split_by_size_balances_bytes() -> None:
    from scanner.intake import UnpackedFile

    files = [UnpackedFile(f"f{i}", size, "") for i, size in enumerate([900_000, 500_000, 400_000])]
    shards = split_by_size(files, 2)
    assert sorted(shards, key=lambda s: s or ()) == [("f0",), ("f1", "f2")]
    assert split_by_size(files[:1], 2) == [None]  # one file: one task


def test_per_file_maps_in_raw_output_join_up_across_shards() -> None:
    a = StageResult("js-static", 3, raw={"libraries_skipped": {"a.js": [1]}, "n": 1})
    b = StageResult("js-static", 3, raw={"libraries_skipped": {"b.js": [2]}, "n": 2})
    merged = merge_results("js-static", 3, [a, b])
    assert merged.raw["libraries_skipped"] == {"a.js": [1], "b.js": [2]}
    assert merged.raw["n"] == 2


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_workers_are_forked_by_one_zygote_not_started_by_us(tmp_path: Path) -> None:
    """The second worker, and the one that replaces a killed worker, cost a fork of a
    process that imported the analysis modules once, not a fresh interpreter each."""
    pool = StagePool(2)
    try:
        pool.warm()
        deadline = time.monotonic() + 20
        while len(pool.pids()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        first, second = pool.pids()
        zygote = _parent(first)
        assert zygote == _parent(second) and zygote != os.getpid()
        assert _parent(zygote) == os.getpid()
        worker = pool._all[0]
        pool._discard(worker)
        replacement = pool._spawn()
        assert _parent(replacement.pid) == zygote
        assert not Path(f"/proc/{worker.pid}").exists()  # killed and reaped
    finally:
        pool.close()
    assert not Path(f"/proc/{zygote}").exists() or _zombie(zygote)


def _zombie(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
