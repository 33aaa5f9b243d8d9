"""ClamAV: FOUND is malware, limits are coverage gaps, anything else fails the stage."""

from __future__ import annotations

from pathlib import Path

import pytest

from scanner.clamav import ClamdUnavailableError, ClamdVerdict, SocketClamdClient
from scanner.config import Settings
from scanner.findings import Category, Severity, StageStatus
from scanner.stages.antivirus import AntivirusStage
from scanner.workspace import Workspace
from tests.conftest import workspace_of

# Built at run time so this file itself is never flagged by a scanner.
EICAR = ("X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*").encode()


class FakeClamd:
    """Answers by content: a dict from file bytes to verdict, OK otherwise."""

    def __init__(
        self, answers: dict[bytes, ClamdVerdict] | None = None, down: bool = False
    ) -> None:
        self.answers = answers or {}
        self.down = down

    def ping(self) -> None:
        if self.down:
            raise ClamdUnavailableError("down")

    def version(self) -> str:
        self.ping()
        return "ClamAV fake"

    def scan_bytes(self, data: bytes) -> ClamdVerdict:
        self.ping()
        return self.answers.get(data, ClamdVerdict("OK", None))


def _workspace(tmp_path: Path, files: dict[str, bytes]) -> Workspace:
    return workspace_of(tmp_path / "b", dict(files))


def test_found_is_a_critical_malware_finding(tmp_path: Path) -> None:
    fake = FakeClamd({b"bad": ClamdVerdict("FOUND", "Some.Sig")})
    result = AntivirusStage(fake).run(_workspace(tmp_path, {"a.js": b"bad", "b.js": b"good"}))
    assert result.status is StageStatus.OK
    [finding] = result.findings
    assert (finding.category, finding.severity, finding.path) == (
        Category.MALWARE,
        Severity.CRITICAL,
        "a.js",
    )
    assert sorted(result.coverage.scanned) == ["a.js", "b.js"]


def test_limit_exceeded_is_a_coverage_gap_not_clean(tmp_path: Path) -> None:
    fake = FakeClamd({b"huge": ClamdVerdict("FOUND", "Heuristics.Limits.Exceeded.MaxFileSize")})
    result = AntivirusStage(fake).run(_workspace(tmp_path, {"big.bin": b"huge"}))
    assert [f.category for f in result.findings] == [Category.COVERAGE]
    assert result.coverage.not_scanned[0].path == "big.bin"


def test_an_error_answer_fails_the_stage(tmp_path: Path) -> None:
    fake = FakeClamd({b"x": ClamdVerdict("ERROR", "INSTREAM size limit exceeded")})
    result = AntivirusStage(fake).run(_workspace(tmp_path, {"x.js": b"x"}))
    assert result.status is StageStatus.ERROR
    assert [f.category for f in result.findings] == [Category.COVERAGE]


def test_unreachable_clamd_raises_so_the_pipeline_records_an_error(tmp_path: Path) -> None:
    pauses: list[float] = []
    with pytest.raises(ClamdUnavailableError):
        AntivirusStage(FakeClamd(down=True), sleep=pauses.append).run(
            _workspace(tmp_path, {"a.js": b"1"})
        )
    assert pauses == [0.5, 2.0, 5.0]  # retried before giving up


def test_a_clamd_that_comes_back_is_retried_not_recorded_as_an_error(tmp_path: Path) -> None:
    """clamd restarted by its supervisor mid-scan: the EICAR file is still found."""
    fake = FakeClamd({EICAR: ClamdVerdict("FOUND", "Eicar-Signature")}, down=True)

    def pause(_: float) -> None:
        fake.down = False  # back after the first pause

    result = AntivirusStage(fake, sleep=pause).run(_workspace(tmp_path, {"e.txt": EICAR}))
    assert result.status is StageStatus.OK
    assert [f.category for f in result.findings] == [Category.MALWARE]


def test_real_client_reports_a_missing_socket(settings: Settings) -> None:
    with pytest.raises(ClamdUnavailableError):
        SocketClamdClient(settings).ping()


@pytest.mark.integration
def test_real_clamd_finds_eicar_and_passes_clean_files(
    clamd_settings: Settings, tmp_path: Path
) -> None:
    stage = AntivirusStage.from_settings(clamd_settings)
    result = stage.run(
        _workspace(tmp_path, {"dist/styles.css": b"/* x */" + EICAR, "dist/a.js": b"var a = 1;"})
    )
    assert result.status is StageStatus.OK
    assert [(f.path, f.rule_id) for f in result.findings] == [
        ("dist/styles.css", "clamav:Gatehouse.Test.EICAR.UNOFFICIAL")
    ]
    assert result.tool_versions["clamav"].startswith("ClamAV")


@pytest.mark.integration
@pytest.mark.parametrize(
    ("content", "signature"),
    [
        (
            b"var x=1;eval(atob('ZmV0Y2goJ2h0dHBzOi8vZXZpbC5leGFtcGxlJyk='));",
            "Gatehouse.JS.Trojan.EvalAtob",
        ),
        (b"var m = new CoinHive.Anonymous('key'); m.start();", "Gatehouse.JS.Miner.CoinHive"),
        (b"import base64\nexec(base64.b64decode(blob))\n", "Gatehouse.PY.Loader.ExecBase64"),
    ],
)
def test_real_clamd_project_signatures(
    clamd_settings: Settings, tmp_path: Path, content: bytes, signature: str
) -> None:
    result = AntivirusStage.from_settings(clamd_settings).run(_workspace(tmp_path, {"f": content}))
    assert [f.evidence for f in result.findings] == [f"{signature}.UNOFFICIAL"]


@pytest.mark.integration
def test_real_clamd_benign_lookalikes_are_clean(clamd_settings: Settings, tmp_path: Path) -> None:
    benign = (
        b"var evaluate = function (s) { return atob(s); }; var hive = 'CoinHive is a bee product';"
    )
    result = AntivirusStage.from_settings(clamd_settings).run(
        _workspace(tmp_path, {"f.js": benign})
    )
    assert result.findings == [] and result.status is StageStatus.OK
