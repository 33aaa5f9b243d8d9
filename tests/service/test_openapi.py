"""The OpenAPI document matches the code: every route is described, and generated
requests (schemathesis) get answers whose status, content type and body it allows."""

from __future__ import annotations

import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings

from review_ui.api.openapi import document
from service.services import Services
from tests.service.conftest import token

SKIPPED_PATHS = {"/metrics", "/readyz"}  # text output / depends on clamd: tested elsewhere


def test_api_conforms_to_its_document(app: Flask, svc: Services) -> None:
    bearer = token(svc, "read", "preflight")
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    checked = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path in SKIPPED_PATHS:
            continue

        @given(operation.as_strategy())
        @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
        def conforms(case: schemathesis.Case) -> None:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {bearer}"}
            case.call_and_validate()

        conforms()
        checked.append(operation.label)
    assert {
        "POST /api/v1/submissions",
        "GET /api/v1/submissions/{submission_id}",
        "POST /api/v1/scans",
        "GET /api/v1/scans/{scan_id}",
    } <= set(checked)


def test_every_route_is_in_the_document(app: Flask) -> None:
    described = {
        (path, method.upper()) for path, ops in document()["paths"].items() for method in ops
    }
    routed = {
        (rule.rule.replace("<", "{").replace(">", "}"), method)
        for rule in app.url_map.iter_rules()
        for method in rule.methods or ()
        if method not in {"HEAD", "OPTIONS"} and rule.endpoint != "static"
    }
    assert routed == described


def test_outbound_callbacks_are_documented_as_webhooks() -> None:
    from service.callbacks import EVENTS

    assert set(document()["webhooks"]) == set(EVENTS)
    assert document()["openapi"].startswith("3.1")
