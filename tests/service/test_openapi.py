"""The OpenAPI document matches the code: every route is described, and generated
requests (schemathesis) get answers whose status, content type and body it allows."""

from __future__ import annotations

import re

import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from review_ui.api.openapi import document
from scanner.db import session_scope
from service.models import User
from service.services import Services
from service.tokens import create_token
from tests.service.conftest import post_submission, zip_bytes
from tests.service.desk import make_user

SKIPPED_PATHS = {"/metrics", "/readyz"}  # text output / depends on clamd: tested elsewhere
# Desk operations refuse some schema-valid requests on rules a schema cannot state (an
# allowlist expiry past the configured maximum, a decision on a submission that is not
# waiting): 422 there is the documented answer, not a defect.
BUSINESS_RULES = (
    "/api/v1/allowlist",
    "/api/v1/users",
    "/api/v1/reasons",
    "/api/v1/submissions/{submission_id}/",
)


def test_api_conforms_to_its_document(app: Flask, svc: Services) -> None:
    # An admin's review token reaches every operation; a concluded submission gives the
    # generated requests something real to find.
    make_user(svc, "schema-admin", "admin")
    with session_scope(svc.engine) as s:
        user = s.query(User).filter_by(name="schema-admin").one()
        _, bearer = create_token(s, "schema", {"read", "preflight", "review"}, user=user)
    post_submission(app.test_client(), bundle=zip_bytes())
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
            desk = case.operation.path.startswith(BUSINESS_RULES) or "/findings/" in case.path
            case.call_and_validate(excluded_checks=[positive_data_acceptance] if desk else None)

        conforms()
        checked.append(operation.label)
    assert {
        "POST /api/v1/submissions",
        "GET /api/v1/submissions/{submission_id}",
        "POST /api/v1/scans",
        "GET /api/v1/scans/{scan_id}",
        "GET /api/v1/queue",
        "GET /api/v1/submissions/{submission_id}/review",
        "POST /api/v1/submissions/{submission_id}/decisions",
        "POST /api/v1/findings/{finding_id}/marks",
        "POST /api/v1/allowlist",
        "POST /api/v1/users",
    } <= set(checked)


def test_every_route_is_in_the_document(app: Flask) -> None:
    described = {
        (path, method.upper()) for path, ops in document()["paths"].items() for method in ops
    }
    routed = {
        (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method)
        for rule in app.url_map.iter_rules()
        for method in rule.methods or ()
        if method not in {"HEAD", "OPTIONS"}
        and rule.endpoint != "static"
        # The desk's HTML pages are not API; their JSON equivalents are under /api/v1.
        and not rule.endpoint.startswith("desk.")
        # The CDN origin serves files (docs/cdn.md), not API.
        and rule.endpoint != "cdn.origin"
    }
    assert routed == described


def test_outbound_callbacks_are_documented_as_webhooks() -> None:
    from service.callbacks import EVENTS

    assert set(document()["webhooks"]) == set(EVENTS)
    assert document()["openapi"].startswith("3.1")
