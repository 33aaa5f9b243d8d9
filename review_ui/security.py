"""The desk's own defences: sessions, CSRF, sign-in, idle expiry and response headers.

Bundle content is hostile and is shown here, so the pages carry a strict CSP of their own
(no inline script, no eval, nothing from elsewhere), are never framed, and every value
from a bundle is escaped by Jinja's autoescape.
"""

from __future__ import annotations

import os
import secrets
import time
from datetime import timedelta
from pathlib import Path

from flask import Flask, Response, current_app, redirect, request, session, url_for
from flask.sessions import SecureCookieSessionInterface, SessionMixin
from flask_login import LoginManager, current_user, logout_user
from flask_wtf.csrf import CSRFProtect

from review_ui.context import services_of
from scanner.config import Settings
from service.models import User

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self';"
    " connect-src 'self'; font-src 'self'; object-src 'none'; frame-src 'none';"
    " frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SEEN = "seen"
csrf = CSRFProtect()
login_manager = LoginManager()


class DeskUser:
    """The signed-in account as Flask-Login sees it; its id carries the session version,
    so a password change or a disable ends every older session."""

    is_anonymous = False

    def __init__(self, user: User) -> None:
        self.user_id, self.name, self.role = user.id, user.name, user.role
        self.must_change_password = user.must_change_password
        self.session_version = user.session_version
        self.active = user.disabled_at is None

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_active(self) -> bool:
        return self.active

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def get_id(self) -> str:
        return f"{self.user_id}:{self.session_version}"


def secret_key(settings: Settings) -> str:
    """The configured key, or one made once and kept beside the data (0600)."""
    if settings.secret_key:
        return settings.secret_key
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path = Path(settings.data_dir) / "secret_key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        key = secrets.token_urlsafe(48)
        fh.write(key)
    return key


class Sessions(SecureCookieSessionInterface):
    """The desk's cookie sessions, kept off the CDN origin: public files carry no cookie
    and no ``Vary: Cookie`` (a CDN would cache one copy per visitor's cookie)."""

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if request.blueprint == "cdn":
            return
        super().save_session(app, session, response)


def init_security(app: Flask, settings: Settings) -> None:
    app.secret_key = secret_key(settings)
    app.session_interface = Sessions()
    app.config.update(
        SESSION_COOKIE_NAME="gatehouse_session",
        SESSION_COOKIE_SECURE=settings.cookie_secure,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
        REMEMBER_COOKIE_SECURE=settings.cookie_secure,
        REMEMBER_COOKIE_HTTPONLY=True,
        # The token lives as long as the session; idle expiry ends both.
        WTF_CSRF_TIME_LIMIT=None,
        WTF_CSRF_SSL_STRICT=True,
    )
    csrf.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "desk.login"
    login_manager.session_protection = "strong"
    login_manager.user_loader(_load_user)
    app.before_request(_idle_expiry)
    app.after_request(_headers)


def _load_user(user_id: str) -> DeskUser | None:
    uid, _, version = user_id.partition(":")
    if not uid.isdigit() or not version.isdigit():
        return None
    with services_of(current_app).session() as s:
        user = s.get(User, int(uid))
        if user is None or user.disabled_at is not None or user.session_version != int(version):
            return None
        return DeskUser(user)


def _idle_expiry() -> Response | None:
    """A session unused for the idle limit is over, whatever its cookie says."""
    if request.blueprint not in ("desk", "api") or not current_user.is_authenticated:
        return None
    limit = services_of(current_app).settings.session_idle_minutes * 60
    now = time.time()
    seen = session.get(SEEN)
    if isinstance(seen, int | float) and now - seen > limit:
        logout_user()
        session.clear()
        if request.blueprint == "desk":
            return redirect(url_for("desk.login", expired=1))  # type: ignore[return-value]
        return None
    session[SEEN] = now
    return None


def _headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CSP)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    headers.setdefault("Cross-Origin-Resource-Policy", "same-origin")
    if request.blueprint == "desk":
        # Pages about hostile bundles are nobody's cache's business.
        headers.setdefault("Cache-Control", "no-store")
    return response
