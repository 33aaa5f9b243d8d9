"""Typed settings; ``Settings.from_env()`` is the one place that reads the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class SettingsError(ValueError):
    """An environment variable holds a value of the wrong shape."""


def _default_data_dir() -> Path:
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "gatehouse"


def _default_work_root() -> Path:
    # Unpacking thousands of small files is 6x faster on tmpfs than on disk.
    shm = Path("/dev/shm")  # noqa: S108 - a private 0700 dir is made under it
    if shm.is_dir() and os.access(shm, os.W_OK):
        return shm / "gatehouse"
    return Path("/tmp/gatehouse")  # noqa: S108 - private 0700 dirs are made under it


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds on what intake will unpack; anything beyond is a critical finding."""

    # Size of the uploaded archive itself.
    max_bundle_bytes: int = 50 * MiB
    # Sum of all unpacked bytes, counted from the decompressed stream.
    max_total_bytes: int = 100 * MiB
    # Number of members (files and directories).
    max_files: int = 5000
    # Size of any one unpacked file.
    max_file_bytes: int = 50 * MiB
    # Unpacked/packed ratio of a member; real minified JS deflates about 3-6x.
    max_ratio: float = 200.0
    # Ratio is only judged past this many unpacked bytes: tiny files compress oddly.
    ratio_grace_bytes: int = 1 * MiB
    # Directory depth of any member path.
    max_depth: int = 24
    # Bytes of a member path.
    max_path_bytes: int = 512


@dataclass(frozen=True)
class Settings:
    # Where clamd's config/socket and other state live.
    data_dir: Path = field(default_factory=_default_data_dir)
    # Parent of each scan's private work dir (tmpfs when available).
    work_root: Path = field(default_factory=_default_work_root)
    # SQLAlchemy URL; empty means SQLite at <data_dir>/gatehouse.db.
    database_url: str = ""
    # The rules/ tree: policy, YARA, ClamAV and JS rule data.
    rules_dir: Path = PROJECT_ROOT / "rules"
    # clamd's unix socket; empty means <data_dir>/clamd/clamd.sock.
    clamd_socket: str = ""
    # clamd over TCP instead (host:port); takes precedence over the socket when set.
    clamd_tcp: str = ""
    # Seconds clamd may take for one file.
    clamd_timeout: float = 30.0
    # Extra ClamAV database dir loaded when present (the official signatures).
    official_clamav_db: Path = Path("/var/lib/clamav")
    # Seconds any one stage may run before it is recorded as timed out.
    stage_timeout: float = 120.0
    # Files over this size are not parsed as JavaScript (a coverage gap, never silence).
    js_max_file_bytes: int = 20 * MiB
    # The browser for runtime analysis (Debian's chromium).
    chromium_path: str = "/usr/bin/chromium"
    # Wall-time limit of one detonation (one role); the clock is fast-forwarded inside it.
    detonation_timeout: float = 20.0
    # Restart the warm browser after this many detonations.
    browser_max_scans: int = 100
    archive: ArchiveLimits = field(default_factory=ArchiveLimits)

    @property
    def clamd_socket_path(self) -> Path:
        return (
            Path(self.clamd_socket) if self.clamd_socket else self.data_dir / "clamd" / "clamd.sock"
        )

    @property
    def policy_path(self) -> Path:
        return self.rules_dir / "policy.toml"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``GATEHOUSE_*`` variables over the embedded defaults."""
        env = os.environ if environ is None else environ
        base = cls()
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = f"GATEHOUSE_{f.name.upper()}"
            if key in env and f.name != "archive":
                values[f.name] = _coerce(key, env[key], getattr(base, f.name))
        limits: dict[str, Any] = {}
        for f in fields(ArchiveLimits):
            key = f"GATEHOUSE_ARCHIVE_{f.name.upper()}"
            if key in env:
                limits[f.name] = _coerce(key, env[key], getattr(base.archive, f.name))
        if limits:
            values["archive"] = replace(base.archive, **limits)
        return replace(base, **values)


def _coerce(key: str, raw: str, current: object) -> object:
    try:
        if isinstance(current, bool):
            return raw.strip().lower() in {"1", "true", "yes", "on"}
        if isinstance(current, int):
            return int(raw)
        if isinstance(current, float):
            return float(raw)
        if isinstance(current, Path):
            return Path(raw)
    except ValueError:
        raise SettingsError(f"{key}={raw!r} is not a valid {type(current).__name__}") from None
    return raw
