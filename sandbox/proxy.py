"""The recording proxy: every byte a detonated page, its workers and its sockets send.

The browser context is configured to reach the network only through this proxy, and the
browser runs in a network namespace where the proxy's socket is the only thing listening
(sandbox.isolation). The proxy never connects anywhere: it reads each request whole
(HTTPS included: it terminates TLS with its own certificate), hands it to the
detonation's exchange, which records it and decides the answer, and for WebSockets
accepts the upgrade and records what the page sends.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from sandbox.tls import server_context

MAX_HEAD = 64 * 1024  # request line and headers
MAX_BODY = 16 * 1024 * 1024  # read and counted; only the start is kept
KEEP_BODY = 1024 * 1024  # searched whole for planted secrets (the trace keeps less)
# Bytes one detonation may send in all: past this its connections are cut (and counted).
MAX_BYTES = 256 * 1024 * 1024
MAX_CONNECTIONS = 256  # per detonation; past this, connections are counted and closed
IDLE_TIMEOUT = 10.0
MAX_FRAMES = 200  # WebSocket messages kept per connection
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class ProxyProtocolError(Exception):
    """The browser sent something that is not HTTP/1.1 we can read; the connection ends."""


@dataclass
class ProxyRequest:
    method: str
    url: str  # absolute: scheme://host[:port]/path?query
    headers: list[tuple[str, str]]
    body: bytes  # the first KEEP_BODY bytes
    body_size: int
    tunnel: str | None = None  # host:port of the CONNECT it came through

    def header(self, name: str) -> str:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), "")

    @property
    def websocket(self) -> bool:
        return self.header("upgrade").lower() == "websocket"


@dataclass
class ProxyResponse:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)


class Exchange(Protocol):
    """What a detonation does with what the page sends (called from proxy threads)."""

    def respond(self, request: ProxyRequest) -> ProxyResponse | None:
        """The answer, or None to drop the connection (the page sees a network error)."""

    def message(self, request: ProxyRequest, data: str) -> None:
        """One WebSocket message the page sent on the socket ``request`` opened."""

    def tunnel(self, target: str) -> None:
        """A CONNECT to ``target`` (host:port): every connection attempt is evidence."""

    def refused(self, why: str) -> None:
        """A connection the proxy could not read (counted, never silent)."""


class RecordingProxy:
    """One listening socket for one detonation; ``close()`` ends every connection."""

    def __init__(self, listener: socket.socket, exchange: Exchange) -> None:
        self.listener = listener
        self.exchange = exchange
        self.port = int(listener.getsockname()[1])
        self._lock = threading.Lock()
        self._open: set[_Connection] = set()
        self._accepted = 0
        self.received = _Tally(MAX_BYTES)
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name="gatehouse-proxy", daemon=True)
        self._thread.start()

    @property
    def server(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns = list(self._open)
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for conn in conns:
            conn.close()
        self._thread.join(timeout=5)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                if self._closed:
                    conn.close()
                    return
                self._accepted += 1
                if self._accepted > MAX_CONNECTIONS:
                    conn.close()
                    self.exchange.refused("too many connections")
                    continue
                connection = _Connection(conn, self.exchange, self.received)
                self._open.add(connection)
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: _Connection) -> None:
        try:
            connection.sock.settimeout(IDLE_TIMEOUT)
            connection.run()
        except ssl.SSLError as exc:
            # The browser first tries our certificate for real, rejects it, then goes on
            # with errors ignored: that rejection is the handshake working as configured.
            if not self._closed and "CERTIFICATE_UNKNOWN" not in str(exc):
                self.exchange.refused(f"{type(exc).__name__}: {exc}"[:200])
        except (OSError, ProxyProtocolError, ValueError) as exc:
            if not self._closed:
                self.exchange.refused(f"{type(exc).__name__}: {exc}"[:200])
        finally:
            with self._lock:
                self._open.discard(connection)
            connection.close()


class _Connection:
    """One client connection: plain requests, or a CONNECT tunnel with or without TLS."""

    def __init__(self, sock: socket.socket, exchange: Exchange, tally: _Tally) -> None:
        self.sock: socket.socket = sock
        self.exchange = exchange
        self.tally = tally
        self.buffer = b""
        self.tunnel: str | None = None
        self.scheme = "http"

    def close(self) -> None:
        """Close whichever socket the connection is on now (TLS wraps replace it)."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()

    def run(self) -> None:
        while True:
            head = self._read_head()
            if head is None:
                return
            method, target, headers = head
            if method == "CONNECT":
                self._open_tunnel(target)
                continue
            request = self._request(method, target, headers)
            if not self._answer(request):
                return

    def _open_tunnel(self, target: str) -> None:
        if self.tunnel is not None:
            raise ProxyProtocolError("CONNECT inside a tunnel")
        self.tunnel = target
        self.exchange.tunnel(target)
        if self.buffer:
            raise ProxyProtocolError("data sent before the tunnel was established")
        self.sock.sendall(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        # Peek, not read: the TLS layer must see the ClientHello from its first byte.
        first = self.sock.recv(1, socket.MSG_PEEK)
        if first == b"\x16":  # a TLS ClientHello: terminate TLS to read what is inside
            self.sock = server_context().wrap_socket(self.sock, server_side=True)
            self.scheme = "https"

    def _request(self, method: str, target: str, headers: list[tuple[str, str]]) -> ProxyRequest:
        if self.tunnel is None:
            url = target  # absolute form, as a browser sends it to a proxy
        else:
            host = next((v for k, v in headers if k.lower() == "host"), self.tunnel)
            url = f"{self.scheme}://{host}{target if target.startswith('/') else '/' + target}"
        body, size = self._read_body(headers)
        return ProxyRequest(method, url, headers, body, size, self.tunnel)

    def _answer(self, request: ProxyRequest) -> bool:
        """Send the exchange's answer; False when the connection is done."""
        response = self.exchange.respond(request)
        if response is None:
            return False
        if request.websocket and response.status == 101:
            self._accept_websocket(request)
            return False
        head = [f"HTTP/1.1 {response.status} {_reason(response.status)}"]
        head += [f"{k}: {v}" for k, v in response.headers]
        head.append(f"Content-Length: {len(response.body)}")
        self.sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.body)
        return request.header("connection").lower() != "close"

    def _accept_websocket(self, request: ProxyRequest) -> None:
        key = request.header("sec-websocket-key").encode("latin-1")
        accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest()).decode()  # noqa: S324 - the protocol's own hash
        self.sock.sendall(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            ).encode()
        )
        kept = 0
        for data in self._frames():
            if kept < MAX_FRAMES:
                self.exchange.message(request, data)
                kept += 1

    def _frames(self) -> _FrameIter:
        return _FrameIter(self._read_exact, self._consume)

    # --- reading ---------------------------------------------------------------

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.tally.add(len(chunk))
        self.buffer += chunk
        return True

    def _consume(self, n: int, keep: int) -> bytes:
        """Read ``n`` bytes, keeping the first ``keep``: a large body streams through
        (never a growing buffer), and only what is searched stays in memory."""
        kept = bytearray(self.buffer[: min(n, keep)])
        taken = min(n, len(self.buffer))
        self.buffer = self.buffer[taken:]
        left = n - taken
        while left > 0:
            chunk = self.sock.recv(min(65536, left))
            if not chunk:
                raise ProxyProtocolError("connection closed mid-message")
            self.tally.add(len(chunk))
            if len(kept) < keep:
                kept += chunk[: keep - len(kept)]
            left -= len(chunk)
        return bytes(kept)

    def _read_exact(self, n: int) -> bytes:
        while len(self.buffer) < n:
            if not self._fill():
                raise ProxyProtocolError("connection closed mid-message")
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def _read_head(self) -> tuple[str, str, list[tuple[str, str]]] | None:
        while b"\r\n\r\n" not in self.buffer:
            if len(self.buffer) > MAX_HEAD:
                raise ProxyProtocolError("request head too large")
            try:
                if not self._fill():
                    return None
            except TimeoutError:
                return None  # an idle keep-alive connection
        raw, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise ProxyProtocolError(f"not an HTTP/1.x request line: {lines[0][:80]!r}")
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise ProxyProtocolError("malformed header line")
            headers.append((name.strip(), value.strip()))
        return parts[0].upper(), parts[1], headers

    def _read_body(self, headers: list[tuple[str, str]]) -> tuple[bytes, int]:
        lowered = {k.lower(): v for k, v in headers}
        if "chunked" in lowered.get("transfer-encoding", "").lower():
            return self._read_chunked()
        length = int(lowered.get("content-length", "0") or 0)
        if length < 0 or length > MAX_BODY:
            raise ProxyProtocolError(f"body of {length} bytes")
        return self._consume(length, KEEP_BODY), length

    def _read_chunked(self) -> tuple[bytes, int]:
        kept, size = b"", 0
        while True:
            line = self._read_line()
            chunk = int(line.split(b";")[0].strip() or b"0", 16)
            if chunk == 0:
                while self._read_line():  # trailers, up to the blank line
                    pass
                return kept, size
            size += chunk
            if size > MAX_BODY:
                raise ProxyProtocolError("chunked body too large")
            kept += self._consume(chunk, KEEP_BODY - len(kept))
            self._read_exact(2)

    def _read_line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            if len(self.buffer) > MAX_HEAD or not self._fill():
                raise ProxyProtocolError("bad chunked encoding")
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line


