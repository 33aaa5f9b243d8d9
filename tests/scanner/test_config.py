"""Settings come from GATEHOUSE_* variables over embedded defaults, with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from scanner.config import Settings, SettingsError


def test_defaults_need_no_environment() -> None:
    s = Settings.from_env({})
    assert s.archive.max_total_bytes == 100 * 1024 * 1024
    assert s.archive.max_files == 5000
    assert s.clamd_socket_path == s.data_dir / "clamd" / "clamd.sock"
    assert (s.rules_dir / "policy.toml").is_file()


def test_environment_overrides_typed_values() -> None:
    s = Settings.from_env(
        {
            "GATEHOUSE_DATA_DIR": "/srv/gh",
            "GATEHOUSE_STAGE_TIMEOUT": "2.5",
            "GATEHOUSE_ARCHIVE_MAX_FILES": "10",
            "GATEHOUSE_CLAMD_TCP": "clamd:3310",
        }
    )
    assert s.data_dir == Path("/srv/gh")
    assert s.stage_timeout == 2.5
    assert s.archive.max_files == 10
    assert s.clamd_tcp == "clamd:3310"


def test_bad_values_are_named() -> None:
    with pytest.raises(SettingsError, match="GATEHOUSE_ARCHIVE_MAX_FILES"):
        Settings.from_env({"GATEHOUSE_ARCHIVE_MAX_FILES": "many"})


@pytest.mark.parametrize(
    "name", ["WEB_PROCESSES", "WEB_THREADS", "WORKER_PROCESSES", "RETRO_CONCURRENCY"]
)
def test_process_and_thread_counts_must_be_positive(name: str) -> None:
    with pytest.raises(SettingsError, match=f"GATEHOUSE_{name} must be at least 1"):
        Settings.from_env({f"GATEHOUSE_{name}": "0"})


def test_the_intake_budget_comes_from_the_environment_and_is_checked() -> None:
    s = Settings.from_env(
        {"GATEHOUSE_ARCHIVE_MAX_SECONDS": "5", "GATEHOUSE_ARCHIVE_MAX_MEMORY_BYTES": "134217728"}
    )
    assert (s.archive.max_seconds, s.archive.max_memory_bytes) == (5.0, 128 * 1024 * 1024)
    assert s.archive.max_header_bytes == 64 * 1024
    with pytest.raises(SettingsError, match="GATEHOUSE_ARCHIVE_MAX_SECONDS"):
        Settings.from_env({"GATEHOUSE_ARCHIVE_MAX_SECONDS": "0"})
    with pytest.raises(SettingsError, match="GATEHOUSE_ARCHIVE_MAX_MEMORY_BYTES"):
        Settings.from_env({"GATEHOUSE_ARCHIVE_MAX_MEMORY_BYTES": "1000000"})


def test_purge_hooks_need_their_signing_secret() -> None:
    with pytest.raises(SettingsError, match="GATEHOUSE_CDN_PURGE_SECRET"):
        Settings.from_env({"GATEHOUSE_CDN_PURGE_URLS": "https://cdn.example/purge"})
    settings = Settings.from_env(
        {"GATEHOUSE_CDN_PURGE_URLS": "https://a/p https://b/p", "GATEHOUSE_CDN_PURGE_SECRET": "x"}
    )
    assert settings.cdn_purge_url_list == ("https://a/p", "https://b/p")
    assert Settings(listen="0.0.0.0:9000").cdn_public_url == "http://0.0.0.0:9000/cdn"
    assert Settings(cdn_base_url="https://cdn.example/x/").cdn_public_url == "https://cdn.example/x"
