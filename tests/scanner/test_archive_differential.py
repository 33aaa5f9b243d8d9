"""One archive, one meaning: whatever intake accepts, every common extractor unpacks to
exactly the tree intake did, byte for byte.

The extractors: Python's zipfile and tarfile, Info-ZIP unzip, libarchive's bsdtar reading
a file (central directory) and reading a pipe (a streaming reader that follows the local
headers), 7-Zip, GNU tar. Real tools' archives are accepted; a fuzzer mutates valid
archives (byte flips, inserted and appended bytes, edited header fields, duplicated
entries, data descriptors) and checks the promise on every mutant intake accepts, and
that intake never fails with anything but a refusal.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import struct
import subprocess
import tarfile
import zipfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from scanner.config import ArchiveLimits
from scanner.intake import ArchiveViolation, unpack

LIMITS = ArchiveLimits()
TOOL_ENV = {"PATH": os.defpath, "LC_ALL": "C.UTF-8", "HOME": "/nonexistent"}
LONG = "dist/" + "nested-directory-name/" * 6 + "module.js"  # over tar's 100 bytes
TREE: dict[str, bytes] = {
    "plugin.json": b'{"name": "differential"}',
    "dist/bundle.js": b"".join(b"var v%d = %d * 31 %% 7;\n" % (i, i) for i in range(900)),
    "dist/empty.js": b"",
    "dist/caf\u00e9/\u00fcn\u00ef.js": b"// non-ASCII path\n",
    LONG: b"export default 1;\n",
}
Tree = dict[str, bytes]


def _tree(root: Path) -> Tree:
    """Every regular file below root; a link or special file is never part of a tree."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not (path.is_dir() or path.is_file()):
            raise AssertionError(f"{path} is not a file or directory")
        if path.is_file():
            out[path.relative_to(root).as_posix()] = path.read_bytes()
    return out


def _run(args: list[str], stdin: Path | None = None) -> None:
    with stdin.open("rb") if stdin else open(os.devnull, "rb") as fh:  # noqa: PTH123
        done = subprocess.run(args, stdin=fh, capture_output=True, env=TOOL_ENV, timeout=60)
    if done.returncode != 0:
        raise AssertionError(f"{args[0]} failed ({done.returncode}): {done.stderr[-300:]!r}")


