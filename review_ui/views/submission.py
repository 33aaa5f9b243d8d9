"""The submission page and what a reviewer does there: claim, decide, mark findings."""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from werkzeug.wrappers import Response as BaseResponse

from review_ui.actors import desk_actor
from review_ui.context import services_of
from review_ui.views import admin_only, bp, signed_in
from service.models import CannedReason
from service.review import allowlists, claims, decisions, detail, marks
from service.review.claims import ClaimHeldError, NotInQueueError

MAX_ID = 2**31 - 1


@bp.get("/submissions/<submission_id>")
@signed_in
def submission(submission_id: str) -> str:
    svc = services_of(current_app)
    with svc.session() as s:
        view = detail.load(svc, s, submission_id, current_user.user_id)
        if view is None:
            abort(404)
        reasons = list(
            s.scalars(select(CannedReason).where(CannedReason.active).order_by(CannedReason.code))
        )
    return render_template(
        "submission.html", d=view, reasons=reasons, max_days=svc.settings.allowlist_max_days
    )


def _back(submission_id: str, anchor: str | None = None) -> BaseResponse:
    return redirect(url_for("desk.submission", submission_id=submission_id, _anchor=anchor))


@bp.post("/submissions/<submission_id>/claim")
@signed_in
def claim(submission_id: str) -> BaseResponse:
    svc = services_of(current_app)
    try:
        with svc.session() as s:
            claims.claim(s, submission_id, desk_actor(), svc.settings.claim_minutes)
        flash(f"Claimed for {svc.settings.claim_minutes:g} minutes.")
    except ClaimHeldError as exc:
        flash(f"Not claimed: {exc}.", "error")
    except NotInQueueError:
        abort(404)
    return _back(submission_id)


@bp.post("/submissions/<submission_id>/release")
@signed_in
def release(submission_id: str) -> BaseResponse:
    try:
        with services_of(current_app).session() as s:
            claims.release(s, submission_id, desk_actor())
        flash("Claim released.")
    except ClaimHeldError as exc:
        flash(f"Not released: {exc}.", "error")
    except NotInQueueError:
        abort(404)
    return _back(submission_id)


@bp.post("/submissions/<submission_id>/decision")
@signed_in
def decide(submission_id: str) -> BaseResponse:
    svc = services_of(current_app)
    action = request.form.get("action", "")
    try:
        outcome = decisions.decide(
            svc,
            submission_id,
            desk_actor(),
            action,
            scan_id=request.form.get("scan_id", ""),
            reason_codes=request.form.getlist("reasons"),
            message=request.form.get("message"),
        )
    except (decisions.DecisionError, ClaimHeldError) as exc:
        flash(f"Not decided: {exc}", "error")
        return _back(submission_id, "decide")
    flash(f"Decision recorded: {action.replace('_', ' ')} ({outcome.status.replace('_', ' ')}).")
    return redirect(url_for("desk.queue"))


@bp.post("/submissions/<submission_id>/rescan")
@signed_in
def rescan(submission_id: str) -> BaseResponse:
    try:
        decisions.rescan(services_of(current_app), submission_id, desk_actor())
        flash("Rescan queued with the current rules.")
    except decisions.DecisionError as exc:
        flash(f"Not rescanned: {exc}", "error")
    return _back(submission_id)


@bp.post("/submissions/<submission_id>/yank")
@admin_only
def yank(submission_id: str) -> BaseResponse:
    try:
        decisions.yank(
            services_of(current_app), submission_id, desk_actor(), request.form.get("why", "")
        )
        flash("Yanked: the CDN answers 410 for its files; the registry and the CDNs are told.")
    except decisions.DecisionError as exc:
        flash(f"Not yanked: {exc}", "error")
    return _back(submission_id)


@bp.post("/submissions/<submission_id>/unyank")
@admin_only
def unyank(submission_id: str) -> BaseResponse:
    try:
        decisions.unyank(
            services_of(current_app), submission_id, desk_actor(), request.form.get("why", "")
        )
        flash("Un-yanked: it is published again from the scanned tree.")
    except decisions.DecisionError as exc:
        flash(f"Not un-yanked: {exc}", "error")
    return _back(submission_id)


@bp.post("/findings/<int:finding_id>/mark")
@signed_in
def mark(finding_id: int) -> BaseResponse:
    if finding_id > MAX_ID:
        abort(404)
    back = request.form.get("submission_id", "")
    try:
        with services_of(current_app).session() as s:
            marks.mark_finding(
                s,
                int(finding_id),
                desk_actor(),
                request.form.get("mark", ""),
                request.form.get("note"),
            )
    except marks.MarkError as exc:
        flash(f"Not marked: {exc}", "error")
    return _back(back, f"f{finding_id}") if back else redirect(url_for("desk.queue"))


@bp.post("/findings/<int:finding_id>/allowlist")
@admin_only
def allowlist_finding(finding_id: int) -> BaseResponse:
    if finding_id > MAX_ID:
        abort(404)
    svc = services_of(current_app)
    back = request.form.get("submission_id", "")
    try:
        days = int(request.form.get("days") or 30)
    except ValueError:
        days = 30
    try:
        with svc.session() as s:
            entry = allowlists.from_false_positive(
                s,
                svc.settings,
                desk_actor(),
                int(finding_id),
                scope=request.form.get("scope", "plugin"),
                bind_file=request.form.get("bind_file") == "1",
                days=days,
                reason=request.form.get("reason", ""),
            )
            entry_id = entry.id
        flash(f"Marked false positive; allowlist entry {entry_id} applies from the next scan.")
    except allowlists.AllowlistError as exc:
        flash(f"Not allowlisted: {exc}", "error")
    return _back(back, f"f{finding_id}") if back else redirect(url_for("desk.allowlist"))
