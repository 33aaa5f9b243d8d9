"""The CDN page: promoted versions whose scan is stale, when the retro-scans reach them."""

from __future__ import annotations

from flask import current_app, flash, redirect, render_template, url_for
from werkzeug.wrappers import Response as BaseResponse

from review_ui.actors import desk_actor
from review_ui.context import services_of
from review_ui.views import admin_only, bp, signed_in
from service.audit import audit
from service.cdn import retro


@bp.get("/promoted")
@signed_in
def promoted() -> str:
    return render_template("promoted.html", p=retro.progress(services_of(current_app)))


@bp.post("/promoted/retro")
@admin_only
def plan_retro() -> BaseResponse:
    svc = services_of(current_app)
    generation = retro.detect(svc, reason="manual")
    with svc.session() as s:
        audit(s, desk_actor().label, "retro.requested", "retro", generation or 0)
    started = retro.tick(svc)
    flash(f"Every stale promoted version is planned for a rescan; {started} started now.")
    return redirect(url_for("desk.promoted"))
