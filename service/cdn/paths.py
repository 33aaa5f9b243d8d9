"""Where things live on the CDN: plugin names and versions as storage keys, the origin's
URL paths, and the headers each kind of file is served with.

Plugin names come from the registry and file paths from the bundle: both are checked here
again (not only at intake), so no name or path can reach another plugin's files or the
service's own documents. Those live under ``_gatehouse/``, a first segment no plugin name
can have (names start with a letter, a digit or ``@``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from scanner.semver import SEMVER_RE, is_semver

# The registry's name rule (service.submissions.NAME_RE), npm's length limit.
PLUGIN_RE = re.compile(r"(?:@[a-z0-9][a-z0-9._-]*/)?[a-z0-9][a-z0-9._-]*")
MAX_PLUGIN_LENGTH = 214
MANIFEST_NAME = "gatehouse-manifest.json"
INDEX_NAME = "index.json"
SERVICE_PREFIX = "_gatehouse"
BLOCKLIST_KEY = f"{SERVICE_PREFIX}/blocklist.json"
# Bytes of a file path below a version (intake's own limit is lower).
MAX_FILE_PATH = 1024

IMMUTABLE = "public, max-age=31536000, immutable"
SHORT_LIVED = "public, max-age=60, s-maxage=600"
# Every response of the origin: a file opened directly (an SVG, a text file) is a
# sandboxed document with no script and no access to the origin it came from; the
# service's own pages share that origin on embedded defaults.
ORIGIN_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; sandbox"
TEXT = "text/plain; charset=utf-8"
# Anything not listed, HTML included, is text: the CDN never hands a browser a document
# that runs script in its origin.
CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".cjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".wasm": "application/wasm",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".ico": "image/x-icon",
    ".svg": "image/svg+xml",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".txt": TEXT,
    ".md": TEXT,
}


class CdnPathError(ValueError):
    """A plugin name, version or file path that has no place on the CDN."""


def content_type(path: str) -> str:
    return CONTENT_TYPES.get(PurePosixPath(path).suffix.lower(), TEXT)


def plugin_prefix(name: str) -> str:
    """The storage prefix of a plugin: its name, once it is proven to be a plain one."""
    if len(name) > MAX_PLUGIN_LENGTH or not PLUGIN_RE.fullmatch(name):
        raise CdnPathError(f"not a plugin name: {name!r}")
    return name


def version_prefix(name: str, version: str) -> str:
    if not is_semver(version):
        raise CdnPathError(f"not a semantic version: {version!r}")
    return f"{plugin_prefix(name)}/{version}"


def check_file_path(path: str) -> str:
    """A bundle's file path as it may appear below its version, or CdnPathError."""
    parts = path.split("/")
    if (
        not path
        or len(path.encode()) > MAX_FILE_PATH
        or path.startswith("/")
        or "\\" in path
        or any(p in {"", ".", ".."} for p in parts)
        or any(ord(c) < 0x20 or ord(c) == 0x7F for c in path)
    ):
        raise CdnPathError(f"not a safe file path: {path!r}")
    if path == MANIFEST_NAME:
        raise CdnPathError(f"{MANIFEST_NAME} is the CDN's own file: a bundle cannot ship one")
    return path


def file_key(name: str, version: str, path: str) -> str:
    return f"{version_prefix(name, version)}/{check_file_path(path)}"


def manifest_key(name: str, version: str) -> str:
    return f"{version_prefix(name, version)}/{MANIFEST_NAME}"


def index_key(name: str) -> str:
    return f"{plugin_prefix(name)}/{INDEX_NAME}"


def tags(name: str, version: str | None = None) -> list[str]:
    """Cache tags (Surrogate-Key / Cache-Tag) a CDN can purge by."""
    out = [f"gh-plugin:{name}"]
    if version is not None:
        out.append(f"gh-version:{name}@{version}")
    return out


@dataclass(frozen=True)
class Target:
    """What an origin URL path names."""

    kind: str  # blocklist | index | manifest | file
    plugin: str = ""
    version: str = ""
    path: str = ""


def parse_origin_path(rest: str) -> Target:
    """``/cdn/<rest>``: the blocklist, a plugin's index, a version's manifest or a file."""
    if rest == "blocklist.json":
        return Target("blocklist")
    parts = rest.split("/")
    take = 2 if parts[0].startswith("@") else 1
    plugin = "/".join(parts[:take])
    plugin_prefix(plugin)
    remainder = parts[take:]
    if remainder == [INDEX_NAME]:
        return Target("index", plugin)
    if len(remainder) < 2 or not is_semver(remainder[0]):
        raise CdnPathError("no such CDN path")
    path = "/".join(remainder[1:])
    if path == MANIFEST_NAME:
        return Target("manifest", plugin, remainder[0])
    return Target("file", plugin, remainder[0], check_file_path(path))


def semver_key(version: str) -> tuple[object, ...]:
    """Order of semantic versions (semver.org section 11); build metadata is ignored."""
    found = SEMVER_RE.fullmatch(version)
    if found is None:
        return (-1,)
    core = tuple(int(found.group(i)) for i in (1, 2, 3))
    pre = found.group(4)
    if not pre:
        return (*core, 1, ())
    idents = tuple((0, int(x), "") if x.isdigit() else (1, 0, x) for x in pre.split("."))
    return (*core, 0, idents)
