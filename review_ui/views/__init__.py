"""The reviewers' desk: server-rendered pages (Jinja, autoescaped) over service.review."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import Blueprint, abort, redirect, request, url_for
from flask_login import current_user

bp = Blueprint("desk", __name__)
F = TypeVar("F", bound=Callable[..., Any])


def safe_next(target: str | None) -> str:
    """Only a path on this site: never another host (an open redirect after sign-in)."""
    if not target:
        return url_for("desk.queue")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return url_for("desk.queue")
    if "\\" in target:
        return url_for("desk.queue")
    return target


def signed_in(view: F) -> F:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_authenticated:
            return redirect(url_for("desk.login", next=request.full_path.rstrip("?")))
        if current_user.must_change_password and request.endpoint != "desk.password":
            return redirect(url_for("desk.password"))
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def admin_only(view: F) -> F:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_admin:
            abort(403)
        return view(*args, **kwargs)

    return signed_in(wrapper)  # type: ignore[return-value]


from review_ui.views import (  # noqa: E402, F401 - routes register on bp
    admin,
    auth,
    cdn,
    files,
    queue,
    records,
    submission,
)
