"""The CSP a host should serve for a plugin, derived from what it declares, and SRI hashes."""

from __future__ import annotations

import base64
import hashlib
from pathlib import PurePosixPath

from scanner.manifest import Manifest
from scanner.workspace import Workspace

SRI_SUFFIXES = frozenset({".js", ".mjs", ".cjs", ".css"})


def sri(data: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode()


def asset_integrity(workspace: Workspace) -> dict[str, str]:
    """sha384 SRI of every script and stylesheet, for <script integrity=...>."""
    return {
        f.path: sri(workspace.read_bytes(f.path))
        for f in workspace.files
        if PurePosixPath(f.path).suffix.lower() in SRI_SUFFIXES
    }


def build_csp(manifest: Manifest, integrity: dict[str, str]) -> str:
    """Only the declared: scripts by hash, connections to declared origins, nothing else."""
    caps = manifest.capabilities
    origins = ["*"] if caps.network_any else [str(o) for o in caps.network]
    scripts = [f"'{h}'" for p, h in sorted(integrity.items()) if not p.endswith(".css")]
    script_src = ["'self'", *scripts] + (["'unsafe-eval'"] if caps.eval else [])
    directives = {
        "default-src": ["'none'"],
        "script-src": script_src,
        "style-src": ["'self'", "'unsafe-inline'"],  # plugins style their own elements inline
        "img-src": ["'self'", "data:", "blob:", *origins],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'", *origins],
        "worker-src": ["'self'", "blob:"] if caps.workers else ["'none'"],
        "frame-src": ["'none'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'", *origins],
        "webrtc": ["'block'"],
    }
    return "; ".join(f"{name} {' '.join(values)}" for name, values in directives.items())
