"""The signing key and envelopes: made once, private, and a forgery never verifies."""

from __future__ import annotations

import base64
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from scanner.config import Settings, SettingsError
from service.cdn.signing import (
    BLOCKLIST_TYPE,
    MANIFEST_TYPE,
    SignatureError,
    _load,
    load_signer,
    open_envelope,
)
from tests.service.cdn.conftest import dsse_payload


def test_the_key_is_made_once_private_and_shared(settings: Settings) -> None:
    _load.cache_clear()
    first = load_signer(settings)
    path = settings.data_dir / "cdn-signing-key"
    assert path.stat().st_mode & 0o777 == 0o600
    _load.cache_clear()
    assert load_signer(settings).key_id == first.key_id  # another process reads the same key
    assert [p.name for p in settings.data_dir.iterdir() if p.name.startswith(".key-")] == []


def test_a_configured_key_wins_and_a_malformed_one_stops_start(settings: Settings) -> None:
    seed = base64.b64encode(os.urandom(32)).decode()
    signer = load_signer(replace(settings, cdn_signing_key=seed))
    assert not (settings.data_dir / "cdn-signing-key").exists()
    assert signer.public_jwk()["crv"] == "Ed25519"
    for bad in ("not base64!", base64.b64encode(b"short").decode()):
        with pytest.raises(SettingsError, match="GATEHOUSE_CDN_SIGNING_KEY"):
            load_signer(replace(settings, cdn_signing_key=bad))


def test_envelopes_verify_only_as_signed(settings: Settings, tmp_path: Path) -> None:
    signer = load_signer(settings)
    data = signer.envelope(MANIFEST_TYPE, b'{"a": 1}')
    assert dsse_payload(data, signer.public) == {"a": 1}  # the spec's PAE, independently
    keys = {signer.key_id: signer.public}
    assert open_envelope(data, keys, MANIFEST_TYPE) == b'{"a": 1}'
    doc = json.loads(data)
    forged = dict(doc, payload=base64.b64encode(b'{"a": 2}').decode())
    with pytest.raises(SignatureError):
        open_envelope(json.dumps(forged).encode(), keys, MANIFEST_TYPE)
    with pytest.raises(SignatureError):  # a manifest's signature is not a blocklist's
        open_envelope(data, keys, BLOCKLIST_TYPE)
    other = load_signer(
        replace(settings, cdn_signing_key=base64.b64encode(os.urandom(32)).decode())
    )
    with pytest.raises(SignatureError):
        open_envelope(other.envelope(MANIFEST_TYPE, b"{}"), keys, MANIFEST_TYPE)
    with pytest.raises(SignatureError):
        open_envelope(b"[]", keys, MANIFEST_TYPE)
