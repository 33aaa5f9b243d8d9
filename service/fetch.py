"""Outbound HTTP with the guards a scanner needs: allowlisted origins, caps, deadlines."""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import urlsplit

from service.outbound import DeadlineError, OutboundError, exchange

CHUNK = 64 * 1024


class FetchError(Exception):
    """The bundle could not be fetched; ``permanent`` says whether retrying can help."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


def origin_of(url: str) -> str:
    """``scheme://host[:port]``, or "" for anything that is not a well-formed http(s) URL."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a port out of range or not a number, a broken [IPv6]: not ours
        return ""
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return ""
    default = {"http": 80, "https": 443}[parts.scheme]
    host = parts.hostname.lower()
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def allowed(url: str, origins: tuple[str, ...]) -> bool:
    """Exact origin match; userinfo is refused since it can disguise the real host."""
    origin = origin_of(url)
    if not origin or "@" in urlsplit(url).netloc:
        return False
    return bool(origin) and origin in {origin_of(o + "/") for o in origins}


def fetch_bundle(
    url: str,
    dest: Path,
    *,
    origins: tuple[str, ...],
    max_bytes: int,
    expected_sha256: str,
    timeout: float,
) -> int:
    """Stream ``url`` into ``dest``; refuse other origins, redirects, excess and bad hashes."""
    if not allowed(url, origins):
        raise FetchError(f"{url} is not on a configured registry origin", permanent=True)
    digest = hashlib.sha256()
    size = 0
    try:
        # No redirects: a 3xx could point anywhere, including inside our network.
        with exchange("GET", url, timeout=timeout) as resp:
            if resp.status in {404, 410} or 300 <= resp.status < 400:
                raise FetchError(f"{url} answered {resp.status}", permanent=True)
            if resp.status != 200:
                raise FetchError(f"{url} answered {resp.status}", permanent=False)
            with dest.open("wb") as out:
                for chunk in resp.chunks(CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise FetchError(f"{url} is larger than {max_bytes} bytes", permanent=True)
                    digest.update(chunk)
                    out.write(chunk)
    except DeadlineError:
        raise FetchError(f"{url} took longer than {timeout:g} s", permanent=False) from None
    except OutboundError as exc:
        raise FetchError(f"{url}: {exc}", permanent=False) from None
    if digest.hexdigest() != expected_sha256:
        raise FetchError(f"{url}: sha256 does not match the submission's", permanent=True)
    return size
