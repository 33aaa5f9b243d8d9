"""OSV range semantics on tricky versions, per ecosystem."""

from __future__ import annotations

import random

import nodesemver
import pytest

from scanner.advisories.versions import (
    NPM,
    PYPI,
    AffectedRange,
    NpmVersion,
    VersionError,
    fixed_versions,
    is_affected,
    unreadable_bounds,
)


def _r(*events: tuple[str, str]) -> AffectedRange:
    return AffectedRange(tuple(events))


@pytest.mark.parametrize(
    ("version", "affected"),
    [
        ("0.9", True),  # introduced "0" covers everything below the fix
        ("2.7.1", True),
        ("2.7.2", False),
        ("2.7.2rc1", True),  # a pre-release of the fix is still vulnerable
        ("2.7.1.post1", True),  # post-releases sort after their release
        ("1!0.1", False),  # an epoch outranks every plain version
        ("3.0", False),
    ],
)
def test_pypi_introduced_zero_fixed(version: str, affected: bool) -> None:
    assert is_affected(PYPI, version, [_r(("introduced", "0"), ("fixed", "2.7.2"))]) is affected


@pytest.mark.parametrize(
    ("version", "affected"),
    [
        ("1.0", False),
        ("1.5", True),
        ("2.0", False),
        ("2.5", False),
        ("3.0", True),
        ("3.9", True),
        ("4.0", False),
    ],
)
def test_several_ranges_in_one(version: str, affected: bool) -> None:
    ranges = [
        _r(("introduced", "1.1"), ("fixed", "2.0")),
        _r(("introduced", "3.0"), ("fixed", "4.0")),
    ]
    assert is_affected(PYPI, version, ranges) is affected


def test_last_affected_is_inclusive_and_limit_exclusive() -> None:
    assert is_affected(PYPI, "1.4", [_r(("introduced", "1.0"), ("last_affected", "1.4"))])
    assert not is_affected(PYPI, "1.4.1", [_r(("introduced", "1.0"), ("last_affected", "1.4"))])
    assert not is_affected(PYPI, "2.0", [_r(("introduced", "1.0"), ("limit", "2.0"))])


def test_explicit_versions_list_counts_even_without_ranges() -> None:
    assert is_affected(PYPI, "2.0.3", [], versions=["2.0.3"])
    assert not is_affected(PYPI, "2.0.4", [], versions=["2.0.3"])


@pytest.mark.parametrize(
    ("version", "affected"),
    [
        ("1.2.3", True),
        ("1.3.0-beta.1", True),
        ("1.3.0", False),
        ("1.3.0-rc.1", True),
        ("0.0.1", True),
    ],
)
def test_npm_semver_prereleases(version: str, affected: bool) -> None:
    assert is_affected(NPM, version, [_r(("introduced", "0"), ("fixed", "1.3.0"))]) is affected


def test_npm_prerelease_order_follows_semver() -> None:
    order = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
    ]
    parsed = [NpmVersion.parse(v) for v in order]
    assert parsed == sorted(parsed)


def test_retirejs_style_versions_are_ordered() -> None:
    assert NpmVersion.parse("1.9.0b1") < NpmVersion.parse("1.9.0")
    assert NpmVersion.parse("1.8.3") < NpmVersion.parse("1.9.0b1")
    assert is_affected(NPM, "1.8.3", [_r(("introduced", "0"), ("fixed", "1.9.0b1"))])


def test_unparseable_installed_version_is_an_error_not_clean() -> None:
    with pytest.raises(VersionError):
        is_affected(PYPI, "not-a-version!", [_r(("introduced", "0"), ("fixed", "1.0"))])


def test_fixed_versions() -> None:
    ranges = [
        _r(("introduced", "0"), ("fixed", "1.2")),
        _r(("introduced", "2.0"), ("fixed", "2.1")),
    ]
    assert fixed_versions(ranges) == ["1.2", "2.1"]


def test_retirejs_star_bounds_mean_the_release_and_its_prereleases() -> None:
    star = NpmVersion.parse("1.3.0-*")
    assert star == NpmVersion.parse("1.3.0-0")
    assert NpmVersion.parse("1.2.9") < star < NpmVersion.parse("1.3.0-alpha")
    assert star < NpmVersion.parse("1.3.0") < NpmVersion.parse("1.3.1")
    ranges = [_r(("introduced", "1.3.0-*"), ("fixed", "1.3.2"))]
    assert is_affected(NPM, "1.3.1", ranges)
    assert is_affected(NPM, "1.3.0-beta.2", ranges)
    assert not is_affected(NPM, "1.2.9", ranges)
    assert not is_affected(NPM, "1.3.2", ranges)


def test_unreadable_bounds_are_named() -> None:
    assert unreadable_bounds(NPM, _r(("introduced", "0"), ("fixed", "~"))) == ["fixed '~'"]
    assert unreadable_bounds(NPM, _r(("introduced", "1.0.0-*"), ("fixed", "2.0.0"))) == []


def _version_pool(n: int, seed: int) -> list[str]:
    """Valid semver strings built to collide: same releases, near pre-release identifiers."""
    rng = random.Random(seed)
    idents = [
        "0",
        "1",
        "2",
        "10",
        "9",
        "01a",
        "a",
        "b",
        "alpha",
        "beta",
        "rc",
        "rc-1",
        "rc-2",
        "x-y",
        "A",
        "Z",
        "-",
        "--",
        "0a",
        "a0",
        "11",
        "100",
        "1a",
        "b1",
    ]

    def one() -> str:
        release = ".".join(str(rng.choice([0, 1, 2, 10, 11])) for _ in range(3))
        if rng.random() < 0.25:
            return release
        pre = ".".join(rng.choice(idents) for _ in range(rng.randint(1, 3)))
        build = "+build." + rng.choice(idents) if rng.random() < 0.2 else ""
        return f"{release}-{pre}{build}"

    return sorted({one() for _ in range(n)})


def test_npm_ordering_agrees_with_node_semver_over_many_pairs() -> None:
    """Every pair of a pool of near-identical versions, against a port of node-semver."""
    pool = [v for v in _version_pool(700, 20261203) if nodesemver.valid(v, False)]
    parsed = {v: NpmVersion.parse(v) for v in pool}
    disagreements = []
    pairs = 0
    for a in pool:
        for b in pool:
            pairs += 1
            ours = (parsed[a] > parsed[b]) - (parsed[a] < parsed[b])
            theirs = nodesemver.compare(a, b, False)
            if ours != theirs:
                disagreements.append((a, b, ours, theirs))
    assert pairs > 200_000
    assert disagreements == []
