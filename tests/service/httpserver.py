"""A real HTTP server on loopback that records requests and answers as told."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Behaviour:
    status: int = 200
    body: bytes = b"ok"
    delay: float = 0.0
    location: str | None = None
    # Seconds between body bytes: a peer that keeps every read alive but never finishes.
    trickle: float = 0.0
    # Seconds to stall after the status line, half-way through the headers.
    stall_in_headers: float = 0.0
    requests: list[Recorded] = field(default_factory=list)


@contextmanager
def serving(behaviour: Behaviour) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            behaviour.requests.append(
                Recorded(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body
                )
            )
            if behaviour.delay:
                time.sleep(behaviour.delay)
            self.send_response(behaviour.status)
            if behaviour.stall_in_headers:
                self.flush_headers()  # the status line goes out, the rest does not
                time.sleep(behaviour.stall_in_headers)
            if behaviour.location:
                self.send_header("Location", behaviour.location)
            self.send_header("Content-Length", str(len(behaviour.body)))
            self.end_headers()
            if not behaviour.trickle:
                self.wfile.write(behaviour.body)
                return
            self.wfile.flush()
            for byte in behaviour.body:
                try:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                except OSError:  # the client gave up, as it should
                    return
                time.sleep(behaviour.trickle)

        do_GET = do_POST = _answer  # noqa: N815 - http.server's naming

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
