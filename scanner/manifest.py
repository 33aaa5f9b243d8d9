"""The ``plugin.json`` contract: parsing, validation with field paths, and overbroad grants."""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from publicsuffixlist import PublicSuffixList

from scanner import semver
from scanner.findings import Category, Severity

MANIFEST_NAME = "plugin.json"
MAX_MANIFEST_BYTES = 64 * 1024
# Patterns are applied with fullmatch: "$" alone would let a trailing newline through.
NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
# The one version check, shared with the registry webhook.
SEMVER_RE = semver.PLUGIN_VERSION_RE
IDENT_RE = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]{0,63}")
# Globals a plugin must not replace by choosing them as its UMD name.
RESERVED_GLOBALS = frozenset(
    {
        "window",
        "self",
        "document",
        "location",
        "navigator",
        "top",
        "parent",
        "frames",
        "globalThis",
        "fetch",
        "XMLHttpRequest",
        "WebSocket",
        "localStorage",
        "sessionStorage",
        "indexedDB",
        "eval",
        "Function",
        "Object",
        "Array",
        "String",
        "JSON",
        "Promise",
        "console",
        "setTimeout",
        "setInterval",
        "history",
        "crypto",
        "Symbol",
    }
)
BOOL_CAPABILITIES = ("storage", "cookies", "navigation", "clipboard", "workers", "eval")
CAPABILITY_KEYS = frozenset({"network", "dom", *BOOL_CAPABILITIES})
CAPABILITY_NAMES = (
    "network",
    "storage",
    "cookies",
    "dom",
    "navigation",
    "clipboard",
    "workers",
    "eval",
)
TOP_LEVEL_KEYS = frozenset(
    {
        "name",
        "version",
        "displayName",
        "globalName",
        "entry",
        "styles",
        "capabilities",
        "backend",
        "description",
        "author",
        "homepage",
        "license",
    }
)
BACKEND_RUNTIMES = frozenset({"python3.11", "python3.12", "python3.13"})
NETWORK_SCHEMES = frozenset({"https", "wss", "http", "ws"})
SECURE_SCHEMES = frozenset({"https", "wss"})


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str  # may start with "*." for a wildcard subdomain grant
    port: int | None

    def __str__(self) -> str:
        port = f":{self.port}" if self.port else ""
        return f"{self.scheme}://{self.host}{port}"

    def allows(self, scheme: str, host: str, port: int | None) -> bool:
        """Whether a request to scheme://host:port falls under this grant."""
        # wss:// to a granted https:// origin is the same server and the same trust.
        if (self.scheme in SECURE_SCHEMES) != (scheme in SECURE_SCHEMES):
            return False
        if _default_port(self.scheme, self.port) != _default_port(scheme, port):
            return False
        host = host.lower()
        if self.host.startswith("*."):
            suffix = self.host[1:]
            return host.endswith(suffix) and len(host) > len(suffix)
        return host == self.host


def _default_port(scheme: str, port: int | None) -> int:
    if port:
        return port
    return 443 if scheme in SECURE_SCHEMES else 80


@dataclass(frozen=True)
class Capabilities:
    network: tuple[Origin, ...] = ()
    network_any: bool = False  # "*" or a scheme-only wildcard
    storage: bool = False
    cookies: bool = False
    dom: str = "container"
    navigation: bool = False
    clipboard: bool = False
    workers: bool = False
    eval: bool = False

    def declares(self, capability: str) -> bool:
        if capability == "network":
            return self.network_any or bool(self.network)
        if capability == "dom":
            return self.dom == "document"
        return bool(getattr(self, capability, False))

    def allows_origin(self, url: str) -> bool:
        parts = urlsplit(url)
        if not parts.scheme or not parts.hostname:
            return False
        if self.network_any:
            return True
        try:
            port = parts.port
        except ValueError:
            return False
        return any(o.allows(parts.scheme.lower(), parts.hostname, port) for o in self.network)


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    display_name: str
    global_name: str
    entry: str
    styles: tuple[str, ...]
    capabilities: Capabilities
    backend_entry: str | None = None
    backend_runtime: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class ManifestProblem:
    rule_id: str
    category: Category
    severity: Severity
    field: str
    message: str


@dataclass(frozen=True)
class ManifestLoad:
    manifest: Manifest | None
    problems: tuple[ManifestProblem, ...]


class _Collector:
    def __init__(self) -> None:
        self.problems: list[ManifestProblem] = []

    def error(self, field_path: str, message: str, rule: str = "manifest-invalid-field") -> None:
        self.problems.append(
            ManifestProblem(
                rule, Category.MANIFEST, Severity.HIGH, field_path, f"{field_path}: {message}"
            )
        )

    def overbroad(self, field_path: str, message: str, severity: Severity) -> None:
        self.problems.append(
            ManifestProblem(
                "manifest-overbroad-capability",
                Category.OVERBROAD_CAPABILITY,
                severity,
                field_path,
                f"{field_path}: {message}",
            )
        )


