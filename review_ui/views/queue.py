"""The queue page and the admin's due-date override."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from review_ui.actors import desk_actor
from review_ui.context import services_of
from review_ui.views import admin_only, bp, signed_in
from scanner.findings import Category
from service.models import SubmissionStatus
from service.review.queue import DUE_VIEWS, RETRO, QueueFilter, list_queue, override_due


@bp.get("/queue")
@signed_in
def queue() -> str:
    f = QueueFilter.from_args(request.args.to_dict())
    with services_of(current_app).session() as s:
        page = list_queue(s, f)
    return render_template(
        "queue.html",
        page=page,
        f=f,
        statuses=[st.value for st in SubmissionStatus] + [RETRO],
        categories=[c.value for c in Category],
        due_views=DUE_VIEWS,
    )


@bp.post("/submissions/<submission_id>/due")
@admin_only
def override(submission_id: str) -> BaseResponse:
    try:
        due = datetime.fromisoformat(request.form.get("due_at", "")).replace(tzinfo=UTC)
    except ValueError:
        abort(422, "due_at is a date and time (YYYY-MM-DDTHH:MM)")
    why = request.form.get("why", "").strip()
    if not why:
        abort(422, "say why the due date moves")
    try:
        with services_of(current_app).session() as s:
            override_due(s, submission_id, due, desk_actor(), why)
    except LookupError:
        abort(404)
    flash("Due date changed.")
    return redirect(url_for("desk.submission", submission_id=submission_id))
