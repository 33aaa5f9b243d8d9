"""A strict zip reader: the end records, the central directory and every local header
must describe one archive, with the members back to back from offset 0.

Python's zipfile reads the central directory; Info-ZIP unzip, Java's ZipInputStream and
libarchive's streaming reader can follow the local headers instead. Whatever lets the two
views differ is refused: a local header that disagrees with its central entry, bytes the
directory does not account for (prepended, between members, appended, a comment), a data
descriptor that is missing or says something else, extra fields that rename members.
"""

from __future__ import annotations

import stat
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from scanner.archive.violation import ArchiveViolation, malformed
from scanner.config import ArchiveLimits

CHUNK = 64 * 1024
STORED, DEFLATED = 0, 8
_LOCAL = struct.Struct("<4sHHHHHIIIHH")  # 30 bytes
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")  # 46 bytes
_END = struct.Struct("<4sHHHHIIH")  # 22 bytes
_END64 = struct.Struct("<4sQHHIIQQQQ")  # 56 bytes, without extensible data
_LOCATOR64 = struct.Struct("<4sIQI")  # 20 bytes
_DESCRIPTOR_SIG = b"PK\x07\x08"
_MAX32, _MAX16 = 0xFFFFFFFF, 0xFFFF
# 4.5 (zip64) is the newest feature level stored and deflated members need; zipfile
# raises NotImplementedError past 6.3, so a higher claim must never reach it.
_MAX_VERSION_NEEDED = 45
_ENCRYPTION_FLAGS = 0x0001 | 0x0040 | 0x2000  # traditional, strong, masked local headers
_DESCRIPTOR_FLAG = 0x0008
_UTF8_FLAG = 0x0800
_DEFLATE_OPTIONS = 0x0006  # the level the writer chose: informational only
_KNOWN_FLAGS = _ENCRYPTION_FLAGS | _DESCRIPTOR_FLAG | _UTF8_FLAG | _DEFLATE_OPTIONS
# Extra fields that carry times and owners only. Any other may rename a member (0x7075,
# the Unicode path unzip honours and zipfile ignores), encrypt it, or mean something to
# one tool only.
_ZIP64_EXTRA = 0x0001
_HARMLESS_EXTRAS = frozenset({0x000A, 0x5455, 0x5855, 0x7855, 0x7875})
_ENCRYPTION_EXTRAS = frozenset({0x0017, 0x9901})
_MAX_EXTRA_BYTES = 1024
# Systems whose attribute bits every extractor reads alike: MS-DOS/FAT, Unix, NTFS.
_HOSTS = frozenset({0, 3, 10})
_DOS_DIRECTORY = 0x10


@dataclass(frozen=True)
class ZipMember:
    """One member whose local header and central entry agree; where its data lies."""

    name: str
    is_dir: bool
    method: int
    crc: int
    packed: int
    size: int
    data_offset: int
    descriptor: bool  # CRC and sizes follow the data (a streamed write)


@dataclass(frozen=True)
class _Directory:
    offset: int
    size: int
    entries: int


@dataclass(frozen=True)
class _Central:
    raw_name: bytes
    name: str
    needed: int
    flags: int
    method: int
    stamp: tuple[int, int]  # DOS time, date
    crc: int
    packed: int
    size: int
    offset: int
    is_dir: bool


def read_zip(fh: BinaryIO, size: int, limits: ArchiveLimits) -> list[ZipMember]:
    """Every member, checked against both directories; raises ArchiveViolation."""
    directory = _end_of_archive(fh, size, limits)
    fh.seek(directory.offset)
    centrals = _central_entries(fh.read(directory.size), directory.entries, limits)
    members = []
    expected = 0
    for central in centrals:
        if central.offset != expected:
            raise _layout_error(central, expected)
        member, expected = _local_member(fh, central)
        members.append(member)
    if expected != directory.offset:
        raise malformed(
            f"{directory.offset - expected} bytes between the last member and the central"
            " directory (data no directory entry describes)"
        )
    return members


def _layout_error(central: _Central, expected: int) -> ArchiveViolation:
    if central.offset > expected:
        why = (
            f"{central.offset - expected} bytes before it that no directory entry describes"
            " (or the directory lists the members out of order)"
        )
    else:
        why = "it overlaps the member before it, or the directory lists members out of order"
    return ArchiveViolation(
        "archive-overlap" if central.offset < expected else "archive-malformed",
        f"{central.name!r} starts at offset {central.offset}, expected {expected}: {why}",
        central.name,
    )


