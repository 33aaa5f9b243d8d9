"""Ed25519 signatures on what the CDN publishes (manifests, the blocklist), in DSSE
envelopes: the signed bytes travel base64-encoded beside the signature, so a host page
verifies exactly those bytes and never has to re-serialise JSON the same way we did.

Envelope: ``{"payloadType": ..., "payload": base64(bytes), "signatures": [{"keyid":
..., "sig": base64(Ed25519(PAE(payloadType, bytes)))}]}`` with PAE as DSSE v1 defines it:
``"DSSEv1" SP len(type) SP type SP len(body) SP body`` (lengths in ASCII decimal).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from scanner.config import Settings, SettingsError
from scanner.private_dirs import private_dir

KEY_FILE = "cdn-signing-key"
MANIFEST_TYPE = "application/vnd.gatehouse.manifest+json"
BLOCKLIST_TYPE = "application/vnd.gatehouse.blocklist+json"


class SignatureError(ValueError):
    """An envelope that is malformed or not signed by a known key."""


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: the type cannot be swapped under a signature."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class Signer:
    private: Ed25519PrivateKey

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    @property
    def key_id(self) -> str:
        return key_id(self.public)

    def envelope(self, payload_type: str, payload: bytes) -> bytes:
        sig = self.private.sign(pae(payload_type, payload))
        doc = {
            "payloadType": payload_type,
            "payload": base64.b64encode(payload).decode(),
            "signatures": [{"keyid": self.key_id, "sig": base64.b64encode(sig).decode()}],
        }
        return json.dumps(doc, indent=1).encode() + b"\n"

    def public_jwk(self) -> dict[str, str]:
        """The public key as a JWK (RFC 8037): what WebCrypto's importKey takes."""
        raw = self.public.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode(),
            "kid": self.key_id,
            "alg": "EdDSA",
            "use": "sig",
        }

    def keys_document(self) -> dict[str, Any]:
        raw = self.public.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return {
            "keys": [
                {**self.public_jwk(), "public_key": base64.b64encode(raw).decode()},
            ]
        }


def open_envelope(data: bytes, keys: Mapping[str, Ed25519PublicKey], payload_type: str) -> bytes:
    """The payload of an envelope signed by one of ``keys`` with this type, or SignatureError."""
    try:
        doc = json.loads(data)
        if doc["payloadType"] != payload_type:
            raise SignatureError(f"payload type {doc['payloadType']!r}, not {payload_type!r}")
        payload = base64.b64decode(doc["payload"], validate=True)
        signatures = doc["signatures"]
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise SignatureError(f"not a signed envelope: {exc}") from None
    for entry in signatures if isinstance(signatures, list) else []:
        key = keys.get(str(entry.get("keyid"))) if isinstance(entry, dict) else None
        if key is None:
            continue
        try:
            key.verify(base64.b64decode(entry["sig"], validate=True), pae(payload_type, payload))
        except (InvalidSignature, ValueError, KeyError, binascii.Error):
            continue
        return payload
    raise SignatureError("no valid signature by a known key")


def _from_seed(text: str, where: str) -> Ed25519PrivateKey:
    try:
        seed = base64.b64decode(text.strip(), validate=True)
    except (ValueError, binascii.Error):
        raise SettingsError(f"{where}: not base64") from None
    if len(seed) != 32:
        raise SettingsError(f"{where}: an Ed25519 seed is 32 bytes, this is {len(seed)}")
    return Ed25519PrivateKey.from_private_bytes(seed)


def check_key(settings: Settings) -> None:
    """Refuse a configured key of the wrong shape at start (not at the first yank)."""
    if settings.cdn_signing_key:
        _from_seed(settings.cdn_signing_key, "GATEHOUSE_CDN_SIGNING_KEY")


def load_signer(settings: Settings) -> Signer:
    return _load(settings.cdn_signing_key, settings.data_dir)


@functools.lru_cache(maxsize=4)
def _load(configured: str, data_dir: Path) -> Signer:
    if configured:
        return Signer(_from_seed(configured, "GATEHOUSE_CDN_SIGNING_KEY"))
    path = private_dir(data_dir) / KEY_FILE
    if not path.exists():
        # Written whole under a temporary name, then linked into place: of two processes
        # making it at once, one key wins and the other process reads that one.
        seed = base64.b64encode(os.urandom(32)).decode() + "\n"
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".key-")  # mode 0600
        try:
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(seed)
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
    return Signer(_from_seed(path.read_text(encoding="ascii"), str(path)))
