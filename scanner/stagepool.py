"""Warm worker processes for CPU-bound stages: a stage past its deadline is killed.

A thread cannot be stopped, and a runaway regex or parse in one holds the GIL for every
other stage. So the CPU-bound stages run in worker processes, talking over a socket pair.
Workers are forked by a zygote: one fresh interpreter (``python -m scanner.stagepool
--zygote``, spawned and exec'd: never a fork of the caller, which has threads, nor a
re-import of the caller's main script as multiprocessing's spawn and forkserver modes
do) that imports the analysis modules once, stays single-threaded, and forks a worker
in about a millisecond whenever one is needed: the second worker, and the one that
replaces a killed worker, cost no start-up. Each worker builds a stage once
(compiled YARA rules, tree-sitter queries, the advisory detectors) and keeps it for the
next scan. A task that outlives its deadline gets its worker killed with SIGKILL and
replaced on next need; the stage is recorded as timed out. Per-file stages are split
into shards by bytes so a multi-file bundle keeps every worker busy.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

from scanner.config import Settings
from scanner.findings import StageResult, StageStatus
from scanner.intake import BundleInfo, UnpackedFile
from scanner.stages.base import Stage
from scanner.workspace import Workspace

log = logging.getLogger(__name__)

StageFactory = Callable[[Settings], Stage]
# Imported by each worker as it starts (0.6 s), while the caller unpacks. The dependency
# audit (SQLAlchemy, 1.2 s) and bandit are imported by the worker that first runs them.
PRELOAD = (
    "scanner.stages.js_static",
    "scanner.stages.secrets",
    "scanner.stages.directives",
    "scanner.stages.yara",
)
# Shards smaller than this are not worth a second worker's round trip.
MIN_SHARD_BYTES = 64 * 1024


@dataclass(frozen=True)
class StageTask:
    """One stage over some of a bundle's files; everything in it pickles by value or name."""

    factory: StageFactory
    settings: Settings
    root: Path
    files: tuple[UnpackedFile, ...]
    bundle: BundleInfo
    only: tuple[str, ...] | None = None  # a shard: the paths this task covers


def runs_in_process(factory: StageFactory) -> bool:
    """Stages that say they are CPU-bound (``runs_in_process``) run in worker processes."""
    owner = getattr(factory, "__self__", None)
    return bool(getattr(owner, "runs_in_process", False))


def _per_file(factory: StageFactory) -> bool:
    return bool(getattr(getattr(factory, "__self__", None), "per_file", False))


