"""Where the browser runs: a network namespace of its own, as an unprivileged user.

A small agent process (``python -m sandbox.isolation``) holds a new network namespace in
which only loopback is up. The recording proxy's listening sockets are made inside it by
the agent and handed to us over a unix socket, so the proxy is the only thing the browser
can reach. The Playwright driver (and with it Chromium) is started inside the namespace
through a wrapper named by ``PLAYWRIGHT_NODEJS_PATH``:

- started as root, the wrapper drops to the sandbox user (``setpriv``) with no
  capabilities and a clean environment, so Chromium runs its own sandbox;
- started as another user, the namespace comes with a user namespace of its own
  (``unshare --user --map-current-user``) and the driver keeps that user's identity.

Nothing of Gatehouse's environment (database URLs, secrets) reaches the browser.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SANDBOX_USER = "gatehouse-sandbox"
HOME_PREFIX, DRIVER_PREFIX = "gatehouse-browser-", "gatehouse-driver-"
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
# The driver's own variables are passed on; everything else is dropped.
_DRIVER_VARIABLES = ("PW_LANG_NAME", "PW_LANG_NAME_VERSION", "PW_CLI_DISPLAY_VERSION")
_driver_start = threading.Lock()


class IsolationError(RuntimeError):
    """The browser cannot be isolated here; detonating anyway would not be contained."""


@dataclass(frozen=True)
class Identity:
    uid: int
    gid: int
    name: str


def sandbox_identity(user: str = SANDBOX_USER) -> Identity | None:
    """Who the browser runs as: the sandbox user when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise IsolationError(
            f"no user {user!r} to run the browser as (scripts/setup creates it)"
        ) from None
    if entry.pw_uid == 0:
        raise IsolationError(f"the sandbox user {user!r} must not be root")
    return Identity(entry.pw_uid, entry.pw_gid, user)


class Jail:
    """A network namespace with only loopback, held by an agent process, and the driver
    wrapper that puts the Playwright driver (and Chromium) inside it."""

    def __init__(self, node: Path, user: str = SANDBOX_USER) -> None:
        self.identity = sandbox_identity(user)
        for tool in ("unshare", "nsenter") + (("setpriv",) if self.identity else ()):
            if shutil.which(tool) is None:
                raise IsolationError(f"{tool} (util-linux) is not installed")
        if self.identity is not None:
            _readable_by_others(node)
        self._lock = threading.Lock()
        self._control, agent_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        unshare = ["unshare", "--net"]
        if self.identity is None:
            unshare = ["unshare", "--user", "--map-current-user", "--net", "--keep-caps"]
        try:
            self.agent = subprocess.Popen(
                [*unshare, sys.executable, "-m", "sandbox.isolation", str(agent_end.fileno())],
                pass_fds=(agent_end.fileno(),),
                stdin=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,  # killed by us, not by a terminal's Ctrl-C
                env=_agent_environment(),
            )
        finally:
            agent_end.close()
        ready = self._control.recv(16)
        if ready != b"ready":
            err = self.agent.stderr.read().decode(errors="replace") if self.agent.stderr else ""
            self.agent.kill()
            raise IsolationError(f"could not make a network namespace: {err.strip()[:300]}")
        net = Path(f"/proc/{self.agent.pid}/ns/net").stat()
        self.netns = (net.st_dev, net.st_ino)
        # Named with our pid, so remove_orphans() can tell them from a live session's.
        self.home = Path(tempfile.mkdtemp(prefix=f"{HOME_PREFIX}{os.getpid()}-"))
        self.wrapper_dir = Path(tempfile.mkdtemp(prefix=f"{DRIVER_PREFIX}{os.getpid()}-"))
        if self.identity is not None:
            os.chown(self.home, self.identity.uid, self.identity.gid)
        self.wrapper = self._write_wrapper(node)

    def listen(self) -> socket.socket:
        """A TCP socket listening on 127.0.0.1 inside the namespace, for one proxy."""
        with self._lock:
            self._control.sendall(b"L")
            _, fds, _, _ = socket.recv_fds(self._control, 16, 1)
        if not fds:
            raise IsolationError("the namespace agent did not hand over a socket")
        return socket.socket(fileno=fds[0])

    def members(self) -> list[int]:
        """Every process of this jail: those in its network namespace (the agent, the
        driver, the browser) and all their descendants (renderers sit in namespaces of
        their own, made by Chromium's sandbox). Nothing of any other jail."""
        children: dict[int, list[int]] = {}
        inside: list[int] = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            try:
                stat_line = (entry / "stat").read_text()
                net = (entry / "ns" / "net").stat()
            except OSError:
                net = None
                try:
                    stat_line = (entry / "stat").read_text()
                except OSError:
                    continue
            fields = stat_line[stat_line.rindex(")") + 2 :].split()
            if fields[0] == "Z":
                continue  # exited, waiting to be reaped
            children.setdefault(int(fields[1]), []).append(pid)
            if net is not None and (net.st_dev, net.st_ino) == self.netns:
                inside.append(pid)
        found, todo = set(inside), list(inside)
        while todo:
            for child in children.get(todo.pop(), []):
                if child not in found:
                    found.add(child)
                    todo.append(child)
        return sorted(found)

    def kill(self) -> None:
        """SIGKILL everything in the jail: every call blocked on the browser returns."""
        for pid in self.members():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def cpu_seconds(self) -> float:
        """CPU time used so far by the jail's processes (a page's workers run in them)."""
        ticks = 0
        for pid in self.members():
            with contextlib.suppress(OSError, ValueError, IndexError):
                line = Path(f"/proc/{pid}/stat").read_text()
                fields = line[line.rindex(")") + 2 :].split()
                ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def memory_bytes(self) -> int:
        """The jail's memory as proportional set size: Chromium's processes share much of
        theirs, and summing resident sizes would count it once per process."""
        total = 0
        for pid in self.members():
            with contextlib.suppress(OSError, ValueError, IndexError):
                rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
                total += int(rollup.split("\nPss:")[1].split()[0]) * 1024
        return total

    @contextlib.contextmanager
    def driver(self) -> Iterator[None]:
        """While starting Playwright, its driver is the wrapper (read once, at start)."""
        with _driver_start:
            before = os.environ.get("PLAYWRIGHT_NODEJS_PATH")
            os.environ["PLAYWRIGHT_NODEJS_PATH"] = str(self.wrapper)
            try:
                yield
            finally:
                if before is None:
                    os.environ.pop("PLAYWRIGHT_NODEJS_PATH", None)
                else:
                    os.environ["PLAYWRIGHT_NODEJS_PATH"] = before

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._control.close()
        with contextlib.suppress(OSError):
            self.agent.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.agent.wait(timeout=5)
        if self.agent.stderr:
            self.agent.stderr.close()
        shutil.rmtree(self.home, ignore_errors=True)
        shutil.rmtree(self.wrapper_dir, ignore_errors=True)

    def _write_wrapper(self, node: Path) -> Path:
        ns = f"/proc/{self.agent.pid}/ns"
        if self.identity is None:
            enter = f"nsenter --user={ns}/user --net={ns}/net --preserve-credentials --"
        else:
            i = self.identity
            enter = (
                f"nsenter --net={ns}/net -- setpriv --reuid={i.uid} --regid={i.gid}"
                " --clear-groups --inh-caps=-all --bounding-set=-all --no-new-privs --"
            )
        passed = " ".join(f'{v}="${{{v}}}"' for v in _DRIVER_VARIABLES)
        script = (
            "#!/bin/sh\n"
            "# Written by sandbox.isolation: the Playwright driver, jailed.\n"
            f"exec {enter} env -i PATH=/usr/bin:/bin HOME={self.home} TMPDIR={self.home}"
            f' LANG=C.UTF-8 {passed} {node} "$@"\n'
        )
        path = self.wrapper_dir / "node"
        path.write_text(script)
        path.chmod(stat.S_IRWXU)
        return path


