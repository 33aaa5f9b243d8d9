"""The speed benchmark's own parts: the peer, the spread of figures, what it scans."""

from __future__ import annotations

import json
import stat
import zipfile
from pathlib import Path

import pytest

from scanner.bench_speed import (
    MOUNT,
    PEER_ENV,
    UNAVAILABLE,
    Peer,
    Spread,
    plugin_bundle,
    ratio,
    sample,
)


def test_no_peer_named_means_peer_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PEER_ENV, raising=False)
    assert Peer.find(None) is None
    assert ratio(Spread((1.0, 2.0)), None) == UNAVAILABLE


def test_a_peer_that_cannot_be_run_is_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "guarddog"
    monkeypatch.setenv(PEER_ENV, str(missing))
    assert Peer.find(None) is None
    missing.write_text("#!/bin/sh\n")  # there, but not executable
    assert Peer.find(None) is None


def test_the_peer_is_found_by_option_or_environment_and_runs_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exe = tmp_path / "guarddog"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.delenv(PEER_ENV, raising=False)
    peer = Peer.find(exe)
    assert peer is not None and peer.executable == exe
    monkeypatch.setenv(PEER_ENV, str(exe))
    found = Peer.find(None)
    assert found is not None
    command = found.command(tmp_path / "b.zip")
    assert command[0] == "unshare" and "-n" in command  # an empty network namespace
    assert command[-3:] == ["npm", "scan", str(tmp_path / "b.zip")]


def test_spread_prints_min_median_max_and_ratio_of_medians() -> None:
    ours, theirs = Spread((3.0, 1.0, 2.0)), Spread((1.0, 1.0, 4.0))
    assert ours.text() == "1.00/2.00/3.00 s"
    assert ratio(ours, theirs) == "2.0x"


def test_each_benchmark_bundle_mounts_a_plugin(tmp_path: Path) -> None:
    bundle = plugin_bundle(tmp_path / "b.zip", b"var x=1;")
    with zipfile.ZipFile(bundle) as zf:
        manifest = json.loads(zf.read("plugin.json"))
        entry = zf.read(manifest["entry"])
    assert entry.startswith(b"var x=1;") and entry.endswith(MOUNT)
    assert b"var " + manifest["globalName"].encode() + b"={mount:" in entry


def test_samples_use_the_real_library_that_fits_and_are_fresh_each_time() -> None:
    small, large = b"/*small*/" * 100, b"/*large*/" * 10_000
    picked = sample(90_000, 1, [small, large])
    assert picked.startswith(large) and len(picked) >= len(large)
    assert sample(1000, 1, [small, large]).startswith(small)
    assert not sample(10, 1, [large]).startswith(large)  # too big for the size: synthetic
    assert sample(1000, 1, [small]) != sample(1000, 1, [small])  # clamd caches by hash