class ProcessStage:
    """Stands for a stage in the parent; the stage itself is built and run in a worker."""

    def __init__(self, factory: StageFactory, settings: Settings, pool: StagePool) -> None:
        owner = getattr(factory, "__self__", None)
        self.factory = factory
        self.settings = settings
        self.pool = pool
        self.name: str = str(getattr(owner, "name", "stage"))
        self.version: int = int(getattr(owner, "version", 0))

    def run(self, workspace: Workspace) -> StageResult:
        return self.run_until(workspace, time.monotonic() + self.settings.stage_timeout)

    def run_until(self, workspace: Workspace, deadline: float) -> StageResult:
        """Run every shard side by side, each on a worker, all by ``deadline``."""
        start = time.perf_counter()
        shards = self._shards(workspace)
        results: list[StageResult | None] = [None] * len(shards)

        def one(i: int, only: tuple[str, ...] | None) -> None:
            task = StageTask(
                self.factory, self.settings, workspace.root, workspace.files, workspace.bundle, only
            )
            results[i] = self.pool.run(task, deadline, self.name, self.version)

        threads = [
            threading.Thread(target=one, args=(i, s), daemon=True) for i, s in enumerate(shards)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()  # each run returns by its deadline: the pool kills what does not
        merged = merge_results(self.name, self.version, [r for r in results if r is not None])
        merged.duration_ms = (time.perf_counter() - start) * 1000
        return merged

    def _shards(self, workspace: Workspace) -> list[tuple[str, ...] | None]:
        if not _per_file(self.factory) or self.pool.size < 2:
            return [None]
        return split_by_size(workspace.files, self.pool.size) or [None]


def split_by_size(files: Sequence[UnpackedFile], parts: int) -> list[tuple[str, ...] | None]:
    """Files in up to ``parts`` groups of about equal bytes (largest first, to the lightest)."""
    total = sum(f.size for f in files)
    parts = max(1, min(parts, len(files), total // MIN_SHARD_BYTES))
    if parts < 2:
        return [None]
    bins: list[tuple[int, list[str]]] = [(0, []) for _ in range(parts)]
    for f in sorted(files, key=lambda f: -f.size):
        i = min(range(parts), key=lambda k: bins[k][0])
        bins[i] = (bins[i][0] + f.size, [*bins[i][1], f.path])
    return [tuple(paths) for _, paths in bins if paths]


def merge_results(name: str, version: int, parts: Sequence[StageResult]) -> StageResult:
    """One result from the shards: every finding and file; the worst status wins."""
    out = StageResult(name, version)
    order = [StageStatus.OK, StageStatus.SKIPPED, StageStatus.ERROR, StageStatus.TIMEOUT]
    errors = []
    for part in parts:
        out.findings.extend(part.findings)
        out.coverage.scanned.extend(part.coverage.scanned)
        out.coverage.not_scanned.extend(part.coverage.not_scanned)
        out.tool_versions.update(part.tool_versions)
        for key, value in part.raw.items():
            # Per-file maps (js-static's skipped libraries) join up across shards.
            mine = out.raw.get(key)
            out.raw[key] = (
                {**mine, **value} if isinstance(mine, dict) and isinstance(value, dict) else value
            )
        out.artifacts.update(part.artifacts)
        if order.index(part.status) > order.index(out.status):
            out.status = part.status
        if part.error:
            errors.append(part.error)
    out.error = "; ".join(errors)[:500] or None
    return out


@dataclass
class _Worker:
    pid: int  # a child of the zygote, which reaps it
    conn: Connection

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            os.kill(self.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        # Gone, not just dying: the zygote ignores SIGCHLD, so the kernel reaps it at once.
        while Path(f"/proc/{self.pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        with contextlib.suppress(OSError):
            self.conn.close()


class ZygoteError(RuntimeError):
    """The zygote could not fork a worker (it died, or never started)."""


class _Zygote:
    """The process that forks workers: started once, it imports the analysis modules."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        with theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "scanner.stagepool", "--zygote", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,  # the CLI's stdout is the report
                # Out of the terminal's process group: a Ctrl-C is ours to handle (the
                # zygote would otherwise die mid-start-up and print a fatal error). It and
                # its workers exit when our ends of their sockets close.
                start_new_session=True,
            )
        self.control = ours
        self._lock = threading.Lock()

    def fork(self) -> _Worker:
        ours, theirs = socket.socketpair()
        try:
            with self._lock:
                socket.send_fds(self.control, [b"F"], [theirs.fileno()])
                answer = self.control.recv(16)
        except OSError as exc:
            ours.close()
            raise ZygoteError(f"the zygote is gone: {exc}") from None
        finally:
            theirs.close()
        if len(answer) != 8:
            ours.close()
            raise ZygoteError(f"the zygote did not fork a worker (exit code {self.process.poll()})")
        conn = Connection(os.dup(ours.fileno()))
        ours.close()
        return _Worker(int.from_bytes(answer, "little"), conn)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.control.close()
        with contextlib.suppress(OSError):
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)


@dataclass
class StagePool:
    """Up to ``size`` warm workers; a task past its deadline kills its worker."""

    size: int
    _idle: queue.Queue[_Worker] = field(default_factory=queue.Queue)
    _started: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _all: list[_Worker] = field(default_factory=list)
    _pid: int = field(default_factory=os.getpid)
    _zygote: _Zygote | None = None

    def run(self, task: StageTask, deadline: float, name: str, version: int) -> StageResult:
        """The task's result, or TIMEOUT (worker killed) or ERROR (worker died)."""
        worker = self._acquire(deadline)
        if worker is None:
            return _timeout(name, version, "waited for a free worker process until the deadline")
        try:
            worker.conn.send(task)
            if not worker.conn.poll(max(0.0, deadline - time.monotonic())):
                log.warning("stage %s passed its deadline: killing worker %s", name, worker)
                self._discard(worker)
                return _timeout(
                    name, version, "did not finish by the deadline; its process was killed"
                )
            result: StageResult = worker.conn.recv()
        except (EOFError, OSError) as exc:
            self._discard(worker)
            why = f"its worker process died ({type(exc).__name__}: {exc})"
            return StageResult(name, version, StageStatus.ERROR, error=why[:500])
        self._idle.put(worker)
        return result

    def warm(self) -> None:
        """Start the workers now, in the background, while the caller unpacks the bundle.

        Stages are built by the worker that first runs them, not here: building every
        stage in every worker doubled the start-up work of a cold CLI scan."""
        for _ in range(self.size):
            threading.Thread(target=self._prestart, daemon=True).start()

    def _prestart(self) -> None:
        with self._lock:
            if self._started >= self.size:
                return
            self._started += 1
        try:
            worker = self._spawn()
        except Exception:
            with self._lock:
                self._started -= 1
            return  # the same failure is recorded when a stage needs a worker
        self._idle.put(worker)

    def _acquire(self, deadline: float) -> _Worker | None:
        with contextlib.suppress(queue.Empty):
            return self._idle.get_nowait()
        with self._lock:
            spawn = self._started < self.size
            if spawn:
                self._started += 1
        if spawn:
            try:
                return self._spawn()
            except BaseException:
                with self._lock:
                    self._started -= 1
                raise
        try:
            return self._idle.get(timeout=max(0.001, deadline - time.monotonic()))
        except queue.Empty:
            return None

    def _spawn(self) -> _Worker:
        with self._lock:
            if self._zygote is None or self._zygote.process.poll() is not None:
                if self._zygote is not None:
                    self._zygote.close()
                self._zygote = _Zygote()
            zygote = self._zygote
        worker = zygote.fork()
        with self._lock:
            self._all.append(worker)
        return worker

    def _discard(self, worker: _Worker) -> None:
        worker.kill()
        with self._lock:
            self._started -= 1
            if worker in self._all:
                self._all.remove(worker)

    def close(self) -> None:
        """Kill every worker (at exit; a scan in flight then fails closed)."""
        if os.getpid() != self._pid:
            return  # a forked copy of the pool owns no workers
        with self._lock:
            workers, self._all = list(self._all), []
            self._started = 0
            zygote, self._zygote = self._zygote, None
        for w in workers:
            w.kill()
        if zygote is not None:
            zygote.close()

    def pids(self) -> list[int]:
        with self._lock:
            return [w.pid for w in self._all]


_POOLS: dict[tuple[int, int], StagePool] = {}
_POOLS_LOCK = threading.Lock()


def shared_pool(size: int) -> StagePool:
    """One pool per process and size (a forked child gets its own, never its parent's)."""
    key = (os.getpid(), size)
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            pool = _POOLS[key] = StagePool(size)
            atexit.register(pool.close)
        return pool


def _timeout(name: str, version: int, why: str) -> StageResult:
    return StageResult(name, version, StageStatus.TIMEOUT, error=why)


# --- in the worker process -------------------------------------------------------------


def zygote_main(control: socket.socket) -> None:
    """Import the analysis modules, then fork a worker for each socket the parent sends,
    until it closes the control socket. Single-threaded, so a fork copies nothing half-done."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and kills us
    # Exited workers are reaped by the kernel: a killed one leaves no zombie behind.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    for module in PRELOAD:
        importlib.import_module(module)
    while True:
        try:
            _, fds, _, _ = socket.recv_fds(control, 1, 1)
        except OSError:
            return
        if not fds:
            return  # the parent is gone
        pid = os.fork()
        if pid == 0:
            control.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            code = 0
            try:
                worker_main(Connection(fds[0]))
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(fds[0])
        control.sendall(pid.to_bytes(8, "little"))


def worker_main(conn: Connection) -> None:
    """Build stages once, then run tasks until the parent closes the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and kills us
    for module in PRELOAD:
        importlib.import_module(module)  # done already in the zygote: a dict lookup
    built: dict[tuple[str, Settings], Stage | Exception] = {}
    while True:
        try:
            task: StageTask = conn.recv()
        except (EOFError, OSError):
            return
        conn.send(_run_task(task, built))


def _run_task(task: StageTask, built: dict[tuple[str, Settings], Stage | Exception]) -> StageResult:
    key = (_qualname(task.factory), task.settings)
    if key not in built:
        try:
            built[key] = task.factory(task.settings)
        except Exception as exc:
            built[key] = exc
    stage = built[key]
    owner = getattr(task.factory, "__self__", None)
    name, version = str(getattr(owner, "name", "stage")), int(getattr(owner, "version", 0))
    if isinstance(stage, Exception):
        return StageResult(name, version, StageStatus.ERROR, error=_describe(stage))
    workspace = Workspace(task.root, task.files, task.bundle)
    if task.only is not None:
        workspace = workspace.subset(task.only)
    start = time.perf_counter()
    try:
        result = stage.run(workspace)
    except Exception as exc:
        log.warning("stage %s crashed: %s", name, _describe(exc))
        result = StageResult(name, version, StageStatus.ERROR, error=_describe(exc))
    result.duration_ms = (time.perf_counter() - start) * 1000
    return result


def _qualname(factory: StageFactory) -> str:
    owner = getattr(factory, "__self__", factory)
    return f"{getattr(owner, '__module__', '')}.{getattr(owner, '__qualname__', repr(owner))}"


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or "no message"
    return f"{type(exc).__name__}: {text}"[:500]


if __name__ == "__main__":
    if sys.argv[1] == "--zygote":
        zygote_main(socket.socket(fileno=int(sys.argv[2])))
    else:
        worker_main(Connection(int(sys.argv[1])))
