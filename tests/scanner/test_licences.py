"""SPDX expressions and the licence policy."""

from __future__ import annotations

import pytest

from scanner.licences import LicenceError, LicencePolicy, Standing, judge_text, parse
from tests.paths import PROJECT_ROOT

POLICY = LicencePolicy.from_dict(
    {
        "allow": ["MIT", "Apache-2.0", "BSD-3-Clause"],
        "copyleft": ["GPL-2.0-only", "GPL-3.0-or-later", "MPL-2.0"],
        "deny": ["SSPL-1.0"],
        "proprietary": ["UNLICENSED"],
    }
)


@pytest.mark.parametrize(
    ("text", "standing"),
    [
        ("MIT", Standing.ALLOWED),
        ("mit", Standing.ALLOWED),
        ("(MIT OR GPL-2.0-only)", Standing.ALLOWED),  # the licensee chooses MIT
        ("MIT AND GPL-2.0-only", Standing.COPYLEFT),  # both bind
        ("MIT and (Apache-2.0 or SSPL-1.0)", Standing.ALLOWED),
        ("MIT AND SSPL-1.0", Standing.DENIED),
        ("GPL-2.0-only WITH Classpath-exception-2.0", Standing.COPYLEFT),
        ("GPL-3.0-or-later+", Standing.COPYLEFT),
        ("Made-Up-1.0", Standing.UNKNOWN),
        ("MIT OR Made-Up-1.0", Standing.ALLOWED),
        ("MIT AND Made-Up-1.0", Standing.UNKNOWN),
        ("LicenseRef-Acme", Standing.UNKNOWN),
    ],
)
def test_expressions_are_judged_by_their_operators(text: str, standing: Standing) -> None:
    assert judge_text(text, POLICY).standing is standing


def test_the_judgement_names_the_licences_it_rests_on() -> None:
    judged = judge_text("MIT AND (GPL-2.0-only OR MPL-2.0) AND BSD-3-Clause", POLICY)
    assert judged.standing is Standing.COPYLEFT
    assert judged.ids == ("GPL-2.0-only",)


@pytest.mark.parametrize(
    "text", ["", "MIT OR", "(MIT", "MIT)", "AND MIT", "MIT WITH", "MIT; rm -rf", "x" * 600]
)
def test_malformed_expressions_are_refused(text: str) -> None:
    with pytest.raises(LicenceError):
        parse(text)


def test_deep_nesting_is_refused_not_a_crash() -> None:
    with pytest.raises(LicenceError):
        parse("(" * 30 + "MIT" + ")" * 30)


def test_proprietary_markers() -> None:
    assert POLICY.is_proprietary("UNLICENSED")
    assert POLICY.is_proprietary("SEE LICENSE IN LICENSE.txt")
    assert not POLICY.is_proprietary("MIT")


def test_a_licence_in_two_lists_is_a_policy_error() -> None:
    with pytest.raises(LicenceError, match="two lists"):
        LicencePolicy.from_dict({"allow": ["MIT"], "deny": ["mit"]})


def test_the_shipped_policy_loads_and_classifies_common_licences() -> None:
    policy = LicencePolicy.load(PROJECT_ROOT / "rules" / "licences.toml")
    assert policy.standing("MIT") is Standing.ALLOWED
    assert policy.standing("Apache-2.0") is Standing.ALLOWED
    assert policy.standing("GPL-3.0-only") is Standing.COPYLEFT
    assert policy.standing("SSPL-1.0") is Standing.DENIED
    assert policy.is_proprietary("UNLICENSED")