def load_manifest(root: Path, paths: frozenset[str]) -> ManifestLoad:
    """Read and check ``plugin.json`` of the bundle unpacked at ``root`` holding ``paths``."""
    if MANIFEST_NAME not in paths:
        return _fatal("manifest-missing", f"{MANIFEST_NAME} is missing from the bundle root")
    manifest = root / MANIFEST_NAME
    size = manifest.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        return _fatal(
            "manifest-unreadable", f"{MANIFEST_NAME} is {size} bytes, over {MAX_MANIFEST_BYTES}"
        )
    try:
        data = json.loads(manifest.read_bytes().decode("utf-8"), object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError:
        return _fatal("manifest-unreadable", f"{MANIFEST_NAME} is not UTF-8")
    except (json.JSONDecodeError, _DuplicateKeyError) as exc:
        return _fatal("manifest-unreadable", f"{MANIFEST_NAME} is not valid JSON: {exc}")
    except RecursionError:
        # Thousands of nested brackets in a few kilobytes: refused, never a crash.
        return _fatal("manifest-unreadable", f"{MANIFEST_NAME} is nested too deeply")
    try:
        return validate_manifest(data, paths)
    except RecursionError:
        return _fatal("manifest-unreadable", f"{MANIFEST_NAME} is nested too deeply")


def _fatal(rule: str, message: str) -> ManifestLoad:
    problem = ManifestProblem(rule, Category.MANIFEST, Severity.CRITICAL, MANIFEST_NAME, message)
    return ManifestLoad(None, (problem,))


class _DuplicateKeyError(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            # Two parsers could pick different values: ambiguity is an error.
            raise _DuplicateKeyError(f"duplicate key {key!r}")
        out[key] = value
    return out


def validate_manifest(data: Any, paths: frozenset[str]) -> ManifestLoad:
    """Validate parsed JSON against the contract; every message names its field path."""
    c = _Collector()
    if not isinstance(data, dict):
        return _fatal("manifest-invalid", f"{MANIFEST_NAME} must be a JSON object")
    for key in sorted(set(data) - TOP_LEVEL_KEYS):
        c.error(key, "unknown field", "manifest-unknown-field")
    name = _string(c, data, "name", NAME_RE, "must match ^[a-z0-9][a-z0-9-]{0,62}$")
    version = _string(
        c,
        data,
        "version",
        SEMVER_RE,
        "must be a semantic version such as 1.2.0, without build metadata",
    )
    display = _string(
        c, data, "displayName", re.compile(r"\S.{0,99}", re.S), "must be 1-100 characters"
    )
    global_name = _string(c, data, "globalName", IDENT_RE, "must be a JavaScript identifier")
    if global_name in RESERVED_GLOBALS:
        c.error("globalName", f"{global_name!r} would replace a browser global")
    entry = _bundle_path(c, data.get("entry"), "entry", paths, (".js", ".mjs", ".cjs"))
    styles = _styles(c, data.get("styles"), paths)
    caps = _capabilities(c, data.get("capabilities"))
    backend_entry, runtime = _backend(c, data.get("backend"), paths)
    if any(p.severity >= Severity.HIGH and p.category is Category.MANIFEST for p in c.problems):
        return ManifestLoad(None, tuple(c.problems))
    manifest = Manifest(
        name=name or "",
        version=version or "",
        display_name=display or "",
        global_name=global_name or "",
        entry=entry or "",
        styles=styles,
        capabilities=caps,
        backend_entry=backend_entry,
        backend_runtime=runtime,
        raw=data,
    )
    return ManifestLoad(manifest, tuple(c.problems))


def _string(
    c: _Collector, data: dict[str, Any], key: str, pattern: re.Pattern[str], rule: str
) -> str | None:
    value = data.get(key)
    if value is None:
        c.error(key, "is required", "manifest-missing-field")
        return None
    if not isinstance(value, str) or not pattern.fullmatch(value):
        c.error(key, f"{value!r} {rule}")
        return None
    return value


def _bundle_path(
    c: _Collector, value: Any, field_path: str, paths: frozenset[str], suffixes: tuple[str, ...]
) -> str | None:
    if value is None:
        c.error(field_path, "is required", "manifest-missing-field")
        return None
    if not isinstance(value, str) or not value:
        c.error(field_path, "must be a relative path string")
        return None
    pure = PurePosixPath(value)
    if pure.is_absolute() or ".." in pure.parts or "\\" in value:
        c.error(field_path, f"{value!r} must be a relative path inside the bundle")
        return None
    normal = pure.as_posix().removeprefix("./")
    if pure.suffix.lower() not in suffixes:
        c.error(field_path, f"{value!r} must end with one of {', '.join(suffixes)}")
        return None
    if normal not in paths:
        c.error(field_path, f"{value!r} does not exist in the bundle", "manifest-missing-file")
        return None
    return normal


def _styles(c: _Collector, value: Any, paths: frozenset[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        c.error("styles", "must be a list of paths")
        return ()
    out = []
    for i, item in enumerate(value):
        path = _bundle_path(c, item, f"styles[{i}]", paths, (".css",))
        if path:
            out.append(path)
    return tuple(out)


def _capabilities(c: _Collector, value: Any) -> Capabilities:
    if value is None:
        return Capabilities()
    if not isinstance(value, dict):
        c.error("capabilities", "must be an object")
        return Capabilities()
    for key in sorted(set(value) - CAPABILITY_KEYS):
        c.error(f"capabilities.{key}", "unknown capability", "manifest-unknown-capability")
    flags: dict[str, bool] = {}
    for key in BOOL_CAPABILITIES:
        raw = value.get(key, False)
        if not isinstance(raw, bool):
            c.error(f"capabilities.{key}", f"must be true or false, not {raw!r}")
            raw = False
        flags[key] = raw
    dom = value.get("dom", "container")
    if dom not in ("container", "document"):
        c.error("capabilities.dom", f'must be "container" or "document", not {dom!r}')
        dom = "container"
    origins, any_origin = _network(c, value.get("network", []))
    caps = Capabilities(network=origins, network_any=any_origin, dom=dom, **flags)
    _judge_breadth(c, caps)
    return caps


def _network(c: _Collector, value: Any) -> tuple[tuple[Origin, ...], bool]:
    if not isinstance(value, list):
        c.error("capabilities.network", "must be a list of origins")
        return (), False
    origins: list[Origin] = []
    any_origin = False
    for i, item in enumerate(value):
        where = f"capabilities.network[{i}]"
        if not isinstance(item, str):
            c.error(where, f"must be an origin string, not {item!r}")
            continue
        if item.strip() in ("*", "https://*", "http://*", "wss://*", "*://*"):
            c.overbroad(where, f"{item!r} grants every origin on the internet", Severity.HIGH)
            any_origin = True
            continue
        origin = _parse_origin(c, where, item)
        if origin is not None:
            origins.append(origin)
    return tuple(origins), any_origin


def _parse_origin(c: _Collector, where: str, item: str) -> Origin | None:
    parts = urlsplit(item)
    scheme = parts.scheme.lower()
    if scheme not in NETWORK_SCHEMES or not parts.netloc:
        c.error(where, f"{item!r} must be an origin such as https://api.example.com")
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        c.error(where, f"{item!r} must be an origin without path, query or credentials")
        return None
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        c.error(where, f"{item!r} has an invalid port")
        return None
    if "*" in host and not (host.startswith("*.") and "*" not in host[2:] and host.count(".") >= 2):
        c.error(where, f"{item!r}: a wildcard may only stand for a subdomain, as in *.example.com")
        return None
    if host.endswith("."):
        # "api.example.com." is another origin to the browser than the name without the dot.
        c.error(where, f"{item!r}: write the host without a trailing dot")
        return None
    if host.startswith("*.") and _is_public_suffix(host[2:]):
        c.error(
            where,
            f"{item!r}: {host[2:]} is a public suffix, so the wildcard would grant every"
            " site registered under it, anyone's",
        )
        return None
    if scheme in ("http", "ws") and host not in ("localhost", "127.0.0.1"):
        c.overbroad(
            where, f"{item!r} is unencrypted: traffic can be read and altered", Severity.MEDIUM
        )
    if host.startswith("*."):
        c.overbroad(where, f"{item!r} grants every subdomain of {host[2:]}", Severity.LOW)
    return Origin(scheme, host, port)


@functools.cache
def _public_suffixes() -> PublicSuffixList:
    return PublicSuffixList()  # the ICANN and private sections: github.io counts too


def _is_public_suffix(host: str) -> bool:
    return bool(_public_suffixes().is_public(host))


def _judge_breadth(c: _Collector, caps: Capabilities) -> None:
    """Grants that are fine alone but together let a plugin read the page and send it away."""
    talks = caps.declares("network")
    if caps.dom == "document" and talks:
        c.overbroad(
            "capabilities",
            "dom: document together with network can read and send any page content",
            Severity.HIGH,
        )
    if caps.cookies and talks:
        c.overbroad(
            "capabilities",
            "cookies together with network can send session cookies away",
            Severity.MEDIUM,
        )
    if caps.eval and talks:
        c.overbroad(
            "capabilities",
            "eval together with network can run code fetched at run time",
            Severity.MEDIUM,
        )


def _backend(c: _Collector, value: Any, paths: frozenset[str]) -> tuple[str | None, str | None]:
    if value is None:
        return None, None
    if not isinstance(value, dict):
        c.error("backend", "must be an object")
        return None, None
    for key in sorted(set(value) - {"runtime", "entry"}):
        c.error(f"backend.{key}", "unknown field", "manifest-unknown-field")
    runtime = value.get("runtime")
    if runtime not in BACKEND_RUNTIMES:
        c.error(
            "backend.runtime", f"{runtime!r} is not one of {', '.join(sorted(BACKEND_RUNTIMES))}"
        )
    entry = _bundle_path(c, value.get("entry"), "backend.entry", paths, (".py",))
    return entry, runtime if isinstance(runtime, str) else None