# ---------------------------------------------------------------- end records


def _end_of_archive(fh: BinaryIO, size: int, limits: ArchiveLimits) -> _Directory:
    """Where the central directory is, from end records that must end the file exactly."""
    end_pos = size - _END.size
    if end_pos < 0:
        raise malformed("too short to be a zip archive")
    fh.seek(end_pos)
    sig, disk, cd_disk, on_disk, total, cd_size, cd_offset, comment = _END.unpack(fh.read(22))
    if sig != b"PK\x05\x06" or comment:
        raise malformed(_explain_missing_end(fh, size))
    if disk or cd_disk:
        raise malformed("multi-disk (spanned) archives are not accepted")
    markers = _MAX16 in (on_disk, total) or _MAX32 in (cd_size, cd_offset)
    dir_end = end_pos
    if end_pos >= _LOCATOR64.size:
        fh.seek(end_pos - _LOCATOR64.size)
        locator = fh.read(_LOCATOR64.size)
        if locator[:4] == b"PK\x06\x07":
            dir_end, on_disk, total, cd_size, cd_offset = _zip64_end(
                fh, end_pos - _LOCATOR64.size, locator, (on_disk, total, cd_size, cd_offset)
            )
            markers = False
    if markers:
        raise malformed("the end record points to zip64 values but there is no zip64 locator")
    if on_disk != total:
        raise malformed("the end record's entry counts disagree")
    if total > limits.max_files:
        raise ArchiveViolation(
            "archive-too-many-files", f"{total} members, over {limits.max_files}"
        )
    if cd_size > total * (_CENTRAL.size + limits.max_path_bytes + _MAX_EXTRA_BYTES):
        raise malformed(f"a central directory of {cd_size} bytes for {total} entries")
    if cd_offset + cd_size != dir_end:
        raise malformed(
            "the central directory does not end where the end record begins"
            f" ({cd_offset} + {cd_size} != {dir_end}): bytes unaccounted for"
        )
    return _Directory(cd_offset, cd_size, total)


def _explain_missing_end(fh: BinaryIO, size: int) -> str:
    window = min(size, _END.size + 0xFFFF + 64 * 1024)
    fh.seek(size - window)
    found = fh.read(window).rfind(b"PK\x05\x06")
    if found < 0:
        return "no end-of-central-directory record"
    trailing = window - found - _END.size
    return (
        f"{trailing} bytes follow the end-of-central-directory record (an archive comment"
        " or appended data): refused, they can hide a second directory"
    )


def _zip64_end(
    fh: BinaryIO, locator_pos: int, locator: bytes, plain: tuple[int, int, int, int]
) -> tuple[int, int, int, int, int]:
    """The zip64 end record, which must sit right before its locator and agree with the
    plain end record wherever that one is not a 0xFFFF.. marker."""
    _, disk_of_end64, end64_pos, disks = _LOCATOR64.unpack(locator)
    if disk_of_end64 or disks != 1:
        raise malformed("multi-disk (spanned) archives are not accepted")
    if end64_pos != locator_pos - _END64.size:
        raise malformed("the zip64 end record is not right before its locator")
    fh.seek(end64_pos)
    sig, rec_size, _, _, disk, cd_disk, on_disk, total, cd_size, cd_offset = _END64.unpack(
        fh.read(_END64.size)
    )
    if sig != b"PK\x06\x06" or rec_size != _END64.size - 12:
        raise malformed("malformed zip64 end record (or one with extensible data)")
    if disk or cd_disk:
        raise malformed("multi-disk (spanned) archives are not accepted")
    wide = (on_disk, total, cd_size, cd_offset)
    for narrow, value, marker in zip(plain, wide, (_MAX16, _MAX16, _MAX32, _MAX32), strict=True):
        if narrow not in (marker, value):
            raise malformed("the end record and the zip64 end record disagree")
    return end64_pos, on_disk, total, cd_size, cd_offset


# ---------------------------------------------------------------- central directory


