"""Start a private clamd for the embedded default: config, database and socket under data_dir."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from scanner.clamav import ClamdUnavailableError, SocketClamdClient
from scanner.config import MiB, Settings
from scanner.private_dirs import private_dir

SIGNATURE_SUFFIXES = frozenset(
    {".ndb", ".hdb", ".hsb", ".ldb", ".cdb", ".ndu", ".ldu", ".ign2", ".fp", ".sfp"}
)
OFFICIAL_SUFFIXES = frozenset({".cvd", ".cld", ".cud"})


class ClamdStartError(RuntimeError):
    """clamd is not installed, or did not come up."""


class ClamdServer:
    """Owns ``<data_dir>/clamd``: clamd.conf, db/, the socket, the pid file and the log."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.data_dir / "clamd"
        self.db = self.home / "db"
        self.conf = self.home / "clamd.conf"
        self.pid_file = self.home / "clamd.pid"
        self.log = self.home / "clamd.log"

    def write_config(self) -> Path:
        private_dir(self.home)
        (self.home / "tmp").mkdir(exist_ok=True, mode=0o700)
        self._refresh_database()
        limit_mb = max(self.settings.archive.max_file_bytes // MiB, 1) * 2
        socket_path = self.settings.clamd_socket_path
        socket_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lines = [
            f"LocalSocket {socket_path}",
            "LocalSocketMode 600",
            "FixStaleSocket yes",
            f"PidFile {self.pid_file}",
            f"DatabaseDirectory {self.db}",
            f"TemporaryDirectory {self.home / 'tmp'}",
            f"LogFile {self.log}",
            "LogTime yes",
            "Foreground yes",
            # Without this, content over a limit is reported as OK: fail closed instead.
            "AlertExceedsMax yes",
            f"StreamMaxLength {limit_mb}M",
            f"MaxFileSize {limit_mb}M",
            f"MaxScanSize {limit_mb * 4}M",
            "MaxRecursion 16",
            "MaxFiles 10000",
            "ReadTimeout 120",
            "CommandReadTimeout 30",
            "MaxThreads 4",
        ]
        self.conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return self.conf

    def _refresh_database(self) -> None:
        if self.db.exists():
            shutil.rmtree(self.db)
        self.db.mkdir(mode=0o700)
        for sig in sorted((self.settings.rules_dir / "clamav").iterdir()):
            if sig.suffix in SIGNATURE_SUFFIXES:
                shutil.copy2(sig, self.db / sig.name)
        official = self.settings.official_clamav_db
        if official.is_dir():
            for db in sorted(official.iterdir()):
                if db.suffix in OFFICIAL_SUFFIXES:
                    (self.db / db.name).symlink_to(db)

    def is_running(self) -> bool:
        try:
            SocketClamdClient(self.settings).ping()
        except ClamdUnavailableError:
            return False
        return True

    def command(self) -> list[str]:
        binary = shutil.which("clamd") or (
            "/usr/sbin/clamd" if Path("/usr/sbin/clamd").exists() else None
        )
        if binary is None:
            raise ClamdStartError("clamd is not installed (apt-get install clamav-daemon)")
        return [binary, "--config-file", str(self.conf), "--foreground"]

    def start(self, timeout: float = 60.0) -> subprocess.Popen[bytes]:
        """Start clamd in the background (its own session) and wait until it answers PING."""
        self.write_config()
        with self.log.open("ab") as log:
            proc = subprocess.Popen(self.command(), stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.is_running():
                return proc
            if proc.poll() is not None:
                raise ClamdStartError(f"clamd exited with {proc.returncode}; see {self.log}")
            time.sleep(0.1)
        proc.kill()
        raise ClamdStartError(f"clamd did not answer within {timeout:g} s; see {self.log}")

    def run_foreground(self) -> int:
        """Replace nothing, just run clamd attached (for containers and supervisors)."""
        self.write_config()
        return subprocess.call(self.command())

    def stop(self, timeout: float = 10.0) -> bool:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return False
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
        return True


class ClamdSupervisor:
    """Keeps the embedded clamd running for ``gatehouse serve``: restarts it with a growing
    pause when it dies or stops answering, and reaps what it started."""

    FIRST_PAUSE = 1.0
    MAX_PAUSE = 60.0
    CHECK_EVERY = 5.0  # seconds between pings of a clamd we did not start ourselves

    def __init__(self, server: ClamdServer, log: Callable[[str], None]) -> None:
        self.server = server
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.failures = 0  # consecutive failed starts
        self._next_start = 0.0
        self._next_check = 0.0

    def ensure(self, now: float | None = None) -> None:
        """One look: start clamd when it is down and its pause is over."""
        now = time.monotonic() if now is None else now
        if self._alive(now):
            return
        if now < self._next_start:
            return
        try:
            self.proc = self.server.start()
        except ClamdStartError as exc:
            self.failures += 1
            pause = min(self.MAX_PAUSE, self.FIRST_PAUSE * 2 ** (self.failures - 1))
            self._next_start = now + pause
            self.log(f"clamd did not start ({exc}); next try in {pause:g} s")
            return
        self.failures = 0
        self.restarts += 1
        self.log(f"clamd started (pid {self.proc.pid}, start {self.restarts})")

    def _alive(self, now: float) -> bool:
        if self.proc is not None:
            if self.proc.poll() is None:  # poll() also reaps it once it has exited
                return True
            self.log(f"clamd exited with {self.proc.returncode}")
            self.proc = None
            return False
        if self.failures:
            return False  # known to be down: waiting out the pause
        if now < self._next_check:
            return True
        self._next_check = now + self.CHECK_EVERY
        return self.server.is_running()
