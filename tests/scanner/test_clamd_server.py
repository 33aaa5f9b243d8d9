"""The embedded clamd's configuration: fail-closed limits, own and official signatures."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from scanner.clamd_server import ClamdServer
from scanner.config import Settings


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