def _central_entries(data: bytes, count: int, limits: ArchiveLimits) -> list[_Central]:
    out: list[_Central] = []
    pos = 0
    for _ in range(count):
        if pos + _CENTRAL.size > len(data):
            raise malformed("the central directory is shorter than its entry count")
        fields = _CENTRAL.unpack_from(data, pos)
        (sig, made_by, needed, flags, method, time, date, crc, packed, size) = fields[:10]
        name_len, extra_len, comment_len, disk, _, attrs, offset = fields[10:]
        if sig != b"PK\x01\x02":
            raise malformed(f"central directory entry {len(out) + 1} has a bad signature")
        start = pos + _CENTRAL.size
        pos = start + name_len + extra_len + comment_len
        if pos > len(data):
            raise malformed("a central directory entry runs past the directory")
        raw_name = data[start : start + name_len]
        name = _decode_name(raw_name, flags)
        if comment_len:
            raise malformed(f"{name!r} has a file comment", name)
        if disk:
            raise malformed("multi-disk (spanned) archives are not accepted", name)
        _check_entry(name, needed, flags, method)
        is_dir = _is_dir(name, made_by, attrs)
        extras = _extras(data[start + name_len : start + name_len + extra_len], name)
        size, packed, offset = _central_zip64(extras, name, size, packed, offset)
        if size > limits.max_file_bytes:
            raise ArchiveViolation(
                "archive-file-too-large",
                f"{name!r} declares {size} bytes, over {limits.max_file_bytes}",
                name,
            )
        stamp = (time, date)
        out.append(
            _Central(
                raw_name, name, needed, flags, method, stamp, crc, packed, size, offset, is_dir
            )
        )
    if pos != len(data):
        raise malformed("the central directory holds more than its entry count says")
    return out


def _decode_name(raw: bytes, flags: int) -> str:
    shown = raw.decode("utf-8", "replace")
    if not raw:
        raise ArchiveViolation("archive-invalid-name", "a member has an empty name")
    if flags & _UTF8_FLAG:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ArchiveViolation(
                "archive-invalid-name", "member name is flagged UTF-8 but is not", shown
            ) from None
    if not raw.isascii():
        raise ArchiveViolation(
            "archive-invalid-name",
            "member name has non-ASCII bytes without the UTF-8 flag (tools decode it"
            " differently: CP437, the locale, UTF-8)",
            shown,
        )
    return raw.decode("ascii")


def _check_entry(name: str, needed: int, flags: int, method: int) -> None:
    if flags & _ENCRYPTION_FLAGS:
        raise ArchiveViolation(
            "archive-encrypted", f"{name!r} is encrypted and cannot be scanned", name
        )
    if flags & ~_KNOWN_FLAGS:
        raise malformed(f"{name!r} sets general purpose flags 0x{flags & ~_KNOWN_FLAGS:04x}", name)
    if method not in (STORED, DEFLATED):
        raise ArchiveViolation(
            "archive-unsupported", f"{name!r} uses compression method {method}", name
        )
    if needed > _MAX_VERSION_NEEDED:
        raise ArchiveViolation(
            "archive-unsupported",
            f"{name!r} needs zip version {needed // 10}.{needed % 10} to extract"
            f" (up to {_MAX_VERSION_NEEDED // 10}.{_MAX_VERSION_NEEDED % 10} is accepted)",
            name,
        )


def _is_dir(name: str, made_by: int, attrs: int) -> bool:
    """A directory by name; the attribute bits must not say otherwise to any reader."""
    host = made_by >> 8
    if host not in _HOSTS:
        raise malformed(
            f"{name!r} was written on host system {host}, whose attributes tools read differently",
            name,
        )
    kind = stat.S_IFMT(attrs >> 16)
    if kind == stat.S_IFLNK:
        raise ArchiveViolation("archive-link", f"{name!r} is a symbolic link", name)
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise ArchiveViolation("archive-special-file", f"{name!r} is a special file", name)
    is_dir = name.endswith("/")
    says_dir = kind == stat.S_IFDIR or bool(attrs & _DOS_DIRECTORY)
    # libarchive makes a directory of either bit; zipfile and unzip go by the name.
    if (is_dir and kind == stat.S_IFREG) or (says_dir and not is_dir):
        raise malformed(
            f"{name!r}: its name and its attributes disagree on whether it is a directory",
            name,
        )
    return is_dir


