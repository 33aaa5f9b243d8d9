"""One outbound HTTP exchange under a wall-clock deadline that a slow peer cannot stretch.

A socket timeout bounds each read, not the exchange: a peer that trickles a byte per
second, or stalls half-way through its headers, kept a "2 s" call going for 15 s. Here
a watchdog shuts the socket down when the deadline passes, wherever the call is blocked
(TLS handshake, headers, body), and every read is also bounded by the time left.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}
READ_CHUNK = 64 * 1024


class OutboundError(OSError):
    """The exchange failed: unreachable, refused, broken, or past its deadline."""


class DeadlineError(OutboundError):
    """The whole exchange took longer than its deadline (the peer was slow or silent)."""


@dataclass
class _Watchdog:
    """Shuts the socket down at the deadline, from its own thread."""

    deadline: float
    sock: socket.socket | None = None
    fired: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0 or self.fired:
            self.fired = True
            raise DeadlineError("no complete answer before the deadline")
        return left

    def attach(self, sock: socket.socket) -> None:
        with self.lock:
            self.sock = sock
            if self.fired:
                _shutdown(sock)

    def fire(self) -> None:
        with self.lock:
            self.fired = True
            if self.sock is not None:
                _shutdown(self.sock)


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # wakes a recv() blocked in another thread
        sock.shutdown(socket.SHUT_RDWR)


@dataclass
class Reply:
    """A response whose body is read in bounded chunks, each under the deadline."""

    status: int
    headers: Mapping[str, str]
    _response: http.client.HTTPResponse
    _watchdog: _Watchdog

    def chunks(self, size: int = READ_CHUNK) -> Iterator[bytes]:
        while True:
            sock = self._watchdog.sock
            if sock is not None:
                sock.settimeout(self._watchdog.remaining())
            try:
                chunk = self._response.read1(size)
            except (OSError, http.client.HTTPException) as exc:
                self._watchdog.remaining()  # a read cut by the watchdog is a deadline
                raise OutboundError(f"{type(exc).__name__}: {exc}") from None
            self._watchdog.remaining()
            if not chunk:
                return
            yield chunk


@contextmanager
def exchange(
    method: str,
    url: str,
    *,
    timeout: float,
    connect_timeout: float = 5.0,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> Iterator[Reply]:
    """Send one request (no redirects, no proxies) and yield the reply; all within ``timeout``."""
    try:
        parts = urlsplit(url)
        port = parts.port or DEFAULT_PORTS.get(parts.scheme, 0)
    except ValueError:
        raise OutboundError(f"not a well-formed URL: {url}") from None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise OutboundError(f"not an http(s) URL: {url}")
    watchdog = _Watchdog(time.monotonic() + timeout)
    timer = threading.Timer(timeout, watchdog.fire)
    timer.daemon = True
    timer.start()
    conn: http.client.HTTPConnection | None = None
    response: http.client.HTTPResponse | None = None
    try:
        try:
            conn = _connect(parts.scheme, parts.hostname, port, connect_timeout, watchdog)
            target = parts.path or "/"
            if parts.query:
                target += "?" + parts.query
            conn.request(method, target, body=body, headers=dict(headers or {}))
            response = conn.getresponse()
            watchdog.remaining()
        except (OSError, http.client.HTTPException) as exc:
            if isinstance(exc, OutboundError):
                raise
            watchdog.remaining()  # cut by the watchdog: say so, not "connection reset"
            raise OutboundError(f"{type(exc).__name__}: {exc}") from None
        # The caller's own errors (a full disk while saving the body) pass through as they are.
        yield Reply(response.status, dict(response.getheaders()), response, watchdog)
    finally:
        timer.cancel()
        if response is not None:
            response.close()  # it holds the socket once the connection handed it over
        if conn is not None:
            conn.close()


def _connect(
    scheme: str, host: str, port: int, connect_timeout: float, watchdog: _Watchdog
) -> http.client.HTTPConnection:
    sock = socket.create_connection(
        (host, port), timeout=min(connect_timeout, watchdog.remaining())
    )
    try:
        watchdog.attach(sock)
        sock.settimeout(watchdog.remaining())
        conn: http.client.HTTPConnection
        if scheme == "https":
            context = ssl.create_default_context()
            sock = context.wrap_socket(sock, server_hostname=host)
            watchdog.attach(sock)
            conn = http.client.HTTPSConnection(host, port, context=context)
        else:
            conn = http.client.HTTPConnection(host, port)
        conn.sock = sock
        return conn
    except BaseException:
        sock.close()
        raise
