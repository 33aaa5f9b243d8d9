"""Talking to clamd: a small client protocol, the real adapter, and its errors."""

from __future__ import annotations

import io
import socket
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from scanner.config import Settings


class ClamdUnavailableError(RuntimeError):
    """clamd cannot be reached or hung up; transient, so workers retry it."""


@dataclass(frozen=True)
class ClamdVerdict:
    status: str  # "OK" | "FOUND" | "ERROR" | anything else clamd says
    signature: str | None


class ClamdClient(Protocol):
    def ping(self) -> None: ...

    def version(self) -> str: ...

    def scan_bytes(self, data: bytes) -> ClamdVerdict: ...


@lru_cache(maxsize=1)
def _sockets() -> tuple[type[Any], type[Any]]:
    """clamd's socket classes, fixed; made on first use, since the package imports
    pkg_resources for its version string (0.3 s at every start, refused bundles too)."""
    import clamd

    class UnixSocket(clamd.ClamdUnixSocket):  # type: ignore[misc]
        """clamd 1.0.2 leaks the socket when connect fails and sets the timeout only after it."""

        def _init_socket(self) -> None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(self.unix_socket)
            except OSError as exc:
                sock.close()
                raise clamd.ConnectionError(self._error_message(exc)) from None
            self.clamd_socket = sock

    class NetworkSocket(clamd.ClamdNetworkSocket):  # type: ignore[misc]
        """The same fix for TCP, where a connect without a timeout can hang for minutes."""

        def _init_socket(self) -> None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect((self.host, self.port))
            except OSError as exc:
                sock.close()
                raise clamd.ConnectionError(self._error_message(exc)) from None
            self.clamd_socket = sock

    return UnixSocket, NetworkSocket


class SocketClamdClient:
    """The `clamd` package over a unix socket or TCP, one INSTREAM per file."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def _connect(self) -> Any:
        s = self._settings
        unix, network = _sockets()
        if s.clamd_tcp:
            host, _, port = s.clamd_tcp.rpartition(":")
            return network(host or "127.0.0.1", int(port), timeout=s.clamd_timeout)
        return unix(str(s.clamd_socket_path), timeout=s.clamd_timeout)

    def ping(self) -> None:
        import clamd

        try:
            reply = self._connect().ping()
        except (clamd.ConnectionError, OSError) as exc:
            raise ClamdUnavailableError(f"clamd is not reachable: {exc}") from None
        if reply != "PONG":
            raise ClamdUnavailableError(f"clamd answered PING with {reply!r}")

    def version(self) -> str:
        import clamd

        try:
            return str(self._connect().version())
        except (clamd.ConnectionError, OSError) as exc:
            raise ClamdUnavailableError(f"clamd is not reachable: {exc}") from None

    def scan_bytes(self, data: bytes) -> ClamdVerdict:
        import clamd

        try:
            reply = self._connect().instream(io.BytesIO(data))
        except clamd.BufferTooLongError:
            return ClamdVerdict("ERROR", "INSTREAM size limit exceeded")
        # After a size-limit error clamd closes the socket and the client sees a broken pipe.
        except (clamd.ConnectionError, OSError) as exc:  # broken pipe, reset, timeout
            raise ClamdUnavailableError(f"clamd connection failed during a scan: {exc}") from None
        status, signature = reply.get("stream", ("ERROR", "no stream result"))
        return ClamdVerdict(str(status), str(signature) if signature else None)