def _extras(raw: bytes, name: str) -> dict[int, bytes]:
    if len(raw) > _MAX_EXTRA_BYTES:
        raise malformed(f"{name!r} has {len(raw)} bytes of extra fields", name)
    out: dict[int, bytes] = {}
    pos = 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise malformed(f"{name!r}: an extra field is cut short", name)
        field_id, length = struct.unpack_from("<HH", raw, pos)
        pos += 4 + length
        if pos > len(raw):
            raise malformed(f"{name!r}: an extra field runs past its block", name)
        if field_id in out:
            raise malformed(f"{name!r}: extra field 0x{field_id:04x} appears twice", name)
        if field_id in _ENCRYPTION_EXTRAS:
            raise ArchiveViolation("archive-encrypted", f"{name!r} is encrypted", name)
        if field_id != _ZIP64_EXTRA and field_id not in _HARMLESS_EXTRAS:
            raise malformed(
                f"{name!r} carries extra field 0x{field_id:04x}, which some extractors"
                " honour (as another name, attributes...) and others ignore",
                name,
            )
        out[field_id] = raw[pos - length : pos]
    return out


def _central_zip64(
    extras: dict[int, bytes], name: str, size: int, packed: int, offset: int
) -> tuple[int, int, int]:
    """Replace the 0xFFFFFFFF fields, in the order the format fixes, and nothing else."""
    values = [size, packed, offset]
    wanted = [i for i, v in enumerate(values) if v == _MAX32]
    data = extras.get(_ZIP64_EXTRA)
    if data is None and not wanted:
        return size, packed, offset
    if data is None or len(data) != 8 * len(wanted):
        raise malformed(f"{name!r}: the zip64 extra field does not match the fields it replaces")
    for i, value in zip(wanted, struct.unpack(f"<{len(wanted)}Q", data), strict=True):
        values[i] = value
    return values[0], values[1], values[2]


# ---------------------------------------------------------------- local headers


def _local_member(fh: BinaryIO, c: _Central) -> tuple[ZipMember, int]:
    """The member at ``c.offset``, checked field by field; returns it and where it ends."""
    fh.seek(c.offset)
    head = fh.read(_LOCAL.size)
    if len(head) < _LOCAL.size or head[:4] != b"PK\x03\x04":
        raise malformed(f"{c.name!r}: no local header where the directory says", c.name)
    _, needed, flags, method, time, date, crc, packed, size, name_len, extra_len = _LOCAL.unpack(
        head
    )
    tail = fh.read(name_len + extra_len)
    if len(tail) < name_len + extra_len:
        raise malformed(f"{c.name!r}: the local header is cut short", c.name)
    if tail[:name_len] != c.raw_name:
        shown = tail[:name_len].decode("utf-8", "replace")
        raise malformed(
            f"the local header names {shown!r} where the central directory says {c.name!r}",
            c.name,
        )
    for field, local, central in (
        ("the version needed", needed, c.needed),
        ("the flags", flags, c.flags),
        ("the compression method", method, c.method),
        ("the time stamp", (time, date), c.stamp),
    ):
        if local != central:
            raise _disagree(c, field)
    zip64, crc, packed, size = _local_zip64(_extras(tail[name_len:], c.name), c, crc, packed, size)
    data_offset = c.offset + _LOCAL.size + name_len + extra_len
    end = data_offset + c.packed
    if flags & _DESCRIPTOR_FLAG:
        pairs = ((crc, c.crc), (packed, c.packed), (size, c.size))
        if any(local not in (0, want) for local, want in pairs):
            raise _disagree(c, "the CRC or sizes")
        end = _check_descriptor(fh, c, end, zip64)
    elif (crc, packed, size) != (c.crc, c.packed, c.size):
        raise _disagree(c, "the CRC or sizes")
    if method == STORED and c.packed != c.size:
        raise malformed(f"{c.name!r} is stored but its sizes differ", c.name)
    member = ZipMember(
        c.name, c.is_dir, method, c.crc, c.packed, c.size, data_offset, bool(flags & 0x8)
    )
    return member, end


def _disagree(c: _Central, field: str) -> ArchiveViolation:
    return malformed(
        f"{c.name!r}: the local header and the central directory disagree on {field}"
        " (another extractor would read other bytes)",
        c.name,
    )


