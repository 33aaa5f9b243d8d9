"""The one exception intake raises about its input."""

from __future__ import annotations


class ArchiveViolation(Exception):  # noqa: N818 - a verdict about input, not a program error
    """The bundle breaks a rule of safe intake; becomes a critical ``archive`` finding."""

    def __init__(self, rule_id: str, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.rule_id = rule_id
        self.message = message
        self.path = path


def malformed(message: str, path: str | None = None) -> ArchiveViolation:
    return ArchiveViolation("archive-malformed", message, path)
