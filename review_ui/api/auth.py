"""Bearer tokens with scopes for the CI and read endpoints."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, request

from review_ui.context import services_of
from review_ui.problems import ApiProblemError
from service.tokens import authenticate


@dataclass(frozen=True)
class Caller:
    token_id: int
    scopes: frozenset[str]
    # The publisher a token acts for; None for the registry's own or an operator's token.
    publisher_id: int | None = None

    def may_read_all(self) -> bool:
        """Every scan and submission: admin, or read not tied to one publisher."""
        return "admin" in self.scopes or ("read" in self.scopes and self.publisher_id is None)

    def may_read_publisher(self, publisher_id: int | None) -> bool:
        """Submissions of ``publisher_id``: all readers, or a reader tied to that publisher."""
        if self.may_read_all():
            return True
        return (
            "read" in self.scopes
            and publisher_id is not None
            and (publisher_id == self.publisher_id)
        )


def require_token(*any_of: str) -> Caller:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    challenge = {"WWW-Authenticate": 'Bearer realm="gatehouse"'}
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiProblemError(
            401,
            "unauthorized",
            "Unauthorized",
            "send Authorization: Bearer <token>",
            headers=challenge,
        )
    with services_of(current_app).session() as s:
        row = authenticate(s, token.strip())
        if row is None:
            raise ApiProblemError(
                401, "unauthorized", "Unauthorized", "unknown or revoked token", headers=challenge
            )
        caller = Caller(row.id, row.scope_set, row.publisher_id)
    if any_of and not caller.scopes & set(any_of):
        raise ApiProblemError(
            403, "forbidden", "Forbidden", f"this needs a token with scope {' or '.join(any_of)}"
        )
    return caller