def _local_zip64(
    extras: dict[int, bytes], c: _Central, crc: int, packed: int, size: int
) -> tuple[bool, int, int, int]:
    """A local zip64 extra holds both sizes, exactly when both header fields are markers."""
    data = extras.get(_ZIP64_EXTRA)
    if _MAX32 not in (packed, size):
        if data is not None:
            raise malformed(f"{c.name!r}: a local zip64 extra field that replaces nothing", c.name)
        return False, crc, packed, size
    if packed != size or data is None or len(data) != 16:
        raise malformed(f"{c.name!r}: malformed local zip64 sizes", c.name)
    size, packed = struct.unpack("<QQ", data)
    return True, crc, packed, size


def _check_descriptor(fh: BinaryIO, c: _Central, data_end: int, zip64: bool) -> int:
    """The data descriptor must be there, signed, and say what the directory says."""
    fmt = struct.Struct("<4sIQQ" if zip64 else "<4sIII")
    fh.seek(data_end)
    raw = fh.read(fmt.size)
    if len(raw) < fmt.size or raw[:4] != _DESCRIPTOR_SIG:
        raise malformed(f"{c.name!r}: its data descriptor is missing", c.name)
    _, crc, packed, size = fmt.unpack(raw)
    if (crc, packed, size) != (c.crc, c.packed, c.size):
        raise malformed(
            f"{c.name!r}: the data descriptor and the central directory disagree", c.name
        )
    return data_end + fmt.size


# ---------------------------------------------------------------- data


def member_chunks(fh: BinaryIO, member: ZipMember) -> Iterator[bytes]:
    """The member's bytes, a chunk at a time; at the end the CRC, the size and the exact
    end of the compressed data are checked (a deflate stream that stops early would
    leave bytes another reader might take for something else)."""
    fh.seek(member.data_offset)
    crc = 0
    produced = 0
    chunks = _stored(fh, member) if member.method == STORED else _inflated(fh, member)
    for chunk in chunks:
        crc = zlib.crc32(chunk, crc)
        produced += len(chunk)
        if produced > member.size:
            raise malformed(f"{member.name!r} unpacks to more than its declared size", member.name)
        yield chunk
    if produced != member.size:
        raise malformed(f"{member.name!r} unpacks to less than its declared size", member.name)
    if crc != member.crc:
        raise malformed(f"{member.name!r}: CRC mismatch", member.name)


def _read(fh: BinaryIO, member: ZipMember, remaining: int) -> bytes:
    data = fh.read(min(CHUNK, remaining))
    if not data:
        raise malformed(f"{member.name!r}: the archive ends inside its data", member.name)
    return data


def _stored(fh: BinaryIO, member: ZipMember) -> Iterator[bytes]:
    remaining = member.packed
    carry = b""
    while remaining:
        data = _read(fh, member, remaining)
        remaining -= len(data)
        # A streaming reader ends stored data at the first descriptor signature.
        if member.descriptor and _DESCRIPTOR_SIG in carry + data:
            raise malformed(
                f"{member.name!r} is stored with a data descriptor and its data contains the"
                " descriptor signature: a streaming reader would end it early",
                member.name,
            )
        carry = data[-3:]
        yield data


def _inflated(fh: BinaryIO, member: ZipMember) -> Iterator[bytes]:
    inflater = zlib.decompressobj(-15)
    remaining = member.packed
    try:
        while remaining and not inflater.eof:
            data = _read(fh, member, remaining)
            remaining -= len(data)
            while data and not inflater.eof:
                # Bounded output per call: a bomb is counted as it inflates, never held.
                if out := inflater.decompress(data, CHUNK):
                    yield out
                data = inflater.unconsumed_tail
        while not inflater.eof and (out := inflater.decompress(b"", CHUNK)):
            yield out
    except zlib.error as exc:
        raise malformed(f"{member.name!r}: bad deflate data ({exc})", member.name) from None
    if not inflater.eof:
        raise malformed(f"{member.name!r}: the deflate stream is cut short", member.name)
    if remaining or inflater.unused_data:
        raise malformed(
            f"{member.name!r}: bytes follow the end of its deflate stream inside the member",
            member.name,
        )
