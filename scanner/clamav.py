"""Talking to clamd: a small client protocol, the real adapter, and its errors."""

from __future__ import annotations

import io
import socket
from dataclasses import dataclass
from typing import Protocol

import clamd

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


class SocketClamdClient:
    """The `clamd` package over a unix socket or TCP, one INSTREAM per file."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def _connect(self) -> clamd.ClamdUnixSocket | clamd.ClamdNetworkSocket:
        s = self._settings
        if s.clamd_tcp:
            host, _, port = s.clamd_tcp.rpartition(":")
            return clamd.ClamdNetworkSocket(host or "127.0.0.1", int(port), timeout=s.clamd_timeout)
        return clamd.ClamdUnixSocket(str(s.clamd_socket_path), timeout=s.clamd_timeout)

    def ping(self) -> None:
        try:
            reply = self._connect().ping()
        except (clamd.ConnectionError, OSError) as exc:
            raise ClamdUnavailableError(f"clamd is not reachable: {exc}") from None
        if reply != "PONG":
            raise ClamdUnavailableError(f"clamd answered PING with {reply!r}")

    def version(self) -> str:
        try:
            return str(self._connect().version())
        except (clamd.ConnectionError, OSError) as exc:
            raise ClamdUnavailableError(f"clamd is not reachable: {exc}") from None

    def scan_bytes(self, data: bytes) -> ClamdVerdict:
        try:
            reply = self._connect().instream(io.BytesIO(data))
        except clamd.BufferTooLongError:
            return ClamdVerdict("ERROR", "INSTREAM size limit exceeded")
        # After a size-limit error clamd closes the socket and the client sees a broken pipe.
        except (clamd.ConnectionError, BrokenPipeError, ConnectionResetError, socket.timeout, OSError) as exc:
            raise ClamdUnavailableError(f"clamd connection failed during a scan: {exc}") from None
        status, signature = reply.get("stream", ("ERROR", "no stream result"))
        return ClamdVerdict(str(status), str(signature) if signature else None)
