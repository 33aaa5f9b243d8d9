"""Issue 11's archive attacks through the real pipeline: real stages, clamd and Chromium.

Each once got a cookie stealer to `pass` (zipfile read only the harmless start; unzip,
Java and a CDN unpacking the upload would serve the stealer). Now intake refuses them,
and the same stealer packed honestly is rejected for what it does.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from scanner.config import Settings
from scanner.findings import StageResult, StageStatus
from scanner.pipeline import ScanResult, build_stages, default_stage_factories, scan_bundle
from scanner.policy import Policy
from scanner.stages.base import Stage
from tests.scanner.archives import (
    DEFLATED,
    HARMLESS,
    PLUGIN,
    STEALER,
    STORED,
    build_zip,
    entry,
    local_entry_missing_from_directory,
    stealer_behind_the_directory,
)

pytestmark = pytest.mark.integration

Real = tuple[list[Stage], list[StageResult], Policy]


@pytest.fixture(scope="module")
def real(clamd_settings: Settings) -> Iterator[Real]:
    stages, unavailable = build_stages(clamd_settings, default_stage_factories())
    assert not unavailable, [u.error for u in unavailable]
    yield stages, unavailable, Policy.load(clamd_settings.policy_path)


def _scan(bundle: bytes, tmp_path: Path, settings: Settings, real: Real) -> ScanResult:
    path = tmp_path / "bundle.zip"
    path.write_bytes(bundle)
    stages, unavailable, policy = real
    work = replace(settings, work_root=tmp_path / "work")
    result = scan_bundle(path, work, stages, policy, unavailable=unavailable)
    assert list(work.work_root.iterdir()) == []  # nothing left behind
    return result


ATTACKS = {
    "stored": lambda: stealer_behind_the_directory(STORED),
    "deflated": lambda: stealer_behind_the_directory(DEFLATED),
    "missing-from-directory": local_entry_missing_from_directory,
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_a_stealer_the_directory_hides_is_rejected_as_malformed(
    tmp_path: Path, clamd_settings: Settings, real: Real, attack: str
) -> None:
    result = _scan(ATTACKS[attack](), tmp_path, clamd_settings, real)
    assert result.decision.verdict.label == "reject"
    assert "archive-malformed" in {f.rule_id for f in result.findings}
    stages = {s.name: s.status for s in result.stages}
    assert stages["archive"] is StageStatus.OK
    assert {stages[s.name] for s in real[0]} == {StageStatus.SKIPPED}
    assert result.repack_sha256 is None


def test_the_same_stealer_packed_honestly_is_rejected_for_what_it_does(
    tmp_path: Path, clamd_settings: Settings, real: Real
) -> None:
    honest = build_zip([entry("plugin.json", PLUGIN), entry("dist/bundle.js", HARMLESS + STEALER)])
    result = _scan(honest, tmp_path, clamd_settings, real)
    assert result.decision.verdict.label == "reject"
    assert "exfiltration" in {f.category.value for f in result.findings}
    assert not any(f.category.value == "archive" for f in result.findings)
    assert result.repack_sha256 is not None
