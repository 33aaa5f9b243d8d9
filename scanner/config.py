"""Typed settings; ``Settings.from_env()`` is the one place that reads the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

MiB = 1024 * 1024


class SettingsError(ValueError):
    """An environment variable holds a value of the wrong shape."""


def _default_data_dir() -> Path:
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "gatehouse"


def packaged_rules() -> Path:
    """The rules/ tree shipped inside the package (a directory on disk, never a zip)."""
    # Imported here: the unpacking child process imports this module and needs no rules.
    import importlib.resources

    return Path(str(importlib.resources.files("rules")))


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
    # Bytes of one tar extended header (pax or GNU long name), refused before it is read.
    max_header_bytes: int = 64 * 1024
    # Wall-clock seconds intake may take (CPU seconds too): the unpacking child process
    # is killed past it and the bundle refused (archive-budget-exceeded).
    max_seconds: float = 30.0
    # Address space of the unpacking child process (the OS refuses more); the reader
    # streams, so about 40 MiB is the interpreter and the rest is headroom.
    max_memory_bytes: int = 256 * MiB


@dataclass(frozen=True)
class Settings:
    # Where clamd's config/socket and other state live.
    data_dir: Path = field(default_factory=_default_data_dir)
    # Parent of each scan's private work dir (tmpfs when available).
    work_root: Path = field(default_factory=_default_work_root)
    # SQLAlchemy URL; empty means SQLite at <data_dir>/gatehouse.db.
    database_url: str = ""
    # The rules/ tree: policy, YARA, ClamAV and JS rule data (the packaged one by default).
    rules_dir: Path = field(default_factory=packaged_rules)
    # clamd's unix socket; empty means <data_dir>/clamd/clamd.sock.
    clamd_socket: str = ""
    # clamd over TCP instead (host:port); takes precedence over the socket when set.
    clamd_tcp: str = ""
    # Seconds clamd may take for one file.
    clamd_timeout: float = 30.0
    # Extra ClamAV database dir loaded when present (the official signatures).
    official_clamav_db: Path = Path("/var/lib/clamav")
    # Seconds any one stage may run before it is recorded as timed out (a CPU-bound stage's
    # worker process is then killed).
    stage_timeout: float = 120.0
    # Worker processes for the CPU-bound stages (per scanning process: the CLI, each
    # Celery worker process); per-file stages split a bundle's files across them.
    stage_processes: int = field(default_factory=lambda: os.cpu_count() or 1)
    # Files over this size are not parsed as JavaScript (a coverage gap, never silence).
    js_max_file_bytes: int = 20 * MiB
    # The browser for runtime analysis (Debian's chromium).
    chromium_path: str = "/usr/bin/chromium"
    # Wall-time limit of one detonation (one role); the clock is fast-forwarded inside it.
    detonation_timeout: float = 20.0
    # Restart the warm browser after this many detonations.
    browser_max_scans: int = 100
    # The origin the plugin is detonated under: the registry's own (a bundle that hides
    # from scanners sees the host name its users see).
    detonation_origin: str = "https://app.example.com"
    # The unprivileged user the browser runs as when Gatehouse runs as root.
    sandbox_user: str = "gatehouse-sandbox"
    archive: ArchiveLimits = field(default_factory=ArchiveLimits)

    # --- the service (gatehouse serve, workers, HTTP API) ---
    # Celery broker (redis://, amqp://); empty means the embedded broker: kombu's
    # SQLAlchemy transport on <data_dir>/broker.sqlite.
    broker_url: str = ""
    # Blob storage for bundles and artifacts: empty means <data_dir>/blobs; or
    # s3://bucket/prefix through boto3 (credentials from boto3's usual sources).
    blob_url: str = ""
    # Endpoint of an S3-compatible store (MinIO, Ceph, moto); empty means AWS.
    s3_endpoint_url: str = ""
    # Secrets the registry signs its webhooks with (whsec_..., space-separated: during a
    # rotation both the old and the new one are accepted).
    webhook_secrets: str = ""
    # Secret our callbacks to the registry are signed with (whsec_...).
    callback_secret: str = ""
    # Origins (scheme://host[:port], space-separated) a bundle_url may be fetched from.
    registry_origins: str = ""
    # Origins a callback_url may point at.
    callback_origins: str = ""
    # Seconds a webhook's timestamp may be away from our clock (replay window).
    webhook_tolerance: int = 300
    # Submissions one publisher may make in 24 hours, unless the publisher has its own.
    publisher_daily_limit: int = 10
    # Pre-flight scans one token may start in an hour, unless the token has its own.
    token_hourly_limit: int = 60
    # Hours a pre-flight scan and its report are kept.
    preflight_ttl_hours: float = 168.0
    # Starts of one stage before its bundle is quarantined (it keeps killing workers).
    max_stage_attempts: int = 3
    # Hard limit of one task in seconds; must stay below the broker's visibility timeout.
    task_time_limit: float = 300.0
    # Seconds before a Redis broker redelivers an unacknowledged task.
    broker_visibility_timeout: float = 3600.0
    # Seconds a scan may go without progress before the sweeper recovers it.
    stuck_after: float = 600.0
    # Seconds between sweeps (stuck scans, due callbacks, expired pre-flights).
    sweep_interval: float = 15.0
    # Seconds one callback request may take, whole (a hanging registry is a failure).
    callback_timeout: float = 10.0
    # Seconds over which a failing callback is retried (about three days).
    callback_retry_window: float = 3 * 86400.0
    # Seconds the fetch of a bundle_url may take, whole.
    fetch_timeout: float = 30.0
    # Address of the HTTP API (gatehouse serve).
    listen: str = "127.0.0.1:8080"
    # How much lower than the web server the Celery workers (and their browsers) run:
    # scans use whatever CPU is left, webhooks are never slow because scans run.
    worker_nice: int = 10
    # Web server processes and Celery worker processes started by gatehouse serve.
    web_processes: int = 2
    worker_processes: int = 2
    # Seconds between a worker's heartbeats; /readyz wants one within three of them.
    heartbeat_interval: float = 30.0
    # Threads (and so concurrent requests) per web process. A long-polling GET holds one
    # for up to its wait: size processes x threads above the CI jobs that poll at once.
    web_threads: int = 4

    # --- the reviewers' desk ---
    # Review target: a submission is due this many working hours (Monday to Friday, UTC;
    # weekends skipped) after it was submitted. The queue sorts by due date, then risk.
    review_target_hours: float = 24.0
    # Minutes a reviewer's claim on a submission lasts; others cannot decide meanwhile.
    claim_minutes: float = 30.0
    # Minutes without a request after which a desk session ends (sign in again).
    session_idle_minutes: float = 30.0
    # Session and CSRF cookies only over HTTPS. Turn off (0) for plain http on localhost
    # only (scripts/demo, tests): browsers drop Secure cookies sent over http.
    cookie_secure: bool = True
    # Signs sessions and CSRF tokens; empty means a random key kept in <data_dir>/secret_key
    # (0600), shared by every process on this machine. Set it when web servers are several.
    secret_key: str = ""
    # Failed sign-ins allowed per name (and five times as many per address) per window.
    login_max_failures: int = 5
    # Seconds of the sign-in throttling window.
    login_window: float = 900.0
    # Longest life of an allowlist entry, in days (every entry needs an expiry).
    allowlist_max_days: int = 90
    # A rule whose measured precision (true / marked findings) falls below this is flagged
    # for the evaluation state, once it has at least review_min_marks marks.
    precision_threshold: float = 0.5
    review_min_marks: int = 5

    # --- the CDN: promotion, yank, retro-scans ---
    # Where promoted files go: empty means <data_dir>/cdn, served by the service at /cdn;
    # or s3://bucket/prefix on any S3-compatible store (GATEHOUSE_S3_ENDPOINT_URL).
    cdn_url: str = ""
    # The public URL the CDN's files are reached at (callbacks, purge hooks, the index);
    # empty means http://<GATEHOUSE_LISTEN>/cdn, the service's own origin.
    cdn_base_url: str = ""
    # Ed25519 key that signs manifests and the blocklist: the 32-byte seed in base64.
    # Empty means a key made on first use and kept in <data_dir>/cdn-signing-key (0600),
    # shared by every process on this machine; set it when hosts are several.
    cdn_signing_key: str = ""
    # Purge webhooks of the CDNs in front of the origin (space-separated URLs), called
    # with retries on every yank and un-yank, signed with cdn_purge_secret (whsec_...).
    cdn_purge_urls: str = ""
    cdn_purge_secret: str = ""
    # Retro-scans in flight at once: each is a whole scan on the low-priority queues, so
    # this bounds how much of the workers a rule change can take from new submissions.
    retro_concurrency: int = 2

    @property
    def clamd_socket_path(self) -> Path:
        return (
            Path(self.clamd_socket) if self.clamd_socket else self.data_dir / "clamd" / "clamd.sock"
        )

    @property
    def policy_path(self) -> Path:
        return self.rules_dir / "policy.toml"

    @property
    def broker(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{self.data_dir / 'broker.sqlite'}"

    @property
    def task_soft_time_limit(self) -> float:
        """Seconds after which a task is interrupted to record a timeout and clean up,
        before the hard limit kills its process (a tenth of the limit, at most 30 s)."""
        return self.task_time_limit - min(30.0, self.task_time_limit / 10)

    @property
    def webhook_secret_list(self) -> tuple[str, ...]:
        return tuple(self.webhook_secrets.split())

    @property
    def registry_origin_list(self) -> tuple[str, ...]:
        return tuple(o.rstrip("/") for o in self.registry_origins.split())

    @property
    def callback_origin_list(self) -> tuple[str, ...]:
        return tuple(o.rstrip("/") for o in self.callback_origins.split())

    @property
    def cdn_purge_url_list(self) -> tuple[str, ...]:
        return tuple(self.cdn_purge_urls.split())

    @property
    def cdn_public_url(self) -> str:
        """Base URL of promoted files, without a trailing slash."""
        return (self.cdn_base_url or f"http://{self.listen}/cdn").rstrip("/")

    def check(self) -> Settings:
        """Refuse combinations that would break delivery guarantees; returns self."""
        if self.task_time_limit >= self.broker_visibility_timeout:
            raise SettingsError(
                "GATEHOUSE_TASK_TIME_LIMIT must stay below GATEHOUSE_BROKER_VISIBILITY_TIMEOUT,"
                " or a running task is delivered a second time"
            )
        if self.stage_timeout >= self.task_soft_time_limit:
            raise SettingsError(
                "GATEHOUSE_STAGE_TIMEOUT must stay below GATEHOUSE_TASK_TIME_LIMIT minus its"
                f" soft margin ({self.task_soft_time_limit:g} s), so a stage times out first"
            )
        if self.archive.max_seconds <= 0:
            raise SettingsError("GATEHOUSE_ARCHIVE_MAX_SECONDS must be above 0")
        if self.archive.max_memory_bytes < 64 * MiB:
            raise SettingsError(
                "GATEHOUSE_ARCHIVE_MAX_MEMORY_BYTES must be at least 64 MiB (the interpreter"
                " of the unpacking process needs about 40)"
            )
        if self.max_stage_attempts < 1:
            raise SettingsError("GATEHOUSE_MAX_STAGE_ATTEMPTS must be at least 1")
        if self.allowlist_max_days < 1 or self.claim_minutes <= 0:
            raise SettingsError(
                "GATEHOUSE_ALLOWLIST_MAX_DAYS and GATEHOUSE_CLAIM_MINUTES must be positive"
            )
        if self.cdn_purge_url_list and not self.cdn_purge_secret:
            raise SettingsError(
                "GATEHOUSE_CDN_PURGE_URLS is set but GATEHOUSE_CDN_PURGE_SECRET is not:"
                " purge requests would go out unsigned"
            )
        names = ("web_processes", "web_threads", "worker_processes", "stage_processes")
        for name in (*names, "retro_concurrency"):
            if getattr(self, name) < 1:
                raise SettingsError(f"GATEHOUSE_{name.upper()} must be at least 1")
        return self

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
        return replace(base, **values).check()


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
