"""Route tables: weight normalisation, versions without endpoints, shadow and sticky keys."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from kubeloop.router.table import RouteInputs, build_route_table, normalise_weights

A = ("10.0.0.1:8080",)
B = ("10.0.0.2:8080",)
C = ("10.0.0.3:8080",)


def inputs(*versions: tuple[str, int, str, tuple[str, ...]], **extra: object) -> RouteInputs:
    return RouteInputs.model_validate(
        {
            "versions": [
                {"name": n, "weight": w, "role": r, "endpoints": list(e)} for n, w, r, e in versions
            ],
            **extra,
        }
    )


@pytest.mark.parametrize(
    ("canary_weight", "expected"),
    [
        (0, {"v1": Decimal(100)}),
        (10, {"v2": Decimal("10.00"), "v1": Decimal("90.00")}),
        (50, {"v2": Decimal("50.00"), "v1": Decimal("50.00")}),
        (100, {"v2": Decimal(100)}),
    ],
)
def test_canary_weights(canary_weight: int, expected: dict[str, Decimal]) -> None:
    table = build_route_table(
        inputs(("v1", 100 - canary_weight, "stable", A), ("v2", canary_weight, "canary", B))
    )
    assert table.weights() == expected
    assert table.split[-1].version == ("v1" if canary_weight < 100 else "v2")
    assert table.stable == "v1"
    assert {u.version for u in table.upstreams} == {"v1", "v2"}


def test_weights_are_proportions_and_sum_to_100() -> None:
    table = build_route_table(
        inputs(("a", 1, "stable", A), ("b", 1, "canary", B), ("c", 1, "canary", C))
    )
    assert sum(table.weights().values()) == 100
    assert table.weights() == {"b": Decimal("33.33"), "c": Decimal("33.33"), "a": Decimal("33.34")}


def test_normalise_rounds_down_and_last_takes_the_rest() -> None:
    split = normalise_weights({"s": 2, "x": 1}, "s")
    assert [(e.version, e.percent) for e in split] == [
        ("x", Decimal("33.33")),
        ("s", Decimal("66.67")),
    ]
    with pytest.raises(ValueError, match="cannot normalise"):
        normalise_weights({"s": 0, "x": 1}, "s")


def test_version_without_endpoints_gives_its_weight_to_stable() -> None:
    table = build_route_table(inputs(("v1", 50, "stable", A), ("v2", 50, "canary", ())))
    assert table.weights() == {"v1": Decimal(100)}
    assert [u.version for u in table.upstreams] == ["v1"]
    assert any("v2: no ready endpoints, its 50% goes to v1" in note for note in table.notes)


def test_stable_without_endpoints_gives_its_weight_to_the_canary() -> None:
    table = build_route_table(inputs(("v1", 90, "stable", ()), ("v2", 10, "canary", B)))
    assert table.weights() == {"v2": Decimal(100)}
    assert table.stable == "v2"


def test_no_endpoints_at_all_means_an_empty_split() -> None:
    table = build_route_table(inputs(("v1", 100, "stable", ())))
    assert table.split == ()
    assert table.upstreams == ()
    assert any("503" in note for note in table.notes)
    assert build_route_table(RouteInputs()).split == ()


def test_all_weights_zero_means_stable_takes_everything() -> None:
    table = build_route_table(inputs(("v1", 0, "stable", A), ("v2", 0, "preview", B)))
    assert table.weights() == {"v1": Decimal(100)}


def test_shadow_gets_copies_never_live_traffic() -> None:
    table = build_route_table(
        inputs(("v1", 100, "stable", A), ("v3", 20, "shadow", C), shadowPercent=25)
    )
    assert table.weights() == {"v1": Decimal(100)}
    assert table.shadow is not None
    assert (table.shadow.version, table.shadow.endpoints, table.shadow.percent) == ("v3", C, 25)
    assert [u.version for u in table.upstreams] == ["v1"]
    assert any("shadow versions get no live traffic" in note for note in table.notes)


def test_shadow_off_without_endpoints_or_percent() -> None:
    assert (
        build_route_table(inputs(("v1", 100, "stable", A), ("v3", 0, "shadow", ()))).shadow is None
    )
    assert (
        build_route_table(
            inputs(("v1", 100, "stable", A), ("v3", 0, "shadow", C), shadowPercent=0)
        ).shadow
        is None
    )


def test_sticky_header_wins_over_cookie() -> None:
    table = build_route_table(
        inputs(("v1", 100, "stable", A), stickyHeader="X-User", stickyCookie="session")
    )
    assert table.sticky is not None
    assert (table.sticky.kind, table.sticky.name) == ("header", "X-User")
    table = build_route_table(inputs(("v1", 100, "stable", A), stickyCookie="session"))
    assert table.sticky is not None
    assert (table.sticky.kind, table.sticky.name) == ("cookie", "session")


def test_endpoints_are_canonical_sorted_and_deduplicated() -> None:
    parsed = inputs(
        ("v1", 100, "stable", ("10.0.0.2:80", "10.0.0.1:80", "10.0.0.2:80", "[::1]:80"))
    )
    assert parsed.versions[0].endpoints == ("10.0.0.1:80", "10.0.0.2:80", "[::1]:80")


@pytest.mark.parametrize(
    "document",
    [
        {"versions": [{"name": "Bad_Name", "weight": 1}]},
        {"versions": [{"name": "v1", "weight": 101}]},
        {"versions": [{"name": "v1", "endpoints": ["host.example:80"]}]},
        {"versions": [{"name": "v1", "endpoints": ["10.0.0.1"]}]},
        {"versions": [{"name": "v1", "endpoints": ["10.0.0.1:0"]}]},
        {"versions": [{"name": "v1"}, {"name": "v1"}]},
        {"stickyHeader": "x user"},
        {"stickyCookie": 'a";b'},
        {"unknown": 1},
    ],
)
def test_invalid_inputs_are_refused(document: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        RouteInputs.model_validate(document)
