"""Who is acting: the signed-in reviewer (pages, and JSON calls from them with a CSRF
header) or a review token's user (the API)."""

from __future__ import annotations

from flask import current_app, request
from flask_login import current_user
from flask_wtf.csrf import CSRFError, ValidationError, validate_csrf

from review_ui.context import services_of
from review_ui.problems import ApiProblemError
from service.models import User
from service.review.accounts import Actor
from service.tokens import authenticate

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def desk_actor() -> Actor:
    return Actor(current_user.user_id, current_user.name, current_user.role)


def api_actor(*, admin: bool = False) -> Actor:
    """The actor of an API call; 401 without credentials, 403 without the role."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        actor = _token_actor(token.strip())
    elif current_user.is_authenticated and not current_user.must_change_password:
        if request.method not in SAFE_METHODS:
            # A session is a cookie the browser sends by itself: state changes need the
            # page's CSRF token in a header as well.
            try:
                validate_csrf(request.headers.get("X-CSRFToken", ""))
            except (ValidationError, CSRFError):
                raise ApiProblemError(
                    403, "csrf", "Forbidden", "send the page's CSRF token in X-CSRFToken"
                ) from None
        actor = Actor(current_user.user_id, current_user.name, current_user.role)
    else:
        raise ApiProblemError(
            401,
            "unauthorized",
            "Unauthorized",
            "send Authorization: Bearer <review token>",
            headers={"WWW-Authenticate": 'Bearer realm="gatehouse"'},
        )
    if admin and not actor.is_admin:
        raise ApiProblemError(403, "forbidden", "Forbidden", "this needs an admin")
    return actor


def _token_actor(token: str) -> Actor:
    with services_of(current_app).session() as s:
        row = authenticate(s, token)
        user = s.get(User, row.user_id) if row is not None and row.user_id else None
        if row is None:
            raise ApiProblemError(
                401,
                "unauthorized",
                "Unauthorized",
                "unknown or revoked token",
                headers={"WWW-Authenticate": 'Bearer realm="gatehouse"'},
            )
        if "review" not in row.scope_set or user is None or user.disabled_at is not None:
            raise ApiProblemError(
                403, "forbidden", "Forbidden", "this needs a review token of an active user"
            )
        return Actor(user.id, user.name, user.role)
