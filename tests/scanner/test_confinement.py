"""The confined child: limits enforced by the OS, answers as JSON, nothing left running."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from scanner.confinement import Budget, BudgetExceededError, ChildFailedError, run_confined

ROOMY = Budget(seconds=20, memory_bytes=256 * 2**20, file_bytes=2**20)
ENTRY = "tests.scanner.confined_entries"


def test_the_answer_comes_back() -> None:
    assert run_confined(f"{ENTRY}:echo", {"a": [1, "x"]}, ROOMY) == {"a": [1, "x"]}


def test_the_child_gets_none_of_our_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEHOUSE_WEBHOOK_SECRETS", "whsec_c2VjcmV0")
    env = run_confined(f"{ENTRY}:environment", None, ROOMY)
    assert not any(k.startswith("GATEHOUSE_") for k in env)


def test_the_wall_clock_kills_the_child_and_its_session() -> None:
    start = time.monotonic()
    with pytest.raises(BudgetExceededError, match=r"longer than 0\.5 s"):
        run_confined(f"{ENTRY}:sleep", 30, Budget(0.5, ROOMY.memory_bytes, ROOMY.file_bytes))
    assert time.monotonic() - start < 3


def test_cpu_is_capped_by_the_os_not_the_clock() -> None:
    # A wall clock far away: only RLIMIT_CPU (1 s) can stop the loop this soon.
    budget = Budget(1, ROOMY.memory_bytes, ROOMY.file_bytes)
    start = time.monotonic()
    with pytest.raises(BudgetExceededError):
        run_confined(f"{ENTRY}:burn", None, budget)
    assert time.monotonic() - start < 5


def test_memory_is_capped_by_the_os() -> None:
    budget = Budget(20, 128 * 2**20, ROOMY.file_bytes)
    with pytest.raises(BudgetExceededError, match="more than 128 MiB"):
        run_confined(f"{ENTRY}:allocate", 512 * 2**20, budget)
    assert run_confined(f"{ENTRY}:allocate", 8 * 2**20, budget) == 8 * 2**20


def test_file_size_is_capped_by_the_os(tmp_path: Path) -> None:
    target = tmp_path / "big"
    with pytest.raises(BudgetExceededError, match="file over"):
        run_confined(f"{ENTRY}:write", [str(target), 2 * 2**20], ROOMY)


def test_a_bug_or_a_crash_in_the_child_is_reported_not_raised_raw() -> None:
    with pytest.raises(ChildFailedError, match="ValueError: a bug in the entry point"):
        run_confined(f"{ENTRY}:fail", None, ROOMY)
    with pytest.raises(ChildFailedError, match=f"status {-signal.SIGABRT}"):
        run_confined(f"{ENTRY}:die", None, ROOMY)


def test_no_child_is_left_behind() -> None:
    # Only children born during this call count: another test's leaked process is not ours.
    before = set(_confined_children())
    budget = Budget(0.3, ROOMY.memory_bytes, ROOMY.file_bytes)
    with pytest.raises(BudgetExceededError):
        run_confined(f"{ENTRY}:sleep", 30, budget)
    assert set(_confined_children()) - before == set()


def _confined_children() -> list[int]:
    """Our children (zombies included) that run the confinement boot line."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == os.getpid() and (b"scanner.confinement" in cmdline or " Z " in stat):
            found.append(int(proc.name))
    return found
