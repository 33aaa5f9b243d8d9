"""Standard Webhooks signatures: HMAC-SHA256 over ``id.timestamp.body``, ``v1,<base64>``.

Verification runs over the raw bytes as they stream in, before anything parses them,
and accepts any of several secrets so a registry can rotate without downtime.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
MAX_ID_LENGTH = 200


class SignatureError(ValueError):
    """The webhook is not provably from the registry, or not from now."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(random.token_bytes(32)).decode()


def decode_secret(secret: str) -> bytes:
    raw = secret.removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret is whsec_ followed by base64") from None


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(decode_secret(secret), f"{msg_id}.{timestamp}.".encode(), hashlib.sha256)
    mac.update(body)
    return "v1," + base64.b64encode(mac.digest()).decode()


def signed_headers(
    secret: str, msg_id: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(secret, msg_id, ts, body),
    }


@dataclass
class IncomingWebhook:
    """Headers checked up front; the body is fed in chunks, then ``verify()``."""

    msg_id: str
    timestamp: int
    signatures: tuple[bytes, ...]
    macs: tuple[hmac.HMAC, ...]

    @classmethod
    def start(
        cls,
        headers: Mapping[str, str] | Any,
        secrets: Sequence[str],
        *,
        tolerance: int = 300,
        now: float | None = None,
    ) -> IncomingWebhook:
        msg_id = headers.get("webhook-id", "")
        raw_ts = headers.get("webhook-timestamp", "")
        raw_sig = headers.get("webhook-signature", "")
        if not (msg_id and raw_ts and raw_sig):
            raise SignatureError(
                "missing-signature",
                "webhook-id, webhook-timestamp and webhook-signature headers are required",
            )
        if len(msg_id) > MAX_ID_LENGTH or not msg_id.isprintable():
            raise SignatureError("bad-webhook-id", "webhook-id is too long or not printable")
        try:
            timestamp = int(raw_ts)
        except ValueError:
            raise SignatureError("bad-timestamp", "webhook-timestamp is not an integer") from None
        current = time.time() if now is None else now
        if abs(current - timestamp) > tolerance:
            raise SignatureError(
                "stale-timestamp",
                f"webhook-timestamp is more than {tolerance} s away from our clock",
            )
        signatures = tuple(_v1_signatures(raw_sig))
        if not signatures:
            raise SignatureError("bad-signature", "no v1 signature in webhook-signature")
        if not secrets:
            raise SignatureError("no-secret", "this server has no webhook secret configured")
        prefix = f"{msg_id}.{timestamp}.".encode()
        macs = tuple(hmac.new(decode_secret(s), prefix, hashlib.sha256) for s in secrets)
        return cls(msg_id, timestamp, signatures, macs)

    def update(self, chunk: bytes) -> None:
        for mac in self.macs:
            mac.update(chunk)

    def verify(self) -> None:
        digests = [mac.digest() for mac in self.macs]
        # Compare every pair in constant time, without stopping at the first match.
        ok = False
        for digest in digests:
            for signature in self.signatures:
                ok |= hmac.compare_digest(digest, signature)
        if not ok:
            raise SignatureError("bad-signature", "no signature matches the body")


def _v1_signatures(header: str) -> list[bytes]:
    out = []
    for item in header.split():
        version, _, value = item.partition(",")
        if version != "v1":
            continue
        try:
            out.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            continue
    return out
