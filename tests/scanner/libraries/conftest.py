"""A synthetic "published library" and an index of it, made in the test: no network, and
nothing of any real library in the project."""

from __future__ import annotations

import random

import pytest

from scanner.libraries.index import LibraryIndex, describe_file

VERSION = "1.2.3"
SAFE_LICENCE = "MIT"


def synthetic_library(size: int = 30_000, seed: int = 1, version: str = VERSION) -> bytes:
    """Minified-looking UMD code of about ``size`` bytes, deterministic per seed, with a
    banner and a version property like a real library build."""
    rng = random.Random(seed)
    parts = [
        f"/*! tinylib v{version} | MIT */\n",
        "!function(g,f){'object'==typeof exports?module.exports=f():g.Tiny=f()}(this,function(){",
        f"var V='{version}';",
    ]
    total = sum(map(len, parts))
    n = 0
    while total < size:
        a, b, c = (
            "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 7)))
            for _ in range(3)
        )
        k = rng.randint(0, 10_000)
        body = rng.choice(
            [
                f"for(var i=0,r=[];i<t.length;i++)r.push(t[i].{a}*{k}+(e.{b}||0));return r",
                f"var n=Object.assign({{}},e,{{{a}:t.{b},{c}:!0}});return n.{a}?n:null",
                f"if(!t)throw new Error('{a} needs {b} ({k})');return t.{c}",
                f"return'number'==typeof t?Math.max(0,Math.min(t,{k})):String(t).trim()",
                f"var n=e.{a}||[];return n.filter(function(x){{return x.{b}!=={k}}}).length",
            ]
        )
        piece = f"function {a}{n}(t,e){{{body}}}"
        parts.append(piece)
        total += len(piece)
        n += 1
    parts.append("return{version:V}});\n//# sourceMappingURL=tiny.min.js.map\n")
    return "".join(parts).encode()


def make_index(*libraries: tuple[str, str, str, bytes, str | None]) -> LibraryIndex:
    """An index of (name, version, path, bytes, licence), round-tripped through its
    stored form so tests see what a scan would load."""
    index = LibraryIndex()
    for name, version, path, data, licence in libraries:
        index.add(describe_file(name, version, path, licence, data))
    return LibraryIndex.loads(index.dumps())


@pytest.fixture(scope="session")
def tiny() -> bytes:
    return synthetic_library()


@pytest.fixture(scope="session")
def tiny_index(tiny: bytes) -> LibraryIndex:
    other = synthetic_library(20_000, seed=2, version="4.0.0").replace(b"tinylib", b"otherlib")
    return make_index(
        ("tinylib", VERSION, "dist/tiny.min.js", tiny, SAFE_LICENCE),
        ("otherlib", "4.0.0", "dist/other.min.js", other, "GPL-3.0-only"),
    )
