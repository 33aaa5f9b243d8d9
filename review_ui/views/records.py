"""The audit page, the rules page (measured precision), a publisher's history."""

from __future__ import annotations

from flask import abort, current_app, render_template, request
from sqlalchemy import select

from review_ui.context import services_of
from review_ui.views import bp, signed_in
from scanner.rulebook import load_rulebook
from service.models import Publisher
from service.review.auditlog import AuditFilter, search
from service.review.marks import precision_by_rule
from service.review.queue import publisher_history


@bp.get("/audit")
@signed_in
def audit_log() -> str:
    f = AuditFilter.from_args(request.args.to_dict())
    with services_of(current_app).session() as s:
        entries = search(s, f)
    return render_template("audit.html", entries=entries, f=f)


@bp.get("/rules")
@signed_in
def rules() -> str:
    svc = services_of(current_app)
    with svc.session() as s:
        rows = precision_by_rule(s, svc.settings)
    book = load_rulebook(svc.settings.rules_dir)
    return render_template(
        "rules.html",
        rows=rows,
        book=book,
        threshold=svc.settings.precision_threshold,
        min_marks=svc.settings.review_min_marks,
    )


@bp.get("/publishers/<external_id>")
@signed_in
def publisher(external_id: str) -> str:
    with services_of(current_app).session() as s:
        pub = s.scalar(select(Publisher).where(Publisher.external_id == external_id))
        if pub is None:
            abort(404)
        history = publisher_history(s, pub.id)
        trust = pub.trust
    rejected = sum(1 for h in history if h.status == "rejected")
    approved = sum(1 for h in history if h.status in ("approved", "promoted"))
    return render_template(
        "publisher.html",
        external_id=external_id,
        trust=trust,
        history=history,
        rejected=rejected,
        approved=approved,
    )
