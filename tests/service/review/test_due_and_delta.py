"""Pure parts of the desk: due dates in working hours, the risk delta, auto-approval's rule."""

from __future__ import annotations

from datetime import UTC, datetime

from service.review.autoapprove import evaluate
from service.review.delta import Delta, compute, new_findings, normalise_path
from service.review.due import add_working_hours, working_hours_between


def at(day: int, hour: int = 0) -> datetime:
    # December 2026: the 4th is a Friday, the 5th and 6th the weekend, the 7th a Monday.
    return datetime(2026, 12, day, hour, tzinfo=UTC)


def test_working_hours_skip_the_weekend() -> None:
    assert add_working_hours(at(3, 10), 24) == at(4, 10)  # Thursday -> Friday
    assert add_working_hours(at(4, 18), 24) == at(7, 18)  # Friday -> Monday
    assert add_working_hours(at(5, 12), 8) == at(7, 8)  # from Saturday: counts from Monday
    assert add_working_hours(at(4, 18), 0) == at(4, 18)
    assert working_hours_between(at(4, 18), at(7, 18)) == 24


def finding(
    rule: str, path: str, line: int, evidence: str, message: str = "m"
) -> dict[str, object]:
    return {"rule_id": rule, "path": path, "line": line, "evidence": evidence, "message": message}


def test_a_finding_that_moved_lines_or_files_renamed_by_build_hash_is_not_new() -> None:
    before = [finding("js-eval", "dist/app.3f2a9c1d.js", 10, "eval(a)")]
    after = [finding("js-eval", "dist/app.77ab0e12.js", 250, "eval(b)")]
    fresh, resolved = new_findings(after, before)
    assert fresh == [] and resolved == 0
    assert normalise_path("dist/lib-1.2.3.min.js") == normalise_path("dist/lib-1.3.0.min.js")


def test_one_more_occurrence_of_the_same_thing_is_new() -> None:
    """An attacker adding a second eval beside an approved one does not hide behind it."""
    before = [
        finding("js-eval", "dist/a.js", 1, "eval(x)", "runs code (2 occurrences in this file)")
    ]
    after = [
        finding("js-eval", "dist/a.js", 1, "eval(x)", "runs code (3 occurrences in this file)")
    ]
    assert len(new_findings(after, before)[0]) == 1
    same_rule_new_file = [*before, finding("js-eval", "dist/b.js", 1, "eval(x)")]
    assert [f["path"] for f in new_findings(same_rule_new_file, before)[0]] == ["dist/b.js"]


def facts(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "files": [["dist/a.js", "1" * 64, 10], ["dist/vendor/jquery.js", "2" * 64, 99]],
        "capabilities": ["storage"],
        "declared_origins": ["https://api.example"],
        "observed_origins": [],
        "dependencies": ["npm:left-pad@1.0.0"],
        "vendored": {"dist/vendor/jquery.js": "jquery@3.7.1"},
        "advisories": [],
        "stage_gaps": [],
    }
    base.update(changes)
    return base


def previous(
    f: dict[str, object], findings: list[dict[str, object]] | None = None
) -> dict[str, object]:
    return {
        "submission_id": "s0",
        "version": "1.0.0",
        "scan_id": "c0",
        "facts": f,
        "findings": findings or [],
    }


def test_the_delta_names_everything_new_and_collapses_vendored_files() -> None:
    now = facts(
        files=[
            ["dist/a.js", "3" * 64, 12],
            ["dist/vendor/jquery.js", "4" * 64, 99],
            ["dist/new.js", "5" * 64, 1],
        ],
        capabilities=["storage", "cookies"],
        observed_origins=["https://collect.evil.example"],
        dependencies=["npm:left-pad@1.0.0", "npm:event-stream@3.3.6"],
        advisories=["GHSA-x (event-stream@3.3.6)"],
    )
    delta = compute(now, [], previous(facts()))
    assert not delta.first_version and not delta.routine
    assert delta.new_capabilities == ["cookies"]
    assert delta.new_origins == ["https://collect.evil.example"]
    assert delta.new_dependencies == ["npm:event-stream@3.3.6"]
    assert delta.new_advisories == ["GHSA-x (event-stream@3.3.6)"]
    by_path = {c.path: c for c in delta.files}
    assert by_path["dist/new.js"].status == "added"
    assert by_path["dist/a.js"].status == "changed" and by_path["dist/a.js"].vendored is None
    assert by_path["dist/vendor/jquery.js"].vendored == "jquery@3.7.1"


def test_a_first_version_says_so_and_an_unchanged_update_is_routine() -> None:
    assert compute(facts(), [], None).first_version
    same = compute(facts(), [], previous(facts()))
    assert same.routine and same.files == [] and same.unchanged_files == 2


def test_auto_approval_needs_every_condition_and_names_each_failure() -> None:
    routine = compute(facts(), [], previous(facts()))
    assert evaluate("trusted", "pass", routine, []).eligible
    no = evaluate("verified", "review", Delta(first_version=True), ["runtime"])
    assert not no.eligible
    text = " ".join(no.reasons)
    for part in ("trust is verified", "verdict is review", "stage gaps: runtime", "first version"):
        assert part in text
    new_origin = compute(facts(observed_origins=["https://x.example"]), [], previous(facts()))
    assert not evaluate("trusted", "pass", new_origin, []).eligible
