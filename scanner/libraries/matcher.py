"""Find published library files inside a bundle's file, and where a copy was changed.

Chunks of the file whose hash is in the index are anchors. From an anchor the matcher
walks the published file's chunk table both ways, checking each next chunk by its length
and hash at the expected place, so a verified run is byte-for-byte the published code
whatever the surrounding bundle does to chunk boundaries. Runs of one published file in
order are one copy; what lies between two runs is an edit. An edit that is a pure
insertion is located exactly: the one unverified published chunk must hash right once
the inserted bytes are taken out, and the matcher tries each place they could be.
"""

from __future__ import annotations

import enum
import hashlib
import itertools
from collections import defaultdict
from dataclasses import dataclass, field

from scanner.libraries.chunks import DIGEST_BYTES, chunk, digest
from scanner.libraries.index import EDGE_BYTES, LibraryFile, LibraryIndex

# An edit bigger than this between two runs makes them two copies, not one edited copy.
MAX_EDIT_BYTES = 256 * 1024
# Trying every place for an insertion costs (chunk length)^2 bytes of hashing.
MAX_EXACT_CHUNK = 4 * 1024
# How far past a file's last verified chunk to look for its end (an insertion there).
MAX_EDGE_SEARCH = 16 * 1024
# More edits than this, or more than this share of the file edited, is another release
# or a fork of the library, not an injection into it.
MAX_EDITS = 6
MAX_EDITED_SHARE = 0.2
# Files of the index tried per bundle file, most anchored first: a bundle of ten
# libraries anchors every release of each, and a small one must still get its turn.
MAX_CANDIDATES = 256
# A chunk this short ("};") is in half the index: no evidence of any one file.
MIN_ANCHOR_BYTES = 64
# A copy must verify this much (or the whole file) before it is a copy at all, and this
# share of its file before an edit at its edges is looked for.
MIN_COPY_BYTES = 512
# Less of a published file than this is a fragment (helpers that releases and other
# libraries share), not a copy: neither reported nor excused.
MIN_COPY_SHARE = 0.5
MIN_EDGE_SEARCH_SHARE = 0.5


class EditKind(enum.StrEnum):
    INSERTION = "insertion"
    REPLACEMENT = "replacement"
    DELETION = "deletion"


@dataclass(frozen=True)
class Edit:
    """Bundle bytes [start, end) stand where the published file had ``pristine_length``
    bytes at ``pristine_offset``; ``exact`` when proven a pure insertion of exactly them."""

    kind: EditKind
    start: int
    end: int
    pristine_offset: int
    pristine_length: int
    exact: bool


@dataclass(frozen=True)
class Run:
    first: int  # chunk indexes in the published file, inclusive
    last: int
    start: int  # bundle byte span
    end: int


class CopyKind(enum.StrEnum):
    PRISTINE = "pristine"  # every byte of the published file, unchanged
    PARTIAL = "partial"  # unchanged, but an edge (a banner, the last chunk) was not verified
    MODIFIED = "modified"  # the published file with edits inside it
    OTHER_RELEASE = "other-release"  # much of it, but edited like a release not indexed


@dataclass
class Copy:
    entry: LibraryFile
    runs: list[Run]
    edits: list[Edit] = field(default_factory=list)
    kind: CopyKind = CopyKind.PRISTINE
    # Other entries (versions) whose chunks verified the same bytes.
    alternatives: list[LibraryFile] = field(default_factory=list)

    @property
    def start(self) -> int:
        return min([self.runs[0].start, *(e.start for e in self.edits)])

    @property
    def end(self) -> int:
        return max([self.runs[-1].end, *(e.end for e in self.edits)])

    @property
    def verified(self) -> int:
        return sum(r.end - r.start for r in self.runs)

    @property
    def label(self) -> str:
        versions = dict.fromkeys(v for e in [self.entry, *self.alternatives] for v in e.versions)
        return f"{self.entry.name}@{'/'.join(versions)}"

    def pristine_spans(self) -> list[tuple[int, int]]:
        return [(r.start, r.end) for r in self.runs]


