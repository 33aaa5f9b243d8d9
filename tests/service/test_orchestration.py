"""Scans as idempotent steps: recorded once, concluded once, recovered by the sweeper."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from service import orchestration
from service.blobs import bundle_key, repack_key
from service.models import (
    Artifact,
    Decision,
    FindingRecord,
    Scan,
    StageRun,
    Submission,
    SweeperState,
    WebhookDelivery,
    utcnow,
)
from service.services import Services
from tests.scanner.archives import bad_utf8_local_name, unknown_version_needed
from tests.service.conftest import CountingStage, InlineJobQueue, post_submission, zip_bytes


def _scan(svc: Services, scan_id: str) -> Scan:
    with svc.session() as s:
        scan = s.get_one(Scan, scan_id)
        s.expunge(scan)
        return scan


def _count(svc: Services, model: type, scan_id: str) -> int:
    with svc.session() as s:
        return int(
            s.scalar(select(func.count()).select_from(model).where(model.scan_id == scan_id)) or 0
        )


def test_a_scan_records_stages_findings_artifacts_decision_and_report(
    client: FlaskClient, svc: Services
) -> None:
    scan_id = post_submission(client, bundle=zip_bytes({"a.js": "EVIL"})).get_json()["scan_id"]
    scan = _scan(svc, scan_id)
    assert scan.status == "completed" and scan.verdict == "reject"
    assert scan.report is not None and scan.report["verdict"] == "reject"
    assert scan.ruleset and scan.risk_score is not None
    with svc.session() as s:
        runs = {
            r.stage: r.status
            for r in s.scalars(select(StageRun).where(StageRun.scan_id == scan_id))
        }
        assert runs == {
            "archive": "ok",
            "marker": "ok",
            "counting": "ok",
            "capabilities": "ok",
        }
        names = set(s.scalars(select(Artifact.name).where(Artifact.scan_id == scan_id)))
        assert names == {"marker-trace.json", "report.sarif", "sbom.cdx.json"}
        decision = s.scalar(select(Decision).where(Decision.scan_id == scan_id))
        assert (
            decision is not None and decision.verdict == "reject" and decision.kind == "automatic"
        )
    assert _count(svc, FindingRecord, scan_id) == 1


def test_redelivered_steps_do_nothing_twice(
    client: FlaskClient, svc: Services, jobs: InlineJobQueue
) -> None:
    scan_id = post_submission(client, bundle=zip_bytes({"a.js": "EVIL"})).get_json()["scan_id"]
    runs_before = CountingStage.runs
    findings = _count(svc, FindingRecord, scan_id)
    orchestration.start_scan(svc, scan_id, jobs.registry)
    orchestration.run_stage(svc, scan_id, "marker", jobs.registry)
    orchestration.run_stage(svc, scan_id, "counting", jobs.registry)
    assert orchestration.conclude_scan(svc, scan_id) is False
    assert CountingStage.runs == runs_before
    assert _count(svc, FindingRecord, scan_id) == findings
    assert _count(svc, Decision, scan_id) == 1


def test_a_stage_whose_worker_died_runs_again_and_records_once(
    client: FlaskClient, svc: Services, jobs: InlineJobQueue
) -> None:
    jobs.hold = True
    scan_id = post_submission(client, bundle=zip_bytes({"a.js": "EVIL"})).get_json()["scan_id"]
    orchestration.start_scan(svc, scan_id, jobs.registry)  # fans out to held jobs
    # Simulate a worker that claimed the stage, then died before recording it.
    with svc.session() as s:
        s.execute(
            update(StageRun)
            .where(StageRun.scan_id == scan_id, StageRun.stage == "marker")
            .values(status="running", attempts=1)
        )
    orchestration.run_stage(svc, scan_id, "counting", jobs.registry)
    assert _scan(svc, scan_id).status == "scanning"
    orchestration.run_stage(svc, scan_id, "marker", jobs.registry)
    scan = _scan(svc, scan_id)
    assert scan.status == "completed" and scan.verdict == "reject"
    assert _count(svc, FindingRecord, scan_id) == 1
    with svc.session() as s:
        run = s.scalar(
            select(StageRun).where(StageRun.scan_id == scan_id, StageRun.stage == "marker")
        )
        assert run is not None and run.attempts == 2


def test_a_bundle_that_keeps_killing_its_worker_is_quarantined(
    client: FlaskClient, svc: Services, jobs: InlineJobQueue
) -> None:
    jobs.hold = True
    scan_id = post_submission(client, bundle=zip_bytes()).get_json()["scan_id"]
    orchestration.start_scan(svc, scan_id, jobs.registry)
    with svc.session() as s:
        s.execute(
            update(StageRun)
            .where(StageRun.scan_id == scan_id, StageRun.stage == "counting")
            .values(status="running", attempts=svc.settings.max_stage_attempts)
        )
    orchestration.run_stage(svc, scan_id, "counting", jobs.registry)
    orchestration.run_stage(svc, scan_id, "marker", jobs.registry)
    scan = _scan(svc, scan_id)
    assert scan.status == "completed" and scan.verdict != "pass"
    assert scan.report is not None
    assert any(f["rule_id"] == "stage-quarantined" for f in scan.report["findings"])
    stages = {st["name"]: st["status"] for st in scan.report["stages"]}
    assert stages["counting"] == "error"


def test_a_clean_bundle_passes_and_waits_for_review(client: FlaskClient, svc: Services) -> None:
    sub_id = post_submission(client, bundle=zip_bytes()).get_json()["id"]
    with svc.session() as s:
        sub = s.get_one(Submission, sub_id)
        assert (sub.status, sub.verdict) == ("awaiting_review", "pass")
        assert [e.to_status for e in sub.events] == ["received", "scanning", "awaiting_review"]


def test_a_stage_that_crashes_fails_closed(
    client: FlaskClient, svc: Services, jobs: InlineJobQueue
) -> None:
    def broken(_: object) -> object:
        raise RuntimeError("tool missing")

    jobs.registry.factories["counting"] = broken  # type: ignore[assignment]
    scan_id = post_submission(client, bundle=zip_bytes()).get_json()["scan_id"]
    scan = _scan(svc, scan_id)
    assert scan.verdict != "pass"
    assert scan.report is not None
    assert {st["name"]: st["status"] for st in scan.report["stages"]}["counting"] == "error"


def test_a_malformed_archive_is_rejected_with_a_finding(client: FlaskClient, svc: Services) -> None:
    scan_id = post_submission(client, bundle=b"PK\x03\x04 this is not really a zip").get_json()[
        "scan_id"
    ]
    scan = _scan(svc, scan_id)
    assert scan.status == "completed" and scan.verdict == "reject"
    assert scan.report is not None
    assert {st["name"]: st["status"] for st in scan.report["stages"]}["marker"] == "skipped"


def test_sweeper_requeues_lost_starts_and_redispatches_lost_stages(
    client: FlaskClient, svc: Services, jobs: InlineJobQueue
) -> None:
    jobs.hold = True
    scan_id = post_submission(client, bundle=zip_bytes()).get_json()["scan_id"]
    jobs.held.clear()  # the broker lost the message
    svc.settings = replace(svc.settings, stuck_after=60)
    assert orchestration.sweep(svc)["requeued"] == 0  # not quiet long enough yet
    _age(svc, scan_id)
    assert orchestration.sweep(svc)["requeued"] == 1
    assert jobs.held == [("start", scan_id, "scan")]
    jobs.held.clear()
    orchestration.start_scan(svc, scan_id, jobs.registry)  # fans out; the broker loses it
    _age(svc, scan_id)
    jobs.held.clear()
    assert orchestration.sweep(svc)["redispatched"] == 1
    assert [h[1] for h in jobs.held] == [(scan_id, ("marker",)), (scan_id, ("counting",))]


def test_a_backlog_is_queued_not_stuck(
    client: FlaskClient, svc: Services, jobs: InlineJobQueue
) -> None:
    """Messages still waiting in their queues are left there, however old: resending them
    would only lengthen the queue and, with two browser workers, detonate twice."""
    jobs.hold = True
    scan_id = post_submission(client, bundle=zip_bytes()).get_json()["scan_id"]
    _age(svc, scan_id)
    assert orchestration.sweep(svc)["waiting"] == 1  # its start is still in the queue
    jobs.held.clear()
    orchestration.start_scan(svc, scan_id, jobs.registry)
    _age(svc, scan_id)
    held = list(jobs.held)
    counts = orchestration.sweep(svc)
    assert counts["waiting"] == 1 and counts["redispatched"] == 0
    assert jobs.held == held  # nothing sent twice


def test_after_a_broker_outage_in_flight_work_is_resent_at_once(
    client: FlaskClient, svc: Services, jobs: InlineJobQueue
) -> None:
    """The sweeps stop with the broker; the first one after it is back resends what was
    in flight at once, not after GATEHOUSE_STUCK_AFTER."""
    jobs.hold = True
    orchestration.sweep(svc)  # a sweep before the outage
    scan_id = post_submission(client, bundle=zip_bytes()).get_json()["scan_id"]
    orchestration.start_scan(svc, scan_id, jobs.registry)
    jobs.held.clear()  # the broker went away with its messages
    with svc.session() as s:  # ...for longer than three sweep intervals
        s.execute(update(SweeperState).values(last_sweep_at=utcnow() - timedelta(minutes=5)))
        s.execute(  # the scan itself moved a moment ago: not quiet by the usual measure
            update(Scan)
            .where(Scan.id == scan_id)
            .values(updated_at=utcnow() - timedelta(seconds=10))
        )
    assert orchestration.sweep(svc)["redispatched"] == 1
    assert {h[1][1][0] for h in jobs.held} == {"marker", "counting"}


def test_a_restarted_redis_is_an_outage_even_between_sweeps(
    client: FlaskClient, svc: Services, jobs: InlineJobQueue
) -> None:
    jobs.hold = True
    jobs.identity = "run-1"
    orchestration.sweep(svc)
    scan_id = post_submission(client, bundle=zip_bytes()).get_json()["scan_id"]
    with svc.session() as s:
        s.execute(
            update(Scan)
            .where(Scan.id == scan_id)
            .values(updated_at=utcnow() - timedelta(seconds=10))
        )
    jobs.held.clear()
    jobs.identity = "run-2"  # restarted: its lists are empty
    assert orchestration.sweep(svc)["requeued"] == 1


def test_preflight_scans_go_to_the_urgent_queues(
    client: FlaskClient, svc: Services, jobs: InlineJobQueue
) -> None:
    from service.submissions import start_preflight
    from service.tokens import create_token

    jobs.hold = True
    with svc.session() as s:
        token, _ = create_token(s, "ci", {"preflight"})
        token_id = token.id
    bundle = svc.settings.work_root.parent / "pre.zip"
    bundle.write_bytes(zip_bytes())
    scan_id = start_preflight(svc, token_id, bundle, "pre.zip")
    assert jobs.held == [("start", scan_id, "preflight.scan")]
    jobs.held.clear()
    orchestration.start_scan(svc, scan_id, jobs.registry)
    assert {queue for *_, queue in jobs.held} == {"preflight.scan"}


def _age(svc: Services, scan_id: str) -> None:
    with svc.session() as s:
        s.execute(
            update(Scan).where(Scan.id == scan_id).values(updated_at=utcnow() - timedelta(hours=1))
        )


def test_callbacks_are_recorded_with_the_outcome(
    client: FlaskClient, svc: Services, jobs: InlineJobQueue
) -> None:
    jobs.hold = True
    from tests.service.conftest import submission_fields

    r = post_submission(
        client,
        fields=submission_fields(callback_url="https://registry.example/hooks"),
        bundle=zip_bytes({"a.js": "EVIL"}),
    )
    jobs.hold = False
    orchestration.start_scan(svc, r.get_json()["scan_id"], jobs.registry)
    with svc.session() as s:
        events = sorted(s.scalars(select(WebhookDelivery.event_type)))
    assert events == ["scan.completed", "submission.rejected"]


# --- intake never crashes and never spins; later steps read the repack (issue 11) ------


def test_a_manifest_that_crashes_the_parser_still_concludes(
    client: FlaskClient, svc: Services
) -> None:
    """5,000 nested brackets in plugin.json once left a scan in "scanning" forever."""
    deep = '{"name": "x", "a": ' + "[" * 5000 + "]" * 5000 + "}"
    scan_id = post_submission(client, bundle=zip_bytes({"plugin.json": deep})).get_json()["scan_id"]
    scan = _scan(svc, scan_id)
    # Concluded, and not clean (these test stages have no manifest stage to reject it).
    assert scan.status == "completed" and scan.verdict in ("review", "reject")


@pytest.mark.parametrize("case", ["bad-utf8", "unknown-version"])
def test_an_archive_that_crashed_intake_concludes_with_a_refusal(
    client: FlaskClient, svc: Services, case: str
) -> None:
    bundle = {"bad-utf8": bad_utf8_local_name, "unknown-version": unknown_version_needed}[case]()
    scan_id = post_submission(client, bundle=bundle).get_json()["scan_id"]
    scan = _scan(svc, scan_id)
    assert scan.status == "completed" and scan.verdict == "reject"
    assert scan.report is not None
    assert any(f["category"] == "archive" for f in scan.report["findings"])
    assert scan.repack_sha256 is None


def test_an_intake_over_budget_concludes_and_leaves_nothing(
    client: FlaskClient, svc: Services
) -> None:
    svc.settings = replace(svc.settings, archive=replace(svc.settings.archive, max_seconds=0.001))
    scan_id = post_submission(client, bundle=zip_bytes()).get_json()["scan_id"]
    scan = _scan(svc, scan_id)
    assert scan.status == "completed" and scan.verdict == "reject"
    assert scan.report is not None
    assert [f["rule_id"] for f in scan.report["findings"]] == ["archive-budget-exceeded"]
    assert list(svc.settings.work_root.iterdir()) == []


def test_intake_failing_on_our_side_still_concludes(
    client: FlaskClient, svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> list[object]:
        raise RuntimeError("no interpreter to start")

    monkeypatch.setattr("scanner.pipeline.unpack_confined", broken)
    scan_id = post_submission(client, bundle=zip_bytes()).get_json()["scan_id"]
    scan = _scan(svc, scan_id)
    assert scan.status == "completed" and scan.verdict != "pass"
    assert scan.report is not None
    assert {st["name"]: st["status"] for st in scan.report["stages"]}["archive"] == "error"


def test_stages_and_the_conclusion_read_the_repack_never_the_upload(
    client: FlaskClient, svc: Services, jobs: InlineJobQueue
) -> None:
    jobs.hold = True
    body = zip_bytes()
    scan_id = post_submission(client, bundle=body).get_json()["scan_id"]
    orchestration.start_scan(svc, scan_id, jobs.registry)
    scan = _scan(svc, scan_id)
    assert scan.repack_sha256 and scan.tree_sha256 and scan.repack_size
    assert svc.blobs.exists(repack_key(scan.repack_sha256))
    # Another meaning of the upload (what a differential parser could see) is never read:
    # the upload's blob now holds a bundle with EVIL in it, the repack does not.
    assert scan.bundle_sha256 is not None
    svc.blobs.put_bytes(bundle_key(scan.bundle_sha256), zip_bytes({"a.js": "EVIL"}))
    jobs.hold = False
    for name in jobs.registry.names:
        orchestration.run_stage(svc, scan_id, name, jobs.registry)
    scan = _scan(svc, scan_id)
    assert scan.status == "completed" and scan.verdict == "pass"
    assert scan.report is not None
    assert scan.report["bundle"]["tree_sha256"] == scan.tree_sha256
    assert scan.report["bundle"]["repack_sha256"] == scan.repack_sha256
    assert scan.report["bundle"]["sha256"] == scan.bundle_sha256


def test_a_repack_that_changed_in_storage_fails_closed(
    client: FlaskClient, svc: Services, jobs: InlineJobQueue
) -> None:
    jobs.hold = True
    scan_id = post_submission(client, bundle=zip_bytes()).get_json()["scan_id"]
    orchestration.start_scan(svc, scan_id, jobs.registry)
    scan = _scan(svc, scan_id)
    assert scan.repack_sha256 is not None
    svc.blobs.put_bytes(repack_key(scan.repack_sha256), zip_bytes({"a.js": "changed"}))
    jobs.hold = False
    for name in jobs.registry.names:
        orchestration.run_stage(svc, scan_id, name, jobs.registry)
    scan = _scan(svc, scan_id)
    assert scan.status == "completed" and scan.verdict != "pass"
    assert scan.report is not None
    stages = {st["name"]: st for st in scan.report["stages"]}
    assert stages["marker"]["status"] == "error" and "RepackError" in stages["marker"]["error"]
    assert stages["capabilities"]["status"] == "error"
