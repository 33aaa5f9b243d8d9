"""Shared fixtures: settings on temporary dirs, a bundle builder, and a real clamd."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from scanner.clamd_server import ClamdServer
from scanner.config import Settings
from scanner.workspace import Workspace
from tests.paths import PROJECT_ROOT

FIXTURES = Path(__file__).parent / "fixtures"


def manifest(**overrides: Any) -> dict[str, Any]:
    """A valid plugin.json, changed by keyword."""
    data: dict[str, Any] = {
        "name": "test-plugin",
        "version": "1.0.0",
        "displayName": "Test Plugin",
        "globalName": "TestPlugin",
        "entry": "dist/bundle.js",
        "capabilities": {"network": [], "dom": "container"},
        "license": "MIT",
    }
    data.update(overrides)
    return data


CLEAN_JS = (
    "var TestPlugin = { mount: function (c) { var p = document.createElement('p');"
    " p.textContent = 'hi'; c.appendChild(p); return function () { c.removeChild(p); }; } };\n"
)

BundleMaker = Callable[..., Path]


def workspace_of(root: Path, files: dict[str, str | bytes]) -> Workspace:
    """Write {path: content} under ``root`` and inventory it as an unpacked bundle."""
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data.encode() if isinstance(data, str) else data)
    return Workspace.from_directory(root)


@pytest.fixture
def make_bundle(tmp_path: Path) -> BundleMaker:
    """Build a .zip or .tar.gz from {path: bytes|str}; a plugin.json and entry by default."""
    counter = iter(range(10_000))

    def build(
        files: dict[str, bytes | str] | None = None, *, fmt: str = "zip", plugin: Any = None
    ) -> Path:
        content: dict[str, bytes | str] = {"dist/bundle.js": CLEAN_JS}
        content["plugin.json"] = json.dumps(manifest() if plugin is None else plugin)
        content.update(files or {})
        path = tmp_path / f"bundle-{next(counter)}.{'zip' if fmt == 'zip' else 'tar.gz'}"
        if fmt == "zip":
            with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
                for name, data in content.items():
                    zf.writestr(name, data)
        else:
            with tarfile.open(path, "w:gz") as tf:
                for name, data in content.items():
                    raw = data.encode() if isinstance(data, str) else data
                    info = tarfile.TarInfo(name)
                    info.size = len(raw)
                    tf.addfile(info, io.BytesIO(raw))
        return path

    return build


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return replace(
        Settings(),
        data_dir=tmp_path / "data",
        work_root=tmp_path / "work",
        rules_dir=PROJECT_ROOT / "rules",
    )


@pytest.fixture(scope="session")
def clamd_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A real clamd on the project's signatures, started once per test session."""
    if shutil.which("clamd") is None and not Path("/usr/sbin/clamd").exists():
        pytest.fail("clamd is not installed: run scripts/setup")
    # A short path: unix socket paths are limited to 108 bytes.
    base = tmp_path_factory.mktemp("clamd")
    s = replace(
        Settings(),
        data_dir=base,
        work_root=base / "work",
        rules_dir=PROJECT_ROOT / "rules",
        official_clamav_db=base / "no-official-db",
    )
    server = ClamdServer(s)
    proc = server.start()
    yield s
    proc.terminate()
    proc.wait(timeout=20)
