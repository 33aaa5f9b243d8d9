"""Standard Webhooks signatures: HMAC-SHA256 over ``id.timestamp.body``, ``v1,<base64>``.

Verification runs over the raw bytes as they stream in, before anything parses them,
and accepts any of several secrets so a registry can rotate without downtime.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import secrets as random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scanner.config import Settings, SettingsError
from service.cdn.signing import check_key

log = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
MAX_ID_LENGTH = 200
# An HMAC-SHA256 key shorter than this is guessable or a typo; the reference libraries
# generate 24 to 32 random bytes.
MIN_SECRET_BYTES = 24


class SignatureError(ValueError):
    """The webhook is not provably from the registry, or not from now."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(random.token_bytes(32)).decode()


class SecretError(ValueError):
    """A signing secret that cannot be used: not base64, or too short to be a key."""


def decode_secret(secret: str) -> bytes:
    """The HMAC key of ``whsec_<base64>`` (padding optional, as the reference library reads it).

    Refuses what would give a weak or empty key: ``whsec_`` alone once made every
    signature computable by anyone.
    """
    raw = secret.strip().removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise SecretError("a signing secret is whsec_ followed by base64") from None
    if len(key) < MIN_SECRET_BYTES:
        raise SecretError(
            f"a signing secret must decode to at least {MIN_SECRET_BYTES} bytes, not {len(key)}"
        )
    return key


def check_secrets(settings: Settings) -> Settings:
    """Refuse to start with secrets that would sign with a weak key or not at all.

    Run by ``serve``, the web app factory and the workers, so a bad secret stops the
    service at start instead of turning every webhook into an error (or a forgery).
    """
    for n, secret in enumerate(settings.webhook_secret_list, 1):
        try:
            decode_secret(secret)
        except SecretError as exc:
            raise SettingsError(f"GATEHOUSE_WEBHOOK_SECRETS, secret {n}: {exc}") from None
    if settings.callback_secret:
        try:
            decode_secret(settings.callback_secret)
        except SecretError as exc:
            raise SettingsError(f"GATEHOUSE_CALLBACK_SECRET: {exc}") from None
    elif settings.callback_origin_list:
        raise SettingsError(
            "GATEHOUSE_CALLBACK_ORIGINS is set but GATEHOUSE_CALLBACK_SECRET is not:"
            " callbacks would go out unsigned"
        )
    if settings.cdn_purge_secret:
        try:
            decode_secret(settings.cdn_purge_secret)
        except SecretError as exc:
            raise SettingsError(f"GATEHOUSE_CDN_PURGE_SECRET: {exc}") from None
    check_key(settings)
    return settings


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
        keys = _usable_keys(secrets)
        if not keys:
            raise SignatureError("no-secret", "this server has no usable webhook secret")
        prefix = f"{msg_id}.{timestamp}.".encode()
        macs = tuple(hmac.new(key, prefix, hashlib.sha256) for key in keys)
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


def _usable_keys(secrets: Sequence[str]) -> list[bytes]:
    """Keys of the secrets that decode; a bad one is skipped (and logged), never an error.

    Settings are checked at start; this is the second line: a malformed secret must not
    make every webhook fail, nor a short one make a forgery pass.
    """
    keys = []
    for secret in secrets:
        try:
            keys.append(decode_secret(secret))
        except SecretError as exc:
            log.error("a configured webhook secret is unusable and ignored: %s", exc)
    return keys


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
