"""Reviewer and admin accounts: argon2id hashes, one-time passwords, sign-in throttling."""

from __future__ import annotations

import contextlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from scanner.config import Settings
from service.audit import audit
from service.models import ApiToken, LoginAttempt, User, utcnow

ROLES = ("reviewer", "admin")
NAME_RE = re.compile(r"^[a-z][a-z0-9._-]{1,63}$")
MIN_PASSWORD = 12
# Per address, failures allowed are this many times the per-name number: one office
# behind one NAT address must not lock itself out, a spray across names still stops.
IP_FACTOR = 5
_hasher = PasswordHasher()
# Verified against when the name is unknown, so "no such user" costs what a wrong
# password costs and names cannot be told apart by timing.
_DUMMY = _hasher.hash(secrets.token_urlsafe(16))


class AccountError(ValueError):
    """A name, role or password that is not acceptable."""


class LoginThrottledError(Exception):
    """Too many failed sign-ins for this name or address lately."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("too many failed sign-ins; try again later")
        self.retry_after = retry_after


@dataclass(frozen=True)
class Actor:
    """Who acts at the desk: a signed-in user or a review token's user."""

    user_id: int
    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def label(self) -> str:
        return f"user:{self.name}"


def actor_of(user: User) -> Actor:
    return Actor(user.id, user.name, user.role)


def one_time_password() -> str:
    return secrets.token_urlsafe(15)


def create_user(session: Session, name: str, role: str, actor: str) -> tuple[User, str]:
    """A new account with a one-time password, which must be changed at first sign-in."""
    if not NAME_RE.match(name):
        raise AccountError("a name is 2-64 of a-z 0-9 . _ -, starting with a letter")
    if role not in ROLES:
        raise AccountError(f"role is one of {', '.join(ROLES)}")
    if session.scalar(select(User.id).where(User.name == name)) is not None:
        raise AccountError(f"user {name} exists")
    password = one_time_password()
    user = User(
        name=name,
        role=role,
        password_hash=_hasher.hash(password),
        must_change_password=True,
        session_version=1,
        created_by=actor,
    )
    session.add(user)
    session.flush()
    audit(session, actor, "user.created", "user", user.id, {"name": name, "role": role})
    return user, password


def reset_password(session: Session, user: User, actor: str) -> str:
    """A new one-time password; every session of the user ends."""
    password = one_time_password()
    user.password_hash = _hasher.hash(password)
    user.must_change_password = True
    user.session_version += 1
    # A reset answers a lost or stolen account: its API tokens go with its sessions.
    revoked = len(
        session.execute(
            update(ApiToken)
            .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
            .returning(ApiToken.id)
        ).all()
    )
    audit(session, actor, "user.password_reset", "user", user.id, {"tokens_revoked": revoked})
    return password


def set_password(session: Session, user: User, current: str, new: str) -> None:
    if not verify(user, current):
        raise AccountError("the current password is wrong")
    if len(new) < MIN_PASSWORD or new == current or user.name in new.lower():
        raise AccountError(
            f"a new password has at least {MIN_PASSWORD} characters, differs from the old"
            " one and does not contain your name"
        )
    user.password_hash = _hasher.hash(new)
    user.must_change_password = False
    user.session_version += 1
    audit(session, f"user:{user.name}", "user.password_set", "user", user.id)


def set_disabled(session: Session, user: User, disabled: bool, actor: str) -> None:
    user.disabled_at = utcnow() if disabled else None
    user.session_version += 1
    audit(session, actor, "user.disabled" if disabled else "user.enabled", "user", user.id)


def verify(user: User, password: str) -> bool:
    try:
        return _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _failures(
    session: Session, column: InstrumentedAttribute[str], value: str, since: datetime
) -> int:
    query = select(func.count()).where(
        column == value,
        LoginAttempt.ok.is_(False),
        LoginAttempt.at >= since,
    )
    return int(session.scalar(query) or 0)


def sign_in(session: Session, name: str, password: str, ip: str, settings: Settings) -> User | None:
    """The user when name and password match an active account; every attempt recorded.

    Throttled before the password is even checked: a locked name cannot be guessed at.
    """
    name = name.strip().lower()[:64]
    since = utcnow() - timedelta(seconds=settings.login_window)
    limit = settings.login_max_failures
    if (
        _failures(session, LoginAttempt.name, name, since) >= limit
        or _failures(session, LoginAttempt.ip, ip, since) >= limit * IP_FACTOR
    ):
        raise LoginThrottledError(int(settings.login_window))
    user = session.scalar(select(User).where(User.name == name))
    ok = verify(user, password) if user is not None else _burn(password)
    ok = ok and user is not None and user.disabled_at is None
    session.add(LoginAttempt(name=name, ip=ip[:64], ok=ok))
    if not ok or user is None:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.last_login_at = utcnow()
    audit(session, f"user:{user.name}", "user.signed_in", "user", user.id, {"ip": ip[:64]})
    return user


def _burn(password: str) -> bool:
    with contextlib.suppress(VerificationError):
        _hasher.verify(_DUMMY, password)
    return False
