"""A strict tar.gz reader: exactly one gzip member, every 512-byte header parsed here.

tarfile never sees the bundle: on Python 3.11.7 it parses pax headers with a quadratic
regex (CVE-2024-6232) and reads a whole pax header into memory, whatever its size. Here
an extended header is capped before it is read, numeric fields must be plain octal,
and header kinds that extractors apply differently (global pax headers, GNU sparse and
multi-volume entries, pax size or link overrides, GNU fields in the prefix area) are
refused. Only zeros may follow the end-of-archive blocks, and nothing the gzip member.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from scanner.archive.violation import ArchiveViolation, malformed
from scanner.config import ArchiveLimits

BLOCK = 512
CHUNK = 64 * 1024
_ZERO_BLOCK = bytes(BLOCK)
_POSIX_MAGIC = b"ustar\x0000"
_GNU_MAGIC = b"ustar  \x00"
_FILE_TYPES = (b"0", b"\x00")
_LINK_TYPES = {b"1": "a hard link", b"2": "a symbolic link", b"K": "a GNU long link name"}
_SPECIAL_TYPES = {
    b"3": "a character device",
    b"4": "a block device",
    b"6": "a FIFO",
    b"S": "a GNU sparse file",
}
# pax keys that change nothing about which bytes land under which name.
_PAX_TIMES = frozenset({"mtime", "atime", "ctime"})
_PAX_IDS = frozenset({"uid", "gid"})
_PAX_TEXT = frozenset({"uname", "gname", "comment"})


@dataclass(frozen=True)
class TarMember:
    name: str
    is_dir: bool
    size: int


class _Inflated:
    """The decompressed tar stream: one gzip member, nothing after it, at most ``cap`` bytes."""

    def __init__(self, fh: BinaryIO, cap: int) -> None:
        self._fh = fh
        self._cap = cap
        self._inflater = zlib.decompressobj(wbits=31)  # gzip framing only, CRC checked
        self._pending = b""
        self._buf = bytearray()
        self._ended = False
        self.total = 0

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes; fewer only at the end of the stream."""
        while len(self._buf) < n and self._fill():
            pass
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def _fill(self) -> bool:
        while not self._inflater.eof:
            data = self._pending or self._fh.read(CHUNK)
            try:
                out = self._inflater.decompress(data, CHUNK)
            except zlib.error as exc:
                raise malformed(f"bad gzip data ({exc})") from None
            self._pending = self._inflater.unconsumed_tail
            if out:
                self.total += len(out)
                if self.total > self._cap:
                    raise ArchiveViolation(
                        "archive-too-large",
                        f"the tar stream unpacks to more than {self._cap} bytes",
                    )
                self._buf += out
                return True
            if not data:
                raise malformed("the gzip stream is cut short")
        if not self._ended:
            self._ended = True
            if self._inflater.unused_data or self._fh.read(1):
                raise malformed(
                    "data follows the gzip stream (a second gzip member or appended bytes)"
                )
        return False


@dataclass
class _Header:
    typeflag: bytes
    name: bytes
    size: int
    names_link_target: bool


def tar_members(fh: BinaryIO, limits: ArchiveLimits) -> Iterator[tuple[TarMember, Iterator[bytes]]]:
    """Each file or directory with an iterator over its data; read it before the next."""
    cap = limits.max_total_bytes + (limits.max_files + 2) * 2 * BLOCK + 1024 * 1024
    stream = _Inflated(fh, cap)
    extended: str | None = None
    have_extended = False
    while True:
        block = stream.read(BLOCK)
        if len(block) < BLOCK:
            raise malformed("the tar stream ends without its end-of-archive blocks")
        if block == _ZERO_BLOCK:
            if have_extended:
                raise malformed("an extended header is not followed by a member")
            _check_end(stream)
            return
        header = _parse_header(block)
        if header.typeflag in (b"x", b"L"):
            if have_extended:
                raise malformed("two extended headers for one member")
            data = _extended_data(stream, header, limits)
            extended = _pax_name(data) if header.typeflag == b"x" else _long_name(data)
            have_extended = True
            continue
        member = _member(header, extended, limits)
        chunks = _data(stream, member)
        yield member, chunks
        for _ in chunks:  # whatever the caller left unread
            pass
        extended, have_extended = None, False


