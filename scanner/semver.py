"""The one check of a semantic version string (semver.org 2.0.0), for manifests and webhooks."""

from __future__ import annotations

import re

# semver.org's grammar: no leading zeros, no empty identifiers, one build part at most.
SEMVER_RE = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?"
)
# A plugin's version: semver without build metadata, which has no precedence (1.0.0+2 is
# 1.0.0 again, so it could never name other bytes than 1.0.0's).
PLUGIN_VERSION_RE = re.compile(SEMVER_RE.pattern.rsplit("(?:\\+", 1)[0])
# npm refuses versions longer than this; so do we (a database column and a file name).
MAX_LENGTH = 256


def is_semver(text: str) -> bool:
    """Whether ``text`` is exactly a semantic version: no "v", no spaces, no trailing newline."""
    return len(text) <= MAX_LENGTH and SEMVER_RE.fullmatch(text) is not None


def is_plugin_version(text: str) -> bool:
    """A semantic version without build metadata: what a manifest and a webhook accept."""
    return len(text) <= MAX_LENGTH and PLUGIN_VERSION_RE.fullmatch(text) is not None
