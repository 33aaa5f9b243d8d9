"""The embedded clamd's configuration: fail-closed limits, own and official signatures."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import replace
from pathlib import Path

import pytest

from scanner.clamd_server import ClamdServer, ClamdStartError, ClamdSupervisor
from scanner.config import Settings
from tests.paths import RULES_DIR


def test_config_alerts_on_limits_and_uses_a_private_socket(settings: Settings) -> None:
    server = ClamdServer(settings)
    conf = server.write_config().read_text()
    assert "AlertExceedsMax yes" in conf
    assert f"LocalSocket {settings.data_dir / 'clamd' / 'clamd.sock'}" in conf
    assert "LocalSocketMode 600" in conf
    assert "TCPSocket" not in conf  # never listen on the network by default
    # clamd must accept anything intake admits, or content would go unscanned.
    stream_mb = int(
        next(line for line in conf.splitlines() if line.startswith("StreamMaxLength")).split()[1][
            :-1
        ]
    )
    assert stream_mb * 1024 * 1024 >= settings.archive.max_file_bytes


def test_database_holds_project_and_official_signatures(settings: Settings, tmp_path: Path) -> None:
    official = tmp_path / "official"
    official.mkdir()
    (official / "main.cvd").write_bytes(b"fake")
    (official / "freshclam.dat").write_bytes(b"not a database")
    server = ClamdServer(replace(settings, official_clamav_db=official))
    server.write_config()
    names = sorted(p.name for p in server.db.iterdir())
    assert names == ["gatehouse.ndb", "main.cvd"]
    assert (server.db / "main.cvd").is_symlink()


def test_missing_official_database_is_fine(settings: Settings, tmp_path: Path) -> None:
    server = ClamdServer(replace(settings, official_clamav_db=tmp_path / "absent"))
    server.write_config()
    assert [p.name for p in server.db.iterdir()] == ["gatehouse.ndb"]
    assert not server.is_running()


class _Down:
    """A clamd that never comes up."""

    def __init__(self) -> None:
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        raise ClamdStartError("clamd exited with 1")

    def is_running(self) -> bool:
        return False


def test_the_supervisor_backs_off_when_clamd_keeps_failing() -> None:
    down = _Down()
    lines: list[str] = []
    supervisor = ClamdSupervisor(down, lines.append)  # type: ignore[arg-type]
    for second in range(0, 20):
        supervisor.ensure(now=float(second))
    # Started at 0, 1, 3, 7, 15: a pause of 1, 2, 4, 8, 16 s after each failure.
    assert down.starts == 5
    assert "next try in 16 s" in lines[-1]


@pytest.mark.integration
def test_the_supervisor_restarts_a_killed_clamd_and_reaps_it(tmp_path: Path) -> None:
    settings = replace(
        Settings(),
        data_dir=tmp_path / "d",
        rules_dir=RULES_DIR,
        official_clamav_db=tmp_path / "none",
    )
    lines: list[str] = []
    supervisor = ClamdSupervisor(ClamdServer(settings), lines.append)
    try:
        supervisor.ensure()
        first = supervisor.proc
        assert first is not None and ClamdServer(settings).is_running()
        os.kill(first.pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while supervisor.restarts < 2 and time.monotonic() < deadline:
            supervisor.ensure()
            time.sleep(0.1)
        assert supervisor.restarts == 2, lines
        assert ClamdServer(settings).is_running()
        assert first.returncode == -signal.SIGKILL  # reaped, not a zombie
        assert any("exited with -9" in line for line in lines)
    finally:
        ClamdServer(settings).stop()
        if supervisor.proc is not None:
            supervisor.proc.wait(timeout=30)
