"""Every entry point refuses to start with unusable signing secrets: serve, the WSGI
app, and the Celery workers (issue 11, section 6)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.cli import main
from tests.paths import PROJECT_ROOT

BAD = {
    "GATEHOUSE_WEBHOOK_SECRETS": "whsec_",
}
UNSIGNED_CALLBACKS = {
    "GATEHOUSE_CALLBACK_ORIGINS": "https://registry.example",
    "GATEHOUSE_CALLBACK_SECRET": "",
}


def _env(tmp_path: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEHOUSE_")}
    env.update(
        GATEHOUSE_DATA_DIR=str(tmp_path / "data"),
        GATEHOUSE_WORK_ROOT=str(tmp_path / "work"),
        **extra,
    )
    return env


@pytest.mark.parametrize("extra", [BAD, UNSIGNED_CALLBACKS], ids=["whsec_", "no-callback-secret"])
def test_serve_refuses_to_start(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    extra: dict[str, str],
) -> None:
    for key, value in _env(tmp_path, extra).items():
        if key.startswith("GATEHOUSE_"):
            monkeypatch.setenv(key, value)
    assert main(["serve", "--listen", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert "GATEHOUSE_" in err and "Traceback" not in err
    assert not (tmp_path / "data" / "gatehouse.db").exists()  # nothing was started


@pytest.mark.parametrize(
    "module", ["workers.worker", "review_ui.wsgi"], ids=["celery-worker", "wsgi"]
)
@pytest.mark.parametrize("extra", [BAD, UNSIGNED_CALLBACKS], ids=["whsec_", "no-callback-secret"])
def test_workers_and_the_web_app_refuse_to_start(
    tmp_path: Path, module: str, extra: dict[str, str]
) -> None:
    code = f"import {module} as m; getattr(m, 'build', lambda: None)()"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=_env(tmp_path, extra),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "SettingsError" in proc.stderr and "GATEHOUSE_" in proc.stderr