def _member(header: _Header, extended: str | None, limits: ArchiveLimits) -> TarMember:
    name = extended if extended is not None else _decode(header.name)
    _refuse_kind(header.typeflag, name)
    if header.names_link_target:
        raise malformed(f"{name!r} is not a link but names a link target", name)
    is_dir = header.typeflag == b"5"
    if is_dir and header.size:
        raise malformed(f"directory {name!r} carries {header.size} bytes of data", name)
    if not is_dir and name.endswith("/"):
        raise malformed(
            f"file {name!r} has a directory's name (old tars read it as a directory)", name
        )
    if header.size > limits.max_file_bytes:
        raise ArchiveViolation(
            "archive-file-too-large",
            f"{name!r} declares {header.size} bytes, over {limits.max_file_bytes}",
            name,
        )
    return TarMember(name, is_dir, header.size)


def _refuse_kind(typeflag: bytes, name: str) -> None:
    if typeflag in _FILE_TYPES or typeflag == b"5":
        return
    if typeflag in _LINK_TYPES:
        raise ArchiveViolation("archive-link", f"{name!r} is {_LINK_TYPES[typeflag]}", name)
    if typeflag in _SPECIAL_TYPES:
        raise ArchiveViolation(
            "archive-special-file", f"{name!r} is {_SPECIAL_TYPES[typeflag]}", name
        )
    if typeflag == b"g":
        raise malformed(
            "a global pax header (it changes every later member, and tools apply it differently)"
        )
    raise ArchiveViolation("archive-unsupported", f"{name!r} has tar entry type {typeflag!r}", name)


def _check_end(stream: _Inflated) -> None:
    """After the first zero block: at least one more, then nothing but zero padding."""
    rest = 0
    while chunk := stream.read(CHUNK):
        if chunk.count(0) != len(chunk):
            raise malformed("data follows the tar end-of-archive blocks")
        rest += len(chunk)
    if rest < BLOCK or rest % BLOCK:
        raise malformed("the tar end-of-archive blocks are cut short")


def _data(stream: _Inflated, member: TarMember) -> Iterator[bytes]:
    remaining = member.size
    while remaining:
        data = stream.read(min(CHUNK, remaining))
        if not data:
            raise malformed(f"the archive ends inside {member.name!r}", member.name)
        remaining -= len(data)
        yield data
    _check_padding(stream, member.size, member.name)


def _check_padding(stream: _Inflated, size: int, name: str | None) -> None:
    pad = -size % BLOCK
    padding = stream.read(pad)
    if len(padding) < pad:
        raise malformed("the tar stream ends inside a member's padding", name)
    if padding.count(0) != pad:
        raise malformed("non-zero bytes in a member's block padding", name)


# ---------------------------------------------------------------- headers


def _parse_header(block: bytes) -> _Header:
    stored = _octal(block[148:156], "checksum", required=True)
    if stored != sum(block[:148]) + 8 * 0x20 + sum(block[156:]):
        raise malformed("tar header checksum mismatch (a corrupt or hand-edited header)")
    magic = block[257:265]
    if magic == _POSIX_MAGIC:
        prefix, unused = _cstring(block[345:500], "prefix"), block[500:]
    elif magic == _GNU_MAGIC:
        # GNU keeps times, a sparse map and a volume offset here; tarfile would read the
        # area as a POSIX name prefix, libarchive would not.
        prefix, unused = b"", block[345:]
    else:
        raise malformed("not a POSIX (ustar) or GNU tar header")
    if any(unused):
        raise malformed("a tar header sets fields outside POSIX ustar (GNU times, sparse map)")
    typeflag = block[156:157]
    name = _cstring(block[:100], "name")
    for start, end, what in (
        (100, 108, "mode"),
        (108, 116, "uid"),
        (116, 124, "gid"),
        (136, 148, "mtime"),
        (329, 337, "devmajor"),
        (337, 345, "devminor"),
    ):
        _octal(block[start:end], what, required=False)
    size = _octal(block[124:136], "size", required=True)
    return _Header(typeflag, prefix + b"/" + name if prefix else name, size, any(block[157:257]))