class _Tally:
    """Bytes received by one proxy, across its connections, against a budget."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        with self._lock:
            self.total += n
            if self.total > self.limit:
                raise ProxyProtocolError(f"the page sent more than {self.limit} bytes")


class _FrameIter:
    """Client WebSocket frames as text, until a close frame or the socket ends."""

    def __init__(self, read: Callable[[int], bytes], consume: Callable[[int, int], bytes]) -> None:
        self.read = read
        self.consume = consume
        self.parts: list[bytes] = []

    def __iter__(self) -> _FrameIter:
        return self

    def __next__(self) -> str:
        while True:
            try:
                b0, b1 = self.read(2)
            except (ProxyProtocolError, OSError, ValueError):
                raise StopIteration from None
            opcode, length = b0 & 0x0F, b1 & 0x7F
            if length == 126:
                length = int.from_bytes(self.read(2), "big")
            elif length == 127:
                length = int.from_bytes(self.read(8), "big")
            if length > MAX_BODY:
                raise StopIteration
            mask = self.read(4) if b1 & 0x80 else b"\0\0\0\0"
            payload = _unmask(self.consume(length, KEEP_BODY), mask)
            if opcode == 0x8:
                raise StopIteration
            if opcode in (0x9, 0xA):
                continue  # ping and pong carry nothing of the page's
            self.parts.append(payload[:KEEP_BODY])
            if b0 & 0x80:  # FIN: the message is whole
                data, self.parts = b"".join(self.parts), []
                return _as_text(data, opcode)


def _unmask(data: bytes, mask: bytes) -> bytes:
    if not data:
        return data
    key = (mask * (len(data) // 4 + 1))[: len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(len(data), "big")


def _as_text(data: bytes, opcode: int) -> str:
    if opcode == 0x2:
        return "[binary] " + data[:2000].decode("utf-8", "replace")
    return data[:KEEP_BODY].decode("utf-8", "replace")


def _reason(status: int) -> str:
    return {101: "Switching Protocols", 200: "OK", 204: "No Content", 404: "Not Found"}.get(
        status, "Status"
    )