def recognise(data: bytes, index: LibraryIndex) -> list[Copy]:
    """The copies of indexed files in ``data``, best first, none overlapping another."""
    if not len(index):
        return []
    anchors: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for c in chunk(data):
        if c.length < MIN_ANCHOR_BYTES:
            continue
        for entry_no, k in index.refs(c.digest):
            anchors[entry_no].append((c.offset, k))
    ranked = sorted(anchors, key=lambda e: (-_distinct(anchors[e]), e))[:MAX_CANDIDATES]
    copies: list[Copy] = []
    for entry_no in ranked:
        entry = index.files[entry_no]
        if _distinct(anchors[entry_no]) < min(2, len(entry.chunks)):
            continue
        runs = _runs(data, entry, anchors[entry_no])
        for group in _group(entry, runs):
            verified = sum(r.end - r.start for r in group)
            if verified >= max(min(MIN_COPY_BYTES, entry.size), MIN_COPY_SHARE * entry.size):
                copies.append(_classify(data, entry, group))
    return _choose(copies)


def _distinct(found: list[tuple[int, int]]) -> int:
    """How many places of the bundle file anchor an entry (one short chunk may stand
    for many places of the published file)."""
    return len({offset for offset, _ in found})


def _runs(data: bytes, entry: LibraryFile, found: list[tuple[int, int]]) -> list[Run]:
    """Maximal verified runs through each anchor."""
    runs: list[Run] = []
    for start, k in sorted(found):
        if runs and runs[-1].start <= start < runs[-1].end:
            continue
        first, last, lo, hi = k, k, start, start + entry.chunks[k][1]
        while last + 1 < len(entry.chunks) and _verifies(data, hi, entry.chunks[last + 1]):
            last += 1
            hi += entry.chunks[last][1]
        while first > 0 and _verifies_before(data, lo, entry.chunks[first - 1]):
            first -= 1
            lo -= entry.chunks[first][1]
        runs.append(Run(first, last, lo, hi))
    return runs


def _verifies(data: bytes, at: int, ref: tuple[bytes, int]) -> bool:
    h, n = ref
    return at >= 0 and at + n <= len(data) and digest(memoryview(data)[at : at + n]) == h


def _verifies_before(data: bytes, end: int, ref: tuple[bytes, int]) -> bool:
    return _verifies(data, end - ref[1], ref)


def _group(entry: LibraryFile, runs: list[Run]) -> list[list[Run]]:
    """Runs in the published order, close enough to be one copy with edits between."""
    groups: list[list[Run]] = []
    for run in runs:
        prev = groups[-1][-1] if groups else None
        if (
            prev is not None
            and run.first > prev.last
            and run.start >= prev.end
            and run.start - prev.end <= MAX_EDIT_BYTES
        ):
            groups[-1].append(run)
        else:
            groups.append([run])
    return groups


def _classify(data: bytes, entry: LibraryFile, runs: list[Run]) -> Copy:
    copy = Copy(entry, runs)
    offsets = [*entry.offsets(), entry.size]
    for a, b in itertools.pairwise(runs):
        copy.edits.append(_edit(data, entry, offsets, a.end, b.start, a.last + 1, b.first))
    copy.edits.extend(_edge_edits(data, entry, offsets, runs))
    if copy.edits:
        edited = sum(e.pristine_length + (e.end - e.start) for e in copy.edits)
        if (
            copy.verified < (1 - MAX_EDITED_SHARE) * entry.size
            or _version_unconfirmed(entry, offsets, copy)
            or len(copy.edits) > MAX_EDITS
            or edited > MAX_EDITED_SHARE * entry.size
        ):
            copy.kind = CopyKind.OTHER_RELEASE
        else:
            copy.kind = CopyKind.MODIFIED
    elif runs[0].first > 0 or runs[-1].last < len(entry.chunks) - 1:
        copy.kind = CopyKind.PARTIAL
    return copy


