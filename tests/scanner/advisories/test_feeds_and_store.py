"""Feeds become facts in the database: withdrawn skipped, re-import replaces, lookups indexed."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from scanner.advisories.feeds import (
    BACKDOOR_ECOSYSTEM,
    RETIRE_ECOSYSTEM,
    Feed,
    cvss3_base_score,
    parse_osv,
    read_feed,
)
from scanner.advisories.models import Advisory
from scanner.advisories.snapshot import ensure_snapshot, snapshot_feeds
from scanner.advisories.store import AdvisoryStore
from scanner.advisories.versions import NPM, PYPI, is_affected
from scanner.db import make_engine
from tests.paths import PROJECT_ROOT


def osv(id_: str, name: str = "Some_Package", **extra: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": id_,
        "modified": "2024-01-02T00:00:00Z",
        "details": "long prose that must not be kept",
        "aliases": ["CVE-2024-0001"],
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": name},
                "ranges": [
                    {
                        "type": "GIT",
                        "repo": "https://example.invalid/r",
                        "events": [{"introduced": "0"}, {"fixed": "abc123"}],
                    },
                    {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.2.0"}]},
                ],
                "versions": ["1.0.0", "1.1.0"],
            }
        ],
        "references": [{"type": "ADVISORY", "url": "https://example.invalid/a"}],
    }
    record.update(extra)
    return record


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return make_engine(f"sqlite:///{tmp_path / 'adv.db'}")


def test_parse_osv_keeps_facts_and_normalises_names() -> None:
    rec = parse_osv(
        osv(
            "PYSEC-1",
            severity=[{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
        )
    )
    assert rec is not None
    assert rec.affected[0].name == "some-package"  # PEP 503
    assert [r.events for r in rec.affected[0].ranges] == [
        (("introduced", "0"), ("fixed", "1.2.0"))
    ]  # GIT dropped
    assert rec.severity == "critical" and rec.references == ("https://example.invalid/a",)
    assert not hasattr(rec, "details")


def test_withdrawn_records_are_skipped() -> None:
    assert parse_osv(osv("PYSEC-2", withdrawn="2024-02-01T00:00:00Z")) is None


@pytest.mark.parametrize(
    ("vector", "score"),
    [
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1),
        ("CVSS:3.1/AV:L/AC:L/PR:L/UI:R/S:U/C:L/I:N/A:N", 2.8),
        ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:L/I:N/A:N", 3.3),
        ("CVSS:3.0/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N", 5.9),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0),
    ],
)
def test_cvss3_base_scores_match_the_specification(vector: str, score: float) -> None:
    assert cvss3_base_score(vector) == score


def test_reads_osv_directories_zips_and_jsonl(tmp_path: Path) -> None:
    d = tmp_path / "osv"
    d.mkdir()
    (d / "a.json").write_text(json.dumps(osv("PYSEC-A")))
    (d / "b.yaml").write_text(
        "id: PYSEC-B\naffected:\n- package: {ecosystem: PyPI, name: b}\n  versions: ['1.0']\n"
    )
    assert {r.id for r in read_feed(d).records} == {"PYSEC-A", "PYSEC-B"}
    with zipfile.ZipFile(tmp_path / "all.zip", "w") as zf:
        zf.writestr("GHSA-1.json", json.dumps(osv("GHSA-1")))
    assert [r.id for r in read_feed(tmp_path / "all.zip").records] == ["GHSA-1"]
    (tmp_path / "x.jsonl").write_text(json.dumps(osv("X-1")) + "\n" + json.dumps(osv("X-2")) + "\n")
    assert len(read_feed(tmp_path / "x.jsonl").records) == 2


def test_reads_the_three_retirejs_shapes(tmp_path: Path) -> None:
    js = tmp_path / "jsrepository.json"
    js.write_text(
        json.dumps(
            {
                "jquery": {
                    "vulnerabilities": [
                        {
                            "atOrAbove": "1.2.0",
                            "below": "3.5.0",
                            "severity": "medium",
                            "identifiers": {
                                "CVE": ["CVE-2020-11022"],
                                "githubID": "GHSA-gxr4-xjj5-5px2",
                                "summary": "x",
                            },
                        }
                    ],
                    "extractors": {
                        "filecontent": ["/\\*!? jQuery v(§§version§§)"],
                        "hashes": {"abc": "1.0.0"},
                    },
                }
            }
        )
    )
    feed = read_feed(js)
    rec = feed.records[0]
    assert (rec.id, rec.aliases, rec.affected[0].ecosystem) == (
        "GHSA-gxr4-xjj5-5px2",
        ("CVE-2020-11022",),
        RETIRE_ECOSYSTEM,
    )
    assert {d.kind for d in feed.detectors} == {"filecontent", "hash"}
    npm = tmp_path / "npmrepository.json"
    npm.write_text(
        json.dumps(
            {
                "lodash": {
                    "vulnerabilities": [{"below": "4.17.21", "severity": "high", "identifiers": {}}]
                }
            }
        )
    )
    assert read_feed(npm).records[0].affected[0].ecosystem == NPM
    bd = tmp_path / "backdoored.json"
    bd.write_text(
        json.dumps(
            {"polyfill.io": [{"severity": "high", "extractors": ["^https://polyfill\\.io/"]}]}
        )
    )
    feed = read_feed(bd)
    assert feed.records[0].affected[0].ecosystem == BACKDOOR_ECOSYSTEM
    assert feed.detectors[0].kind == "backdoor"


def test_import_then_reimport_replaces_without_duplicates(engine: Engine) -> None:
    store = AdvisoryStore(engine)
    feed = Feed(
        "osv:test", "osv", [r for r in (parse_osv(osv("PYSEC-1")), parse_osv(osv("PYSEC-2"))) if r]
    )
    store.import_feed(feed)
    store.import_feed(feed)
    found = store.lookup(PYPI, ["Some.Package"])
    assert sorted(v.advisory_id for v in found["some-package"]) == ["PYSEC-1", "PYSEC-2"]
    status = store.status()
    assert [(s.name, s.advisories, s.per_ecosystem) for s in status] == [("osv:test", 2, {PYPI: 2})]


def test_failed_import_leaves_the_old_data_whole(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = AdvisoryStore(engine)
    store.import_feed(Feed("osv:test", "osv", [r for r in [parse_osv(osv("PYSEC-OLD"))] if r]))

    def boom(*args: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(store, "_insert_records", boom)
    with pytest.raises(RuntimeError):
        store.import_feed(Feed("osv:test", "osv", [r for r in [parse_osv(osv("PYSEC-NEW"))] if r]))
    assert [v.advisory_id for v in store.lookup(PYPI, ["some-package"])["some-package"]] == [
        "PYSEC-OLD"
    ]


def test_shipped_snapshot_finds_real_vulnerabilities(engine: Engine) -> None:
    store = AdvisoryStore(engine)
    assert ensure_snapshot(store, PROJECT_ROOT / "rules") is True
    assert ensure_snapshot(store, PROJECT_ROOT / "rules") is False  # only into an empty database
    urllib3 = store.lookup(PYPI, ["urllib3"])["urllib3"]
    assert any(is_affected(PYPI, "1.24.1", v.ranges, v.versions) for v in urllib3)
    assert not any(is_affected(PYPI, "2.2.3", v.ranges, v.versions) for v in urllib3)
    statuses = {s.name: s for s in store.status()}
    assert statuses["snapshot:osv-pypa.jsonl"].snapshot == "2024-10-10"
    assert "CC-BY-4.0" in (statuses["snapshot:osv-pypa.jsonl"].licence or "")
    assert store.detectors()  # RetireJS detectors for vendored libraries
    with engine.connect() as conn:
        assert conn.execute(select(Advisory.advisory_id).limit(1)).scalar()


def test_snapshot_keeps_licences_and_no_prose() -> None:
    base = PROJECT_ROOT / "rules" / "advisories"
    assert (base / "LICENSE-pypa-advisory-database").is_file()
    assert (base / "LICENSE-retirejs.md").is_file() and (base / "NOTICE-retirejs.md").is_file()
    first = json.loads((base / "osv-pypa.jsonl").read_text().splitlines()[0])
    assert "details" not in first and "summary" not in first
    assert len(snapshot_feeds(PROJECT_ROOT / "rules")) == 4


def test_shipped_snapshot_is_what_build_snapshot_makes(tmp_path: Path) -> None:
    """The data in rules/advisories is reproducible from the sources, byte for byte."""
    shared = PROJECT_ROOT.parent / "shared" / "advisories"
    if not (shared / "pypa-advisory-database").is_dir():
        pytest.skip("../shared/advisories is not beside the checkout")
    from scanner.advisories.snapshot import build_snapshot

    build_snapshot(shared, tmp_path)
    shipped = PROJECT_ROOT / "rules" / "advisories"
    for built in sorted(tmp_path.iterdir()):
        assert built.read_bytes() == (shipped / built.name).read_bytes(), built.name


def test_unreadable_ranges_are_counted_import_warnings(engine: Engine, tmp_path: Path) -> None:
    repo = {
        "widget": {
            "vulnerabilities": [
                {"atOrAbove": "1.3.0-*", "below": "1.3.2", "identifiers": {"CVE": ["CVE-1"]}},
                {"below": "~", "identifiers": {"CVE": ["CVE-2"]}},
                {"atOrAbove": "one", "below": "2.0.0", "identifiers": {"CVE": ["CVE-3"]}},
            ]
        }
    }
    path = tmp_path / "npmrepository.json"
    path.write_text(json.dumps(repo))
    store = AdvisoryStore(engine)
    store.import_feed(read_feed(path))
    (status,) = store.status()
    assert status.warning_count == 2  # the "-*" bound is read, the other two cannot be
    assert status.warnings == (
        "CVE-2 widget: unreadable fixed '~'",
        "CVE-3 widget: unreadable introduced 'one'",
    )


def test_the_shipped_ember_advisories_fire(engine: Engine) -> None:
    """RetireJS's "1.3.0-*" lower bounds were dropped: ember 1.3.1 got no CVE-2014-0046."""
    store = AdvisoryStore(engine)
    ensure_snapshot(store, PROJECT_ROOT / "rules")
    ember = store.lookup(NPM, ["ember"])["ember"]
    hits = {v.advisory_id for v in ember if is_affected(NPM, "1.3.1", v.ranges, v.versions)}
    hits |= {a for v in ember if is_affected(NPM, "1.3.1", v.ranges) for a in v.aliases}
    assert "CVE-2014-0046" in hits
    statuses = {s.name: s for s in store.status()}
    npm = statuses["snapshot:retirejs-npmrepository.json"]
    assert npm.warning_count == 1 and "simple-server" in npm.warnings[0]


