"""Run one function in a child process under limits the OS enforces, not the code.

The child is a fresh interpreter (``python -I -S``, then ``scanner.confinement``) started with
exec, never a fork of the caller: the service's workers have threads, and forking a
threaded process can deadlock the child. Before it touches its input the child caps its
own CPU seconds, address space and file size with setrlimit; the parent kills the
child's whole session when the wall clock runs out. The child gets no environment, so
no secret of the service is in a process that parses hostile bytes.

The request and the answer are JSON on the child's stdin and stdout.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import json
import math
import os
import resource
import signal
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import subprocess

# The child's exit status when it ran out of memory (MemoryError under RLIMIT_AS).
EXIT_MEMORY = 86
# The child skips site (-S, a fifth of its start-up) and finds the package by path.
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)
_BOOT = "import sys; sys.path.insert(0, sys.argv[1]); import scanner.confinement as c; c.main()"
_STDERR_TAIL = 400


@dataclass(frozen=True)
class Budget:
    # Wall-clock seconds; CPU seconds are capped at the same number, rounded up.
    seconds: float
    # Address space of the child, interpreter included.
    memory_bytes: int
    # The largest file the child may write.
    file_bytes: int


class BudgetExceededError(Exception):
    """The child ran out of time or memory: killed, or refused by the OS."""


class ChildFailedError(Exception):
    """The child raised, died, or answered something that is not an answer."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


def run_confined(entry: str, payload: Any, budget: Budget) -> Any:
    """Call ``module:function`` with ``payload`` in a confined child; return its answer."""
    import subprocess  # the parent's side only: the child starts faster without it

    request = {"entry": entry, "payload": payload, "sys_path": sys.path, "budget": asdict(budget)}
    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", _BOOT, _PACKAGE_ROOT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, killed as one
        env={"LC_ALL": "C.UTF-8"},
    )
    try:
        out, err = proc.communicate(json.dumps(request).encode(), timeout=budget.seconds)
    except subprocess.TimeoutExpired:
        _kill(proc)
        raise BudgetExceededError(f"took longer than {budget.seconds:g} s") from None
    except BaseException:
        _kill(proc)
        raise
    return _answer(proc.returncode, out, err, budget)


def _answer(code: int, out: bytes, err: bytes, budget: Budget) -> Any:
    if code == EXIT_MEMORY:
        raise BudgetExceededError(f"needed more than {budget.memory_bytes // 2**20} MiB")
    if code in (-signal.SIGXCPU, -signal.SIGKILL):
        # SIGKILL we did not send: the hard CPU limit, or the kernel out of memory.
        raise BudgetExceededError(f"used more than {math.ceil(budget.seconds)} s of CPU")
    tail = err.decode("utf-8", "replace").strip()[-_STDERR_TAIL:]
    if code != 0:
        raise ChildFailedError(f"the child exited with status {code}: {tail or 'no output'}")
    try:
        reply = json.loads(out)
    except ValueError:
        raise ChildFailedError(f"the child answered no JSON: {tail or 'no output'}") from None
    if "error" in reply:
        # Python ignores SIGXFSZ: RLIMIT_FSIZE shows up as EFBIG from the write.
        if reply.get("errno") == errno.EFBIG:
            raise BudgetExceededError(f"wrote a file over {budget.file_bytes} bytes")
        raise ChildFailedError(str(reply["error"]), reply.get("errno"))
    return reply["value"]


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()  # reap it and close the pipes


def _limit(budget: Budget) -> None:
    cpu = max(1, math.ceil(budget.seconds))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (budget.memory_bytes, budget.memory_bytes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (budget.file_bytes, budget.file_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # SIGXCPU would dump core


def main() -> None:
    """The child: read the request, import the entry point, limit itself, run, answer."""
    request = json.loads(sys.stdin.buffer.read())
    sys.path[1:] = request["sys_path"]  # the caller's, after the package root
    module, _, name = request["entry"].partition(":")
    function = getattr(importlib.import_module(module), name)
    _limit(Budget(**request["budget"]))
    reply: dict[str, Any]
    try:
        reply = {"value": function(request["payload"])}
    except MemoryError:
        os._exit(EXIT_MEMORY)  # no room to say more
    except Exception as exc:
        reply = {
            "error": f"{type(exc).__name__}: {exc}"[:500],
            "errno": exc.errno if isinstance(exc, OSError) else None,
        }
    try:
        sys.stdout.write(json.dumps(reply))
        sys.stdout.flush()
    except MemoryError:
        os._exit(EXIT_MEMORY)


if __name__ == "__main__":
    main()