def _zipfile(archive: Path, out: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(out)  # noqa: S202 - the tool under comparison, on archives intake accepted


def _tarfile(archive: Path, out: Path) -> None:
    with tarfile.open(archive, "r:gz") as tf:
        tf.extractall(out, filter="data")


EXTRACTORS: dict[str, dict[str, Callable[[Path, Path], None]]] = {
    "zip": {
        "zipfile": _zipfile,
        "unzip": lambda a, o: _run(["unzip", "-qq", str(a), "-d", str(o)]),
        "bsdtar": lambda a, o: _run(["bsdtar", "-xf", str(a), "-C", str(o)]),
        "bsdtar-stream": lambda a, o: _run(["bsdtar", "-xf", "-", "-C", str(o)], stdin=a),
        "7z": lambda a, o: _run(["7z", "x", "-y", "-bd", "-bso0", f"-o{o}", str(a)]),
    },
    "tgz": {
        "tarfile": _tarfile,
        "bsdtar": lambda a, o: _run(["bsdtar", "-xf", str(a), "-C", str(o)]),
        "bsdtar-stream": lambda a, o: _run(["bsdtar", "-xf", "-", "-C", str(o)], stdin=a),
        "gnu-tar": lambda a, o: _run(["tar", "-xzf", str(a), "-C", str(o)]),
    },
}


def _needs_tools() -> None:
    missing = [t for t in ("unzip", "zip", "bsdtar", "7z", "tar") if shutil.which(t) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: run scripts/setup")


def _intake_tree(archive: Path, out: Path) -> Tree | None:
    """The tree intake admits, or None when it refuses; any other exception fails."""
    out.mkdir()
    try:
        files = unpack(archive, out, LIMITS)
    except ArchiveViolation:
        return None
    tree = _tree(out)
    assert sorted(tree) == sorted(f.path for f in files)
    return tree


def assert_one_meaning(archive: Path, kind: str, scratch: Path) -> Tree | None:
    """If intake accepts ``archive``, every extractor of its kind agrees with it."""
    admitted = _intake_tree(archive, scratch / "intake")
    if admitted is None:
        return None
    for name, extract in EXTRACTORS[kind].items():
        out = scratch / name
        out.mkdir()
        extract(archive, out)
        assert _tree(out) == admitted, f"{name} unpacks another tree than intake"
    return admitted


# ---------------------------------------------------------------- real tools


def _source(tmp: Path) -> Path:
    src = tmp / "src"
    for name, data in TREE.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    (src / "empty-dir").mkdir()
    return src


class _Pipe(io.RawIOBase):
    """An unseekable output: zipfile then streams with data descriptors."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self.data += b
        return len(b)


def _python_zip(src: Path, out: Path, method: int, streamed: bool = False) -> None:
    sink: _Pipe | Path = _Pipe() if streamed else out
    with zipfile.ZipFile(sink, "w", method) as zf:
        for path in sorted(src.rglob("*")):
            arc = path.relative_to(src).as_posix()
            if path.is_dir():
                zf.mkdir(arc)
                continue
            with zf.open(arc, "w", force_zip64=streamed and arc == "dist/bundle.js") as fh:
                fh.write(path.read_bytes())
    if isinstance(sink, _Pipe):
        out.write_bytes(bytes(sink.data))


def _python_tar(src: Path, out: Path, fmt: int) -> None:
    with tarfile.open(out, "w:gz", format=fmt) as tf:
        tf.add(src, arcname=".")


def _shell(script: str) -> Callable[[Path, Path], None]:
    def build(src: Path, out: Path) -> None:
        subprocess.run(
            ["bash", "-c", script.format(out=out)],
            cwd=src,
            check=True,
            env=TOOL_ENV,
            capture_output=True,
        )

    return build


REAL_TOOLS: dict[str, tuple[str, Callable[[Path, Path], None]]] = {
    "zipfile-deflated": ("zip", lambda s, o: _python_zip(s, o, zipfile.ZIP_DEFLATED)),
    "zipfile-stored": ("zip", lambda s, o: _python_zip(s, o, zipfile.ZIP_STORED)),
    "zipfile-streamed": ("zip", lambda s, o: _python_zip(s, o, zipfile.ZIP_DEFLATED, True)),
    # Info-ZIP marks non-ASCII names only with its Unicode path extra field: refused, so
    # its cases leave the non-ASCII file out (see test_info_zip_non_ascii_names_are_refused).
    "info-zip": ("zip", _shell("zip -qr {out} . -x 'dist/caf*'")),
    "info-zip-pipe": ("zip", _shell("zip -qr - . -x 'dist/caf*' | cat > {out}")),
    "info-zip-stdin-zip64": ("zip", _shell("zip -q {out} - < dist/bundle.js")),
    "bsdtar-zip": ("zip", _shell("bsdtar --format zip -cf {out} .")),
    "bsdtar-zip-stored": (
        "zip",
        _shell("bsdtar --format zip --options zip:compression=store -cf {out} ."),
    ),
    "7z-zip": ("zip", _shell("7z a -tzip -bd -bso0 {out} .")),
    "tarfile-pax": ("tgz", lambda s, o: _python_tar(s, o, tarfile.PAX_FORMAT)),
    "tarfile-gnu": ("tgz", lambda s, o: _python_tar(s, o, tarfile.GNU_FORMAT)),
    "gnu-tar": ("tgz", _shell("tar -czf {out} .")),
    "gnu-tar-posix": ("tgz", _shell("tar --format=posix -czf {out} .")),
    "bsdtar-tgz": ("tgz", _shell("bsdtar -czf {out} .")),
}


@pytest.mark.parametrize("tool", sorted(REAL_TOOLS))
def test_real_tools_archives_are_accepted_and_read_alike(tmp_path: Path, tool: str) -> None:
    _needs_tools()
    kind, build = REAL_TOOLS[tool]
    archive = tmp_path / f"bundle.{kind}"
    build(_source(tmp_path), archive)
    admitted = assert_one_meaning(archive, kind, tmp_path)
    assert admitted, f"intake refused {tool}'s archive"
    expected = {"-": TREE["dist/bundle.js"]} if tool.endswith("zip64") else TREE
    if tool.startswith("info-zip") and not tool.endswith("zip64"):
        expected = {k: v for k, v in TREE.items() if not k.startswith("dist/caf")}
    assert admitted == expected


def test_info_zip_non_ascii_names_are_refused(tmp_path: Path) -> None:
    """Raw UTF-8 bytes without the UTF-8 flag: zipfile reads CP437, unzip the extra field."""
    _needs_tools()
    archive = tmp_path / "b.zip"
    _shell("zip -qr {out} .")(_source(tmp_path), archive)
    with pytest.raises(ArchiveViolation) as info:
        unpack(archive, tmp_path / "out", LIMITS)
    assert info.value.rule_id in {"archive-invalid-name", "archive-malformed"}


# ---------------------------------------------------------------- fuzzing


def _seeds(tmp: Path) -> list[tuple[str, bytes]]:
    src = tmp / "seed-src"
    for name, data in {"plugin.json": b"{}", "dist/a.js": b"var a=1;" * 40, "b.js": b"x"}.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    seeds = []
    for tool in (
        "zipfile-deflated",
        "zipfile-stored",
        "zipfile-streamed",
        "info-zip-pipe",
        "bsdtar-zip",
        "tarfile-pax",
        "gnu-tar",
        "bsdtar-tgz",
    ):
        kind, build = REAL_TOOLS[tool]
        out = tmp / f"seed-{tool}"
        build(src, out)
        seeds.append((kind, out.read_bytes()))
    return seeds


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, bytes]]:
    _needs_tools()
    return _seeds(tmp_path_factory.mktemp("seeds"))


SEED_NAMES = (b"plugin.json", b"dist/a.js", b"b.js", b"dist/", b"a.js", b"dist")
# Mostly bytes of plain names, some that names must not hold or tools treat specially.
NAME_BYTES = [*b"abz09._-~/" * 4, *b":\\ %\x00\x07\x7f", 0xC3, 0xA9, 0xFF, 0xE2, 0x80, 0xAE]
ZIP_SIGS = (b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06", b"PK\x07\x08", b"PK\x06\x06")
INTERESTING = (0, 1, 2, 8, 0x14, 0x2D, 0x3F, 0x800, 0x808, 0xFFFF, 0xFFFFFFFF)


@st.composite
def _mutation(draw: st.DrawFn, data: bytes, sigs: tuple[bytes, ...], gentle: bool) -> bytes:
    ops = ["rename"] if gentle else ["flip", "insert", "append", "truncate", "field", "dup"]
    op = draw(st.sampled_from(ops + ["field"] * (not gentle)))
    n = len(data)
    if n == 0:
        return draw(st.binary(min_size=1, max_size=24))
    if op == "rename":
        # The same bytes everywhere a name appears (local header, directory, tar header):
        # a consistent edit that intake may accept, so the extractors are compared.
        old = draw(st.sampled_from([m for m in SEED_NAMES if m in data] or [data[:1]]))
        new = bytes(
            draw(st.lists(st.sampled_from(NAME_BYTES), min_size=len(old), max_size=len(old)))
        )
        return data.replace(old, new)
    at = draw(st.integers(0, n - 1))
    if op == "flip":
        return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
    if op == "insert":
        return data[:at] + draw(st.binary(min_size=1, max_size=24)) + data[at:]
    if op == "append":
        return data + draw(st.sampled_from([bytes(512), bytes(1), b"PK\x05\x06" + bytes(18)]))
    if op == "truncate":
        return data[:at]
    starts = [i for sig in sigs for i in _find_all(data, sig)] or [0]
    start = draw(st.sampled_from(sorted(starts)))
    if op == "dup":
        end = min([i for i in starts if i > start] or [n])
        where = draw(st.sampled_from(sorted(starts)))
        return data[:where] + data[start:end] + data[where:]
    offset = start + draw(st.integers(4, 46))
    width = draw(st.sampled_from([2, 4]))
    value = draw(st.sampled_from(INTERESTING)) & (0xFFFF if width == 2 else 0xFFFFFFFF)
    patched = bytearray(data)
    if offset + width <= n:
        struct.pack_into("<H" if width == 2 else "<I", patched, offset, value)
    return bytes(patched)


def _find_all(data: bytes, sig: bytes) -> list[int]:
    out, i = [], data.find(sig)
    while i >= 0:
        out.append(i)
        i = data.find(sig, i + 1)
    return out


def _tar_blocks_fixed(raw: bytes, fix: bool) -> bytes:
    """Recompute the checksum of every header-looking block, so edits get past it."""
    if not fix:
        return raw
    blocks = bytearray(raw)
    for i in range(0, len(blocks) - 511, 512):
        if blocks[i + 257 : i + 262] == b"ustar":
            blocks[i + 148 : i + 156] = b" " * 8
            blocks[i + 148 : i + 156] = b"%06o\x00 " % sum(blocks[i : i + 512])
    return bytes(blocks)


@st.composite
def mutants(draw: st.DrawFn, seeds: list[tuple[str, bytes]]) -> tuple[str, bytes]:
    kind, data = draw(st.sampled_from(seeds))
    # Gentle edits (consistent renames) often stay acceptable, so the extractors get
    # compared; the others mostly test that every damage is a refusal, never a crash.
    gentle = draw(st.booleans())
    if kind == "zip":
        for _ in range(draw(st.integers(1, 3))):
            data = draw(_mutation(data, ZIP_SIGS, gentle))
        return kind, data
    tar = gzip.decompress(data)
    for _ in range(draw(st.integers(1, 3))):
        tar = draw(_mutation(tar, (b"ustar",), gentle))
    tar = _tar_blocks_fixed(tar, gentle or draw(st.booleans()))
    out = gzip.compress(tar, mtime=0)
    return kind, out + draw(st.sampled_from([b"", b"", gzip.compress(b"x"), b"\0"]))


FUZZ = settings(
    max_examples=500,
    deadline=timedelta(seconds=5),
    derandomize=True,  # the same examples in every CI run; raise max_examples to explore
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@FUZZ
@given(data=st.data())
def test_fuzzed_archives_are_refused_or_read_alike_by_every_extractor(
    seeds: list[tuple[str, bytes]], tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    kind, mutant = data.draw(mutants(seeds))
    scratch = tmp_path_factory.mktemp("fuzz")
    archive = scratch / f"mutant.{kind}"
    archive.write_bytes(mutant)
    admitted = assert_one_meaning(archive, kind, scratch)
    event(f"{kind}: {'accepted' if admitted is not None else 'refused'}")
    shutil.rmtree(scratch, ignore_errors=True)
