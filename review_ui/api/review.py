"""The desk as JSON: everything a reviewer or admin does on the pages, for tools.

Authorised by review tokens (scope ``review``, bound to a user whose role decides what it
may do) or by a desk session sending its CSRF token in ``X-CSRFToken``.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from flask import Response, current_app, jsonify, request
from sqlalchemy import select

from review_ui.actors import api_actor
from review_ui.api import bp
from review_ui.context import services_of
from review_ui.problems import ApiProblemError
from scanner.rulebook import load_rulebook, rule_version
from service.models import CannedReason, Publisher, User, iso
from service.review import (
    accounts,
    allowlists,
    autoapprove,
    claims,
    decisions,
    detail,
    marks,
    trust,
)
from service.review.auditlog import AuditFilter, search
from service.review.queue import QueueFilter, list_queue, override_due
from service.review.reasons import save_reason


def _body(allowed: set[str], required: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ApiProblemError(400, "malformed-json", "Malformed JSON body", "send a JSON object")
    extra = sorted(set(data) - allowed)
    missing = sorted(required - set(data))
    if extra or missing:
        field = (extra or missing)[0]
        raise _invalid(field, "unknown field" if extra else "is required")
    return data


def _invalid(field: str, message: str) -> ApiProblemError:
    return ApiProblemError(
        422,
        "invalid-request",
        "Invalid request",
        f"{field}: {message}",
        errors=[{"field": field, "message": message}],
    )


def _string(data: dict[str, Any], key: str, default: str | None = None) -> str | None:
    value = data.get(key, default)
    if value is not None and not isinstance(value, str):
        raise _invalid(key, "must be a string")
    return value


MAX_ID = 2**31 - 1  # ids are 32-bit integers on every database we run on


def _known_id(value: int, what: str) -> int:
    if not 0 < value <= MAX_ID:
        raise ApiProblemError(404, "not-found", "Not Found", f"no such {what}")
    return value


def _created(body: dict[str, Any], status: int = 201) -> Response:
    response = jsonify(body)
    response.status_code = status
    return response


def _no_content() -> Response:
    return Response(status=204)


@bp.get("/queue")
def api_queue() -> Response:
    api_actor()
    f = QueueFilter.from_args(request.args.to_dict())
    with services_of(current_app).session() as s:
        page = list_queue(s, f)
    return jsonify(
        {
            "items": [r.to_dict() for r in page.rows],
            "total": page.total,
            "counts": page.counts,
            "page": page.page,
            "pages": page.pages,
        }
    )


@bp.get("/submissions/<submission_id>/review")
def api_review(submission_id: str) -> Response:
    actor = api_actor()
    svc = services_of(current_app)
    with svc.session() as s:
        view = detail.load(svc, s, submission_id, actor.user_id)
    if view is None:
        raise ApiProblemError(404, "not-found", "Not Found", "no such submission")
    return jsonify(view.to_dict())


def _claim_problem(exc: claims.ClaimHeldError) -> ApiProblemError:
    return ApiProblemError(
        409, "claimed", "Conflict", str(exc), holder=exc.holder, until=iso(exc.until)
    )


@bp.post("/submissions/<submission_id>/claim")
def api_claim(submission_id: str) -> Response:
    actor = api_actor()
    svc = services_of(current_app)
    try:
        with svc.session() as s:
            state = claims.claim(s, submission_id, actor, svc.settings.claim_minutes)
    except claims.ClaimHeldError as exc:
        raise _claim_problem(exc) from None
    except claims.NotInQueueError:
        raise ApiProblemError(404, "not-found", "Not Found", "not in the queue") from None
    return jsonify({"holder": state.holder, "until": iso(state.until)})


@bp.delete("/submissions/<submission_id>/claim")
def api_release(submission_id: str) -> Response:
    actor = api_actor()
    try:
        with services_of(current_app).session() as s:
            claims.release(s, submission_id, actor)
    except claims.ClaimHeldError as exc:
        raise _claim_problem(exc) from None
    except claims.NotInQueueError:
        raise ApiProblemError(404, "not-found", "Not Found", "not in the queue") from None
    return _no_content()


@bp.post("/submissions/<submission_id>/decisions")
def api_decide(submission_id: str) -> Response:
    actor = api_actor()
    data = _body({"action", "scan_id", "reasons", "message"}, {"action", "scan_id"})
    reasons = data.get("reasons", [])
    if not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons):
        raise _invalid("reasons", "must be a list of reason codes")
    try:
        outcome = decisions.decide(
            services_of(current_app),
            submission_id,
            actor,
            _string(data, "action") or "",
            scan_id=_string(data, "scan_id") or "",
            reason_codes=reasons,
            message=_string(data, "message"),
        )
    except claims.ClaimHeldError as exc:
        raise _claim_problem(exc) from None
    except decisions.DecisionError as exc:
        raise ApiProblemError(exc.status, exc.code, "Decision refused", str(exc)) from None
    return _created({"decision_id": outcome.decision_id, "status": outcome.status})


@bp.post("/submissions/<submission_id>/rescan")
def api_rescan(submission_id: str) -> Response:
    actor = api_actor()
    try:
        scan_id = decisions.rescan(services_of(current_app), submission_id, actor)
    except decisions.DecisionError as exc:
        raise ApiProblemError(exc.status, exc.code, "Rescan refused", str(exc)) from None
    return _created({"scan_id": scan_id, "status": "scanning"}, 202)


@bp.post("/findings/<int:finding_id>/marks")
def api_mark(finding_id: int) -> Response:
    actor = api_actor()
    _known_id(finding_id, "finding")
    data = _body({"mark", "note"}, {"mark"})
    try:
        with services_of(current_app).session() as s:
            row = marks.mark_finding(
                s, finding_id, actor, _string(data, "mark") or "", _string(data, "note")
            )
            mark_id = row.id
    except marks.MarkError as exc:
        status = 404 if "no such" in str(exc) else 422
        raise ApiProblemError(status, "invalid-mark", "Mark refused", str(exc)) from None
    return _created({"id": mark_id, "finding_id": finding_id})


@bp.get("/rules")
def api_rules() -> Response:
    api_actor()
    svc = services_of(current_app)
    with svc.session() as s:
        rows = marks.precision_by_rule(s, svc.settings)
    return jsonify({"rules": [r.to_dict() for r in rows]})


@bp.get("/audit")
def api_audit() -> Response:
    api_actor()
    with services_of(current_app).session() as s:
        entries = search(s, AuditFilter.from_args(request.args.to_dict()))
    return jsonify({"entries": entries})


@bp.get("/allowlist")
def api_allowlist() -> Response:
    api_actor()
    svc = services_of(current_app)
    with svc.session() as s:
        rows = allowlists.entries(s, svc.settings)
    return jsonify({"entries": [e.to_dict() for e in rows]})


@bp.post("/allowlist")
def api_allowlist_create() -> Response:
    actor = api_actor(admin=True)
    svc = services_of(current_app)
    data = _body(
        {"rule_id", "stage", "publisher", "plugin", "file_sha256", "reason", "expires_at"},
        {"rule_id", "stage", "publisher", "reason", "expires_at"},
    )
    try:
        expires = datetime.fromisoformat((_string(data, "expires_at") or "").replace("Z", "+00:00"))
    except ValueError:
        raise _invalid("expires_at", "must be an RFC 3339 date-time") from None
    stage, _, version = (_string(data, "stage") or "").partition("@")
    if not stage or not (version or "1").isdigit():
        raise _invalid("stage", "is stage@version, e.g. js-static@1")
    rule_id = _string(data, "rule_id") or ""
    try:
        with svc.session() as s:
            publisher = s.scalar(
                select(Publisher).where(Publisher.external_id == _string(data, "publisher"))
            )
            if publisher is None:
                raise ApiProblemError(404, "not-found", "Not Found", "no such publisher")
            entry = allowlists.create(
                s,
                svc.settings,
                actor,
                rule_id=rule_id,
                rule_version_=rule_version(
                    rule_id, stage, int(version or 1), load_rulebook(svc.settings.rules_dir)
                ),
                publisher_id=publisher.id,
                plugin_name=_string(data, "plugin"),
                file_sha256=_string(data, "file_sha256"),
                reason=_string(data, "reason") or "",
                expires_at=expires,
            )
            entry_id, version_made = entry.id, entry.rule_version
    except allowlists.AllowlistError as exc:
        raise ApiProblemError(422, "invalid-entry", "Entry refused", str(exc)) from None
    return _created({"id": entry_id, "rule_version": version_made})


@bp.delete("/allowlist/<int:entry_id>")
def api_allowlist_revoke(entry_id: int) -> Response:
    actor = api_actor(admin=True)
    _known_id(entry_id, "entry")
    try:
        with services_of(current_app).session() as s:
            allowlists.revoke(s, actor, entry_id, request.args.get("reason", ""))
    except allowlists.AllowlistError as exc:
        status = 404 if "no such" in str(exc) else 409
        raise ApiProblemError(status, "not-revoked", "Revocation refused", str(exc)) from None
    return _no_content()


@bp.get("/users")
def api_users() -> Response:
    api_actor(admin=True)
    with services_of(current_app).session() as s:
        rows = [
            {
                "name": u.name,
                "role": u.role,
                "state": "disabled"
                if u.disabled_at
                else "must set password"
                if u.must_change_password
                else "active",
                "created_at": iso(u.created_at),
                "last_login_at": iso(u.last_login_at),
            }
            for u in s.scalars(select(User).order_by(User.name))
        ]
    return jsonify({"users": rows})


@bp.post("/users")
def api_users_create() -> Response:
    actor = api_actor(admin=True)
    data = _body({"name", "role"}, {"name", "role"})
    try:
        with services_of(current_app).session() as s:
            user, password = accounts.create_user(
                s, _string(data, "name") or "", _string(data, "role") or "", actor.label
            )
            body = {"name": user.name, "role": user.role, "one_time_password": password}
    except accounts.AccountError as exc:
        status = 409 if "exists" in str(exc) else 422
        raise ApiProblemError(status, "invalid-user", "User refused", str(exc)) from None
    response = _created(body)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.put("/publishers/<external_id>/trust")
def api_trust(external_id: str) -> Response:
    actor = api_actor(admin=True)
    data = _body({"level", "why"}, {"level"})
    try:
        with services_of(current_app).session() as s:
            trust.set_trust(
                s, actor, external_id, _string(data, "level") or "", _string(data, "why") or ""
            )
    except trust.TrustError as exc:
        status = 404 if "no such" in str(exc) else 422
        raise ApiProblemError(status, "invalid-trust", "Trust refused", str(exc)) from None
    return jsonify({"publisher": external_id, "level": data["level"]})


@bp.get("/auto-approval")
def api_auto_approval() -> Response:
    api_actor()
    with services_of(current_app).session() as s:
        on = autoapprove.enabled(s)
        rows = [
            {
                "submission_id": item.submission_id,
                "plugin": item.plugin_name,
                "version": item.plugin_version,
                **ev.to_dict(),
            }
            for item, ev in autoapprove.dry_run(s)
        ]
    return jsonify({"enabled": on, "dry_run": rows})


@bp.put("/auto-approval")
def api_auto_approval_set() -> Response:
    actor = api_actor(admin=True)
    data = _body({"enabled"}, {"enabled"})
    if not isinstance(data["enabled"], bool):
        raise _invalid("enabled", "must be true or false")
    with services_of(current_app).session() as s:
        autoapprove.set_enabled(s, actor, data["enabled"])
    return jsonify({"enabled": data["enabled"]})


@bp.post("/findings/<int:finding_id>/allowlist")
def api_allowlist_finding(finding_id: int) -> Response:
    """Mark a finding false positive and allowlist its rule in one step (admins)."""
    actor = api_actor(admin=True)
    _known_id(finding_id, "finding")
    svc = services_of(current_app)
    data = _body({"scope", "bind_file", "days", "reason"}, {"scope", "reason"})
    days, bind = data.get("days", 30), data.get("bind_file", True)
    if not isinstance(days, int) or isinstance(days, bool) or not isinstance(bind, bool):
        raise _invalid("days" if not isinstance(days, int) else "bind_file", "wrong type")
    try:
        with svc.session() as s:
            entry = allowlists.from_false_positive(
                s,
                svc.settings,
                actor,
                finding_id,
                scope=_string(data, "scope") or "",
                bind_file=bind,
                days=days,
                reason=_string(data, "reason") or "",
            )
            body = {"id": entry.id, "rule_version": entry.rule_version}
    except allowlists.AllowlistError as exc:
        status = 404 if "no such" in str(exc) else 422
        raise ApiProblemError(status, "invalid-entry", "Entry refused", str(exc)) from None
    return _created(body)


@bp.put("/submissions/<submission_id>/due")
def api_due(submission_id: str) -> Response:
    """An admin moves a due date (audited with the reason)."""
    actor = api_actor(admin=True)
    data = _body({"due_at", "why"}, {"due_at", "why"})
    try:
        due = datetime.fromisoformat((_string(data, "due_at") or "").replace("Z", "+00:00"))
    except ValueError:
        raise _invalid("due_at", "must be an RFC 3339 date-time") from None
    if due.tzinfo is None:
        raise _invalid("due_at", "needs a time zone")
    why = (_string(data, "why") or "").strip()
    if not why:
        raise _invalid("why", "say why the due date moves")
    try:
        with services_of(current_app).session() as s:
            override_due(s, submission_id, due, actor, why)
    except LookupError:
        raise ApiProblemError(404, "not-found", "Not Found", "not in the queue") from None
    return jsonify({"submission_id": submission_id, "due_at": iso(due)})


@bp.post("/submissions/<submission_id>/yank")
def api_yank(submission_id: str) -> Response:
    """An admin withdraws an approval; the registry gets submission.rejected."""
    actor = api_actor(admin=True)
    data = _body({"why"}, {"why"})
    try:
        outcome = decisions.yank(
            services_of(current_app), submission_id, actor, _string(data, "why") or ""
        )
    except decisions.DecisionError as exc:
        raise ApiProblemError(exc.status, exc.code, "Yank refused", str(exc)) from None
    return _created({"decision_id": outcome.decision_id, "status": outcome.status})


@bp.get("/reasons")
def api_reasons() -> Response:
    api_actor()
    with services_of(current_app).session() as s:
        rows = [
            {"code": r.code, "title": r.title, "text": r.body, "active": r.active}
            for r in s.scalars(select(CannedReason).order_by(CannedReason.code))
        ]
    return jsonify({"reasons": rows})


@bp.put("/reasons/<code>")
def api_reason_put(code: str) -> Response:
    """Create or edit a canned reason (admins); the old text stays in the audit log."""
    actor = api_actor(admin=True)
    data = _body({"title", "text", "active"}, {"title", "text"})
    title, text = (_string(data, "title") or "").strip(), (_string(data, "text") or "").strip()
    active = data.get("active", True)
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,39}", code):
        raise ApiProblemError(404, "not-found", "Not Found", "a reason code is a-z 0-9 -")
    if not title or not text or not isinstance(active, bool):
        raise _invalid("title" if not title else "text" if not text else "active", "invalid")
    with services_of(current_app).session() as s:
        save_reason(s, actor, code, title[:200], text, active)
    return jsonify({"code": code, "title": title[:200], "text": text, "active": active})