_RACE = """
import sys
from scanner.advisories.snapshot import ensure_snapshot
from scanner.advisories.store import AdvisoryStore
from scanner.db import make_engine
from pathlib import Path
store = AdvisoryStore(make_engine(sys.argv[1]))
print(ensure_snapshot(store, Path(sys.argv[2])))
"""


def _race(url: str) -> tuple[list[str], int]:
    import subprocess
    import sys

    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RACE, url, str(PROJECT_ROOT / "rules")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    # Every child is waited for before any assertion, so a failure leaks no pipe.
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-2000:]
    results = [out.strip() for out, _ in outputs]
    engine = make_engine(url)
    count = sum(s.advisories for s in AdvisoryStore(engine).status())
    engine.dispose()
    return sorted(results), count


def test_workers_racing_on_a_fresh_sqlite_database_import_the_snapshot_once(
    tmp_path: Path,
) -> None:
    results, count = _race(f"sqlite:///{tmp_path / 'fresh.db'}")
    assert results == ["False", "False", "True"]
    single = sum(len(f.records) for f in snapshot_feeds(PROJECT_ROOT / "rules"))
    assert count == single


@pytest.mark.integration
def test_workers_racing_on_a_fresh_postgresql_database_import_the_snapshot_once() -> None:
    from tests.service.live import postgres_database

    with postgres_database() as url:
        results, count = _race(url)
    assert results == ["False", "False", "True"]
    assert count == sum(len(f.records) for f in snapshot_feeds(PROJECT_ROOT / "rules"))
