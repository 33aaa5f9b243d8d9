"""Reading a scanned bundle's files for the code viewer and the file diff.

Always through intake (service.bundles.materialized): the same limits as the scan, the
same tree, and only paths that are in that tree (never a path taken from a request).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from service.blobs import BlobNotFoundError
from service.bundles import materialized
from service.models import Scan
from service.services import Services

MAX_VIEW_BYTES = 4 * 1024 * 1024
MAX_DIFF_LINES = 20_000


class FileUnavailableError(LookupError):
    """Not in the scanned tree, too large, binary, or the bundle is gone."""


@dataclass(frozen=True)
class FileText:
    path: str
    text: str
    size: int


def read_text(svc: Services, scan: Scan, path: str) -> FileText:
    try:
        with materialized(svc, scan) as opened:
            ws = opened.workspace
            if ws is None or path not in ws.paths:
                raise FileUnavailableError("no such file in the scanned bundle")
            size = ws.path_of(path).stat().st_size
            if size > MAX_VIEW_BYTES:
                raise FileUnavailableError(f"the file is {size} bytes: too large to show")
            if not ws.is_text(path):
                raise FileUnavailableError("a binary file: not shown")
            return FileText(path, ws.read_text(path), size)
    except BlobNotFoundError:
        raise FileUnavailableError("the bundle is no longer stored") from None


def diff(svc: Services, before: Scan, after: Scan, path: str) -> list[str]:
    """A unified diff of one file between two scans (empty text for a side without it)."""

    def side(scan: Scan) -> list[str]:
        try:
            return read_text(svc, scan, path).text.splitlines()
        except FileUnavailableError as exc:
            if "no such file" in str(exc):
                return []
            raise

    lines = list(
        difflib.unified_diff(
            side(before), side(after), "approved/" + path, "this/" + path, n=3, lineterm=""
        )
    )
    return lines[:MAX_DIFF_LINES]
