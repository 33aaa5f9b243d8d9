"""Content-defined chunks: the same bytes give the same chunks wherever they sit in a file.

A cut falls just after a separator (``;``, ``}`` or a newline) when a hash of the bytes
before it hits a target, so where the cuts fall depends only on nearby content: a
library concatenated into a bundle is cut as it was cut when the index was built, except
near its edges. Each chunk is known by a short keyed-free hash and its length; the
matcher verifies neighbours of an anchor by length and hash alone (``matcher.py``).
"""

from __future__ import annotations

import hashlib
import itertools
import zlib
from typing import NamedTuple

# How many bytes before a cut decide it: enough to be specific, few enough to re-sync
# within a statement after a change.
WINDOW = 16
# One separator in this many becomes a cut: chunks of about 1-2 KB in minified code.
DIVISOR = 48
DIGEST_BYTES = 8
# Past this without a cut, cut anyway: edits are located within a chunk, so a long one
# (a data blob, repetitive code) would blur them. Such cuts depend on the previous cut,
# so they anchor less well, but the matcher verifies across them all the same.
MAX_CHUNK = 2048
# Separators are mapped to ";" so one C-level split finds them all.
_SEPARATORS = bytes.maketrans(b"}\n", b";;")
_ONE = 1
CHUNKER = f"sep-crc32/w{WINDOW}/d{DIVISOR}/max{MAX_CHUNK}/blake2b{DIGEST_BYTES}"


class Chunk(NamedTuple):
    offset: int
    length: int
    digest: bytes


def digest(data: bytes | memoryview) -> bytes:
    """The chunk hash: short, since it identifies chunks of a known set, not secrets."""
    return hashlib.blake2b(data, digest_size=DIGEST_BYTES).digest()


def cut_points(data: bytes) -> list[int]:
    """Offsets just after each separator whose preceding window hashes to the target."""
    cuts: list[int] = []
    last = 0
    end = len(data)
    crc = zlib.crc32
    # Positions just after each separator, summed in C: the loop below is the only
    # Python-level work per separator (about 30,000 in 1 MB of minified code).
    pieces = data.translate(_SEPARATORS).split(b";")
    for pos in itertools.accumulate(map(_ONE.__add__, map(len, pieces))):
        while pos - last > MAX_CHUNK:
            last += MAX_CHUNK
            cuts.append(last)
        if pos >= end:
            break
        if crc(data[pos - WINDOW if pos > WINDOW else 0 : pos]) % DIVISOR == 0:
            cuts.append(pos)
            last = pos
    return cuts


def chunk(data: bytes) -> list[Chunk]:
    """The whole of ``data`` as consecutive chunks."""
    out: list[Chunk] = []
    view = memoryview(data)
    start = 0
    for cut in [*cut_points(data), len(data)]:
        if cut > start:
            out.append(Chunk(start, cut - start, digest(view[start:cut])))
            start = cut
    return out