def _version_unconfirmed(entry: LibraryFile, offsets: list[int], copy: Copy) -> bool:
    """Whether a place holding the version string was changed or not verified: then the
    edits are as likely another release's changes as an injection. (A proven insertion
    leaves every published byte verified.)"""
    unverified = [
        (e.pristine_offset, e.pristine_offset + e.pristine_length)
        for e in copy.edits
        if not e.exact
    ]
    head, tail = offsets[copy.runs[0].first], offsets[copy.runs[-1].last + 1]
    if head > 0 and not any(e.exact and e.pristine_offset <= head for e in copy.edits):
        unverified.append((0, head))
    if tail < entry.size and not any(e.exact and e.pristine_offset >= tail for e in copy.edits):
        unverified.append((tail, entry.size))
    return any(lo <= m < hi for lo, hi in unverified for m in entry.version_marks)


def _edit(
    data: bytes, entry: LibraryFile, offsets: list[int], start: int, end: int, k1: int, k2: int
) -> Edit:
    """Bundle bytes [start, end) in place of published chunks k1..k2-1."""
    p_off, p_len = offsets[k1], offsets[k2] - offsets[k1]
    inserted = (end - start) - p_len
    if p_len == 0:
        return Edit(EditKind.INSERTION, start, end, p_off, 0, True)
    if inserted > 0 and k2 - k1 == 1 and p_len <= MAX_EXACT_CHUNK:
        x = _insertion_point(data[start:end], inserted, entry.chunks[k1][0])
        if x is not None:
            return Edit(EditKind.INSERTION, start + x, start + x + inserted, p_off + x, 0, True)
    kind = EditKind.DELETION if end == start else EditKind.REPLACEMENT
    return Edit(kind, start, end, p_off, p_len, False)


def _insertion_point(region: bytes, inserted: int, want: bytes) -> int | None:
    """Where taking ``inserted`` bytes out of ``region`` leaves the published chunk."""
    prefix = hashlib.blake2b(digest_size=DIGEST_BYTES)
    view = memoryview(region)
    for x in range(len(region) - inserted + 1):
        h = prefix.copy()
        h.update(view[x + inserted :])
        if h.digest() == want:
            return x
        prefix.update(view[x : x + 1])
    return None


def _edge_edits(data: bytes, entry: LibraryFile, offsets: list[int], runs: list[Run]) -> list[Edit]:
    """An insertion into the first or last published chunk, found by the file's edges."""
    out: list[Edit] = []
    verified = sum(r.end - r.start for r in runs)
    if verified < MIN_EDGE_SEARCH_SHARE * entry.size:
        return out
    last = runs[-1]
    k = len(entry.chunks) - 1
    if last.last == k - 1 and entry.size >= 2 * EDGE_BYTES:
        window = data[last.end : last.end + entry.chunks[k][1] + MAX_EDGE_SEARCH]
        for end in range(entry.chunks[k][1], len(window) + 1):
            if digest(window[end - EDGE_BYTES : end]) == entry.tail:
                edit = _edit(data, entry, offsets, last.end, last.end + end, k, k + 1)
                if edit.exact:
                    out.append(edit)
                    break
    first = runs[0]
    if first.first == 1 and entry.size >= 2 * EDGE_BYTES:
        n = entry.chunks[0][1]
        lo = max(0, first.start - n - MAX_EDGE_SEARCH)
        window = data[lo : first.start]
        for begin in range(len(window) - n, -1, -1):
            if digest(window[begin : begin + EDGE_BYTES]) == entry.head:
                edit = _edit(data, entry, offsets, lo + begin, first.start, 0, 1)
                if edit.exact:
                    out.append(edit)
                    break
    return out


def _choose(copies: list[Copy]) -> list[Copy]:
    """The best explanation of each part of the file: most verified bytes first; a copy
    verifying exactly the same bytes as a chosen one is an alternative version of it."""
    copies.sort(key=lambda c: (-c.verified, len(c.edits), c.entry.name))
    chosen: list[Copy] = []
    for c in copies:
        twin = next(
            (
                x
                for x in chosen
                if x.entry.name == c.entry.name
                and x.pristine_spans() == c.pristine_spans()
                and len(x.edits) == len(c.edits)
            ),
            None,
        )
        if twin is not None:
            twin.alternatives.append(c.entry)
        elif not any(c.start < x.end and x.start < c.end for x in chosen):
            chosen.append(c)
    chosen.sort(key=lambda c: c.start)
    return chosen
