"""Admin pages: users, canned reasons, the allowlist, trust levels, auto-approval."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response as BaseResponse

from review_ui.actors import desk_actor
from review_ui.context import services_of
from review_ui.views import admin_only, bp
from scanner.rulebook import load_rulebook, rule_version
from service.models import CannedReason, Publisher, User
from service.review import accounts, allowlists, autoapprove, trust
from service.review.reasons import save_reason
from service.services import Services


@bp.get("/admin/users")
@admin_only
def users() -> str:
    with services_of(current_app).session() as s:
        rows = list(s.scalars(select(User).order_by(User.name)))
        s.expunge_all()
    return render_template("admin_users.html", users=rows, roles=accounts.ROLES)


@bp.post("/admin/users")
@admin_only
def users_post() -> str | BaseResponse:
    actor = desk_actor()
    op = request.form.get("op", "")
    secret: str | None = None
    try:
        with services_of(current_app).session() as s:
            if op == "create":
                user, secret = accounts.create_user(
                    s, request.form.get("name", ""), request.form.get("role", ""), actor.label
                )
                who = user.name
            else:
                found = s.get(User, request.form.get("user_id", type=int) or 0)
                if found is None:
                    abort(404)
                user, who = found, found.name
                if op == "reset":
                    secret = accounts.reset_password(s, user, actor.label)
                elif op in ("disable", "enable"):
                    if user.id == actor.user_id:
                        raise accounts.AccountError("you cannot disable yourself")
                    accounts.set_disabled(s, user, op == "disable", actor.label)
                else:
                    abort(400)
    except accounts.AccountError as exc:
        flash(f"Not done: {exc}", "error")
        return redirect(url_for("desk.users"))
    if secret is not None:
        # Shown once, on this response only (no-store); the user must change it.
        return render_template("one_time.html", name=who, secret=secret)
    flash(f"{who}: {op}d.")
    return redirect(url_for("desk.users"))


@bp.route("/admin/reasons", methods=["GET", "POST"])
@admin_only
def reasons() -> str | BaseResponse:
    svc = services_of(current_app)
    if request.method == "POST":
        actor = desk_actor()
        code = request.form.get("code", "").strip().lower()
        title = request.form.get("title", "").strip()
        body = request.form.get("body", "").strip()
        if not (code and title and body) or len(code) > 40:
            flash("A reason needs a code (at most 40 characters), a title and a text.", "error")
            return redirect(url_for("desk.reasons"))
        with svc.session() as s:
            save_reason(s, actor, code, title[:200], body, request.form.get("active", "1") == "1")
        flash(f"Reason {code} saved.")
        return redirect(url_for("desk.reasons"))
    with svc.session() as s:
        rows = list(s.scalars(select(CannedReason).order_by(CannedReason.code)))
        s.expunge_all()
    return render_template("admin_reasons.html", reasons=rows)


@bp.get("/admin/allowlist")
@admin_only
def allowlist() -> str:
    svc = services_of(current_app)
    with svc.session() as s:
        entries = allowlists.entries(s, svc.settings)
    return render_template(
        "admin_allowlist.html", entries=entries, max_days=svc.settings.allowlist_max_days
    )


@bp.post("/admin/allowlist")
@admin_only
def allowlist_post() -> BaseResponse:
    svc = services_of(current_app)
    actor = desk_actor()
    try:
        with svc.session() as s:
            if request.form.get("op") == "revoke":
                allowlists.revoke(
                    s,
                    actor,
                    request.form.get("entry_id", type=int) or 0,
                    request.form.get("reason", ""),
                )
                flash("Entry revoked.")
            else:
                _create_entry(s, svc, actor)
    except allowlists.AllowlistError as exc:
        flash(f"Not done: {exc}", "error")
    return redirect(url_for("desk.allowlist"))


def _create_entry(s: Session, svc: Services, actor: accounts.Actor) -> None:
    publisher = s.scalar(
        select(Publisher).where(Publisher.external_id == request.form.get("publisher", ""))
    )
    if publisher is None:
        raise allowlists.AllowlistError("no such publisher")
    rule_id = request.form.get("rule_id", "").strip()
    book = load_rulebook(svc.settings.rules_dir)
    stage, _, version = request.form.get("stage_version", "").partition("@")
    if rule_id in book:
        info = book[rule_id]
        stage = stage or {"js": "js-static", "yara": "yara", "secrets.toml": "secrets"}.get(
            info.source.split("/")[0], ""
        )
    if not rule_id or not stage:
        raise allowlists.AllowlistError(
            "give the rule id (and stage@version for rules not in rules/)"
        )
    try:
        expires = datetime.fromisoformat(request.form.get("expires_at", "")).replace(tzinfo=UTC)
    except ValueError:
        raise allowlists.AllowlistError("the expiry is a date (YYYY-MM-DD)") from None
    entry = allowlists.create(
        s,
        svc.settings,
        actor,
        rule_id=rule_id,
        rule_version_=rule_version(rule_id, stage, int(version or 1), book),
        publisher_id=publisher.id,
        plugin_name=request.form.get("plugin", "").strip() or None,
        file_sha256=request.form.get("file_sha256", "").strip().lower() or None,
        reason=request.form.get("reason", ""),
        expires_at=expires,
    )
    flash(f"Allowlist entry {entry.id} created.")


@bp.post("/admin/trust")
@admin_only
def set_trust() -> BaseResponse:
    external_id = request.form.get("publisher", "")
    try:
        with services_of(current_app).session() as s:
            trust.set_trust(
                s,
                desk_actor(),
                external_id,
                request.form.get("level", ""),
                request.form.get("why", ""),
            )
        flash(f"{external_id}: trust set.")
    except trust.TrustError as exc:
        flash(f"Not set: {exc}", "error")
    return redirect(url_for("desk.publisher", external_id=external_id))


@bp.route("/admin/auto-approval", methods=["GET", "POST"])
@admin_only
def auto_approval() -> str | BaseResponse:
    svc = services_of(current_app)
    if request.method == "POST":
        with svc.session() as s:
            autoapprove.set_enabled(s, desk_actor(), request.form.get("enabled") == "1")
        flash("Auto-approval switched.")
        return redirect(url_for("desk.auto_approval"))
    with svc.session() as s:
        on = autoapprove.enabled(s)
        rows = [
            (item.submission_id, item.plugin_name, item.plugin_version, ev)
            for item, ev in autoapprove.dry_run(s)
        ]
    return render_template("admin_auto.html", on=on, rows=rows)