def _octal(field: bytes, what: str, *, required: bool) -> int:
    """Plain octal digits, leading spaces and trailing NULs or spaces allowed; tools
    disagree on anything else (base-256, digits after a terminator, signs)."""
    digits = field.lstrip(b" ").rstrip(b" \x00")
    if not digits:
        if required:
            raise malformed(f"tar header {what} field is empty")
        return 0
    if any(c not in b"01234567" for c in digits):
        raise malformed(f"tar header {what} field is not plain octal")
    return int(digits, 8)


def _cstring(field: bytes, what: str) -> bytes:
    value, _, rest = field.partition(b"\x00")
    if any(rest):
        raise malformed(f"bytes after the end of the tar header's {what} field")
    return value


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ArchiveViolation(
            "archive-invalid-name",
            "member name is not valid UTF-8",
            raw.decode("utf-8", "replace"),
        ) from None


# ---------------------------------------------------------------- extended headers


def _extended_data(stream: _Inflated, header: _Header, limits: ArchiveLimits) -> bytes:
    # Capped before a byte of it is read: a 100 MB pax header never reaches memory.
    if header.size > limits.max_header_bytes:
        raise malformed(
            f"an extended tar header of {header.size} bytes, over {limits.max_header_bytes}"
        )
    data = stream.read(header.size)
    if len(data) < header.size:
        raise malformed("the tar stream ends inside an extended header")
    _check_padding(stream, header.size, None)
    return data


def _long_name(data: bytes) -> str:
    if not data.endswith(b"\x00") or b"\x00" in data[:-1]:
        raise malformed("a GNU long name that is not one NUL-terminated string")
    return _decode(data[:-1])


def _pax_name(data: bytes) -> str | None:
    """The path a pax header gives the next member; every other key must be harmless."""
    records = _pax_records(data)
    for key, value in records.items():
        if key in _PAX_TIMES or key in _PAX_IDS:
            _pax_number(key, value, fraction=key in _PAX_TIMES)
        elif key == "size":
            raise malformed(
                "a pax header overrides the size (readers that ignore it split the data"
                " differently)"
            )
        elif key == "linkpath":
            raise ArchiveViolation("archive-link", "a pax header sets a link target")
        elif key.startswith("GNU.sparse."):
            raise ArchiveViolation("archive-special-file", "a pax header describes a sparse file")
        elif key not in _PAX_TEXT and key != "path":
            raise malformed(f"pax header key {key!r} is not accepted (some extractors act on it)")
    path = records.get("path")
    if path is None:
        return None
    if not path or b"\x00" in path:
        raise ArchiveViolation("archive-invalid-name", "a pax path that is empty or holds a NUL")
    return _decode(path)


def _pax_records(data: bytes) -> dict[str, bytes]:
    """``<length> <key>=<value>\\n`` records that exactly fill the header, keys once."""
    records: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos, pos + 8)
        digits = data[pos:space] if space > pos else b""
        if not digits.isdigit() or digits.startswith(b"0"):
            raise malformed("a pax record without a plain decimal length")
        end = pos + int(digits)
        if end > len(data) or end <= space + 1 or data[end - 1] != 0x0A:
            raise malformed("a pax record whose length does not match its text")
        key, eq, value = data[space + 1 : end - 1].partition(b"=")
        if not eq or not key or not key.isascii():
            raise malformed("a malformed pax record")
        name = key.decode("ascii")
        if name in records:
            raise malformed(f"pax key {name!r} appears twice")
        records[name] = value
        pos = end
    return records


def _pax_number(key: str, value: bytes, *, fraction: bool) -> None:
    whole, dot, part = value.partition(b".")
    ok = whole.isdigit() and len(whole) <= 20
    if dot:
        ok = ok and fraction and part.isdigit() and len(part) <= 9
    if not ok:
        raise malformed(f"pax {key} is not a plain number")
