"""Sign in, sign out, set a password."""

from __future__ import annotations

from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user
from werkzeug.wrappers import Response as BaseResponse

from review_ui.context import services_of
from review_ui.security import DeskUser
from review_ui.views import bp, safe_next, signed_in
from service.models import User
from service.review.accounts import AccountError, LoginThrottledError, set_password, sign_in


@bp.get("/")
def home() -> BaseResponse:
    return redirect(url_for("desk.queue"))


@bp.route("/login", methods=["GET", "POST"])
def login() -> BaseResponse | str | tuple[str, int]:
    if request.method == "GET":
        return render_template(
            "login.html",
            next=request.args.get("next", ""),
            expired=bool(request.args.get("expired")),
        )
    svc = services_of(current_app)
    name = request.form.get("name", "")
    password = request.form.get("password", "")
    try:
        with svc.session() as s:
            user = sign_in(s, name, password, request.remote_addr or "?", svc.settings)
            desk_user = DeskUser(user) if user is not None else None
    except LoginThrottledError:
        return render_template(
            "login.html", error="Too many failed sign-ins. Wait and try again.", next=""
        ), 429
    if desk_user is None:
        return render_template("login.html", error="Wrong name or password.", next=""), 401
    session.clear()  # a fresh session on sign-in: nothing carried over (fixation)
    login_user(desk_user)
    if desk_user.must_change_password:
        return redirect(url_for("desk.password"))
    return redirect(safe_next(request.form.get("next")))


@bp.post("/logout")
def logout() -> BaseResponse:
    logout_user()
    session.clear()
    return redirect(url_for("desk.login"))


@bp.route("/account/password", methods=["GET", "POST"])
@signed_in
def password() -> BaseResponse | str | tuple[str, int]:
    if request.method == "GET":
        return render_template("password.html")
    svc = services_of(current_app)
    try:
        with svc.session() as s:
            user = s.get_one(User, current_user.user_id)
            set_password(s, user, request.form.get("current", ""), request.form.get("new", ""))
            fresh = DeskUser(user)
    except AccountError as exc:
        return render_template("password.html", error=str(exc)), 422
    session.clear()
    login_user(fresh)  # the old sessions ended with the version bump; this one goes on
    flash("Password set.")
    return redirect(url_for("desk.queue"))
