"""What the benchmarks scan: deterministic minified code, or copies of a real library."""

from __future__ import annotations

import json
import random
import zipfile
from pathlib import Path


def synthetic_minified_js(size: int, seed: int = 7) -> bytes:
    """Deterministic minified-looking UMD code with the mix of a real bundle.

    Mostly logic (loops, arithmetic, objects, closures, messages), with a DOM call in a
    few functions, the way a UI library looks after a minifier, not a DOM-call stress test.
    """
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
    words = [
        "render",
        "update",
        "value",
        "items",
        "state",
        "props",
        "key",
        "node",
        "index",
        "list",
        "width",
        "height",
        "format",
        "parse",
        "options",
        "handler",
        "result",
    ]
    parts = [
        "!function(t,e){'object'==typeof exports?module.exports=e():t.Bench=e()}(this,function(){"
    ]
    total = len(parts[0])
    n = 0
    while total < size:
        w = [rng.choice(words) for _ in range(4)]
        k = rng.randint(2, 999)
        body = rng.choice(
            [
                f"for(var i=0,r=[];i<t.length;i++)r.push(t[i].{w[0]}*{k}+(e.{w[1]}||0));return r",
                f"var n=Object.assign({{}},e,{{{w[0]}:t.{w[1]},{w[2]}:!0}});return n.{w[3]}?n:null",
                f"if(!t)throw new Error('{w[0]} requires a {w[1]} ({k})');"
                f"return t.{w[2]}.map(function(n){{return n.{w[3]}}})",
                f"return'number'==typeof t?Math.max(0,Math.min(t,{k})):"
                "String(t).replace(/\\s+/g,' ').trim()",
                f"var n=e.{w[0]}||[];return n.filter(function(t){{return t.{w[1]}!=={k}}}).length",
                f"var n=document.createElement('span');n.className='{w[0]}-{w[1]}';"
                f"n.textContent=t.{w[2]};e.appendChild(n);return n",
            ]
        )
        chunk = f"function {w[0][:2]}{n}(t,e){{{body}}}"
        parts.append(chunk)
        total += len(chunk)
        n += 1
    parts.append("return{mount:function(c){return function(){}}}});")
    return "".join(parts).encode()


def sized_sample(size: int, seed: int, real_js: bytes | None) -> bytes:
    """Synthetic code, or copies of a real library joined until ``size`` is reached."""
    if real_js is None:
        return synthetic_minified_js(size, seed=seed)
    copies = max(1, round(size / len(real_js)))  # sizes below one copy are measured as one
    return b";\n".join([real_js] * copies)


def bench_plugin(path: Path, js: bytes) -> Path:
    """A bundle of one entry file with a truthful manifest: what every bench figure scans."""
    manifest = {
        "name": "bench",
        "version": "1.0.0",
        "displayName": "Bench",
        "globalName": "Bench",
        "entry": "dist/bundle.js",
        "capabilities": {"network": [], "dom": "container"},
        "license": "MIT",
    }
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("plugin.json", json.dumps(manifest))
        zf.writestr("dist/bundle.js", js)
    return path
