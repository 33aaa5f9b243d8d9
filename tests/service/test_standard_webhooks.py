"""Interop with the Standard Webhooks reference library, both ways: it verifies what we
sign (callbacks), we verify what it signs (the registry's webhook); unpadded secrets,
several signatures, rotation (issue 15)."""

from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from flask.testing import FlaskClient
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from service import callbacks
from service.services import Services
from service.webhooks import IncomingWebhook, SignatureError, signed_headers
from tests.service.conftest import submission_fields
from tests.service.httpserver import Behaviour, serving
from tests.service.test_callbacks import _delivery


def _secret(n: int = 24, padded: bool = True) -> str:
    raw = base64.b64encode(os.urandom(n)).decode()
    return "whsec_" + (raw if padded else raw.rstrip("="))


SECRETS = [_secret(24), _secret(32), _secret(32, padded=False), _secret(40, padded=False)]


def _theirs(secret: str, msg_id: str, body: bytes) -> dict[str, str]:
    now = datetime.now(tz=UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, now, body.decode()),
    }


def _we_verify(headers: dict[str, str], body: bytes, secrets: list[str]) -> None:
    incoming = IncomingWebhook.start(headers, secrets)
    incoming.update(body)
    incoming.verify()


@pytest.mark.parametrize("secret", SECRETS)
def test_the_reference_library_verifies_what_we_sign(secret: str) -> None:
    body = b'{"type":"scan.completed","data":{"verdict":"pass"}}'
    headers = signed_headers(secret, "msg_ours", body)
    Webhook(secret).verify(body, headers)
    # Whatever padding either side writes, the key is the same.
    other_form = secret.rstrip("=") if secret.endswith("=") else secret
    Webhook(other_form).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(_secret()).verify(body, headers)


@pytest.mark.parametrize("secret", SECRETS)
def test_we_verify_what_the_reference_library_signs(secret: str) -> None:
    body = json.dumps(submission_fields()).encode()
    headers = _theirs(secret, "msg_theirs", body)
    _we_verify(headers, body, [secret])
    _we_verify(headers, body, [secret.rstrip("=")])
    with pytest.raises(SignatureError):
        _we_verify(headers, body + b" ", [secret])


def test_several_signatures_and_rotation_both_ways() -> None:
    old, new = _secret(32), _secret(32, padded=False)
    body = b'{"a":1}'
    theirs = _theirs(new, "msg_rot", body)
    ours_old = signed_headers(old, "msg_rot", body, int(theirs["webhook-timestamp"]))
    # A sender during a rotation: several space-separated signatures, one per secret,
    # beside a version we do not know.
    both = {
        **theirs,
        "webhook-signature": " ".join(
            ["v2,ignored", ours_old["webhook-signature"], theirs["webhook-signature"]]
        ),
    }
    _we_verify(both, body, [old])
    _we_verify(both, body, [new])
    _we_verify(theirs, body, [old, new])  # we hold both secrets, it signed with one
    Webhook(old).verify(body, both)
    Webhook(new).verify(body, both)


def test_a_webhook_signed_by_the_reference_library_is_accepted_by_the_api(
    client: FlaskClient, svc: Services
) -> None:
    secret = _secret(32, padded=False)
    svc.settings = replace(svc.settings, webhook_secrets=secret)
    body = json.dumps(
        {**submission_fields(), "bundle_url": "https://registry.example/b.zip", "sha256": "a" * 64}
    ).encode()
    headers = {**_theirs(secret, f"msg_{time.time_ns()}", body), "Content-Type": "application/json"}
    r = client.post("/api/v1/submissions", data=body, headers=headers)
    assert r.status_code == 202, r.get_json()


def test_our_callbacks_verify_with_the_reference_library(svc: Services) -> None:
    secret = _secret(32, padded=False)
    svc.settings = replace(svc.settings, callback_secret=secret)
    behaviour = Behaviour(status=204, body=b"")
    with serving(behaviour) as url:
        assert callbacks.attempt(svc, _delivery(svc, url)) == "delivered"
    (request,) = behaviour.requests
    event = Webhook(secret).verify(request.body, request.headers)
    assert event["type"] == "scan.completed"