def _readable_by_others(path: Path) -> None:
    """The driver runs as the sandbox user: it must be able to reach and run it."""
    for part in [*reversed(path.resolve().parents), path.resolve()]:
        mode = part.stat().st_mode
        needed = stat.S_IXOTH | (stat.S_IROTH if part.is_file() else 0)
        if mode & needed != needed:
            raise IsolationError(
                f"the sandbox user cannot run {path}: {part} is not readable by other users"
                " (install Gatehouse where other users can read it)"
            )


def remove_orphans(directory: Path | None = None) -> int:
    """Remove jail dirs (browser homes, driver wrappers) whose process is gone: a worker
    killed with SIGKILL never closes its session."""
    removed = 0
    for path in Path(directory or tempfile.gettempdir()).glob("gatehouse-[bd]*-*-*"):
        for prefix in (HOME_PREFIX, DRIVER_PREFIX):
            pid = path.name.removeprefix(prefix).split("-", 1)[0]
            if path.name.startswith(prefix) and pid.isdigit() and not Path(f"/proc/{pid}").exists():
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
    return removed


def _agent_environment() -> dict[str, str]:
    # The agent runs this module with our interpreter; it needs nothing else of ours.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


def _bring_up_loopback() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH14s", b"lo", 0, b"")
        flags = struct.unpack("16sH14s", fcntl.ioctl(s, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sH14s", b"lo", flags | _IFF_UP, b""))


def _agent(control_fd: int) -> None:
    """Inside the new namespace: bring loopback up, then make listening sockets on request."""
    control = socket.socket(fileno=control_fd)
    _bring_up_loopback()
    control.sendall(b"ready")
    while control.recv(1) == b"L":
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        socket.send_fds(control, [b"ok"], [listener.fileno()])
        listener.close()


if __name__ == "__main__":
    _agent(int(sys.argv[1]))
