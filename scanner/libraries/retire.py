"""A second opinion from the RetireJS detectors already shipped with the advisory data:
which version a copy's own text says it is. A "modified" copy that names another
version than the indexed file is another release (its version string sat in a
stretch no edit touched, e.g. a banner the matcher could not verify), not an injection."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from scanner.advisories.feeds import FeedError, read_retirejs
from scanner.deps.vendored import VendoredLibraries
from scanner.libraries.matcher import Copy, CopyKind

log = logging.getLogger(__name__)
RETIRE_REPOSITORY = Path("advisories") / "retirejs-jsrepository-v4.json"
# RetireJS library keys that differ from the npm package name.
BANNER_REACH = 4096
_NPM_NAMES = {"jquery-ui-dialog": "jquery-ui", "angularjs": "angular", "moment.js": "moment"}


class ReleaseCheck:
    """Compiled once per process from the shipped RetireJS repository."""

    def __init__(self, vendored: VendoredLibraries | None) -> None:
        self.vendored = vendored

    @classmethod
    def from_rules(cls, rules_dir: Path) -> ReleaseCheck:
        try:
            feed = read_retirejs(rules_dir / RETIRE_REPOSITORY)
        except (FeedError, OSError) as exc:
            # Without it a modified copy is still reported, only never re-judged.
            log.warning("RetireJS detectors unavailable for release checks: %s", exc)
            return cls(None)
        return cls(VendoredLibraries(feed.detectors))

    def settle(self, path: str, data: bytes, copies: Sequence[Copy]) -> None:
        """Re-judge modified copies whose text names a release the entry is not."""
        if self.vendored is None:
            return
        for c in copies:
            if c.kind is not CopyKind.MODIFIED:
                continue
            # Around the copy too: a banner the matcher could not verify sits just before.
            window = data[max(0, c.start - BANNER_REACH) : c.end + BANNER_REACH]
            named = self.vendored.identify(path, window)
            versions = {v for e in [c.entry, *c.alternatives] for v in e.versions}
            if any(
                _NPM_NAMES.get(lib, lib) == c.entry.name and version not in versions
                for lib, version, _ in named
            ):
                c.kind = CopyKind.OTHER_RELEASE
