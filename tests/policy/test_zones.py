"""Zone split: even, deterministic, minimal moves; Wait and Rebalance on an outage."""

from __future__ import annotations

import itertools
from collections.abc import Collection, Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiu.policy import zones

WAIT = zones.OutagePolicy.WAIT
REBALANCE = zones.OutagePolicy.REBALANCE
ABC = ["a", "b", "c"]


def _split(
    total: int,
    current: Mapping[str, int],
    *,
    healthy: Collection[str] = "abc",
    policy: zones.OutagePolicy = WAIT,
    names: list[str] = ABC,
) -> dict[str, int]:
    allocation = zones.split(
        total=total, zones=names, healthy=set(healthy), policy=policy, current=current
    )
    assert allocation.total == total
    return dict(allocation.counts)


@pytest.mark.parametrize(
    ("total", "current", "expected"),
    [
        pytest.param(3, {}, {"a": 1, "b": 1, "c": 1}, id="fresh"),
        pytest.param(4, {}, {"a": 2, "b": 1, "c": 1}, id="fresh-ties-by-name"),
        pytest.param(5, {"a": 1, "b": 1, "c": 1}, {"a": 2, "b": 2, "c": 1}, id="3-to-5"),
        pytest.param(4, {"a": 2, "b": 2, "c": 1}, {"a": 2, "b": 1, "c": 1}, id="5-to-4"),
        pytest.param(4, {"a": 1, "b": 1, "c": 2}, {"a": 1, "b": 1, "c": 2}, id="keeps-placement"),
        pytest.param(5, {"a": 1, "b": 2, "c": 1}, {"a": 2, "b": 2, "c": 1}, id="adds-to-emptiest"),
        pytest.param(2, {"a": 1, "b": 2, "c": 2}, {"a": 0, "b": 1, "c": 1}, id="removes-fullest"),
        pytest.param(0, {"a": 1, "b": 1, "c": 1}, {"a": 0, "b": 0, "c": 0}, id="to-zero"),
        pytest.param(3, {"a": 3, "x": 5}, {"a": 1, "b": 1, "c": 1}, id="unknown-zone-dropped"),
    ],
)
def test_split_all_healthy(total: int, current: dict[str, int], expected: dict[str, int]) -> None:
    assert _split(total, current) == expected


def test_wait_keeps_the_share_of_a_lost_zone() -> None:
    allocation = zones.split(
        total=3, zones=ABC, healthy={"a", "b"}, policy=WAIT, current={"a": 1, "b": 1, "c": 1}
    )
    assert dict(allocation.counts) == {"a": 1, "b": 1, "c": 1}
    assert allocation.cause is zones.Cause.ZONE_OUTAGE_WAIT
    assert allocation.reason == (
        "zone c unavailable: keeping 1 unit there, pending until it recovers (Wait); a=1 b=1 c=1"
    )


def test_wait_scale_up_favours_healthy_zones_among_ties() -> None:
    assert _split(4, {"a": 1, "b": 1, "c": 1}, healthy="bc") == {"a": 1, "b": 2, "c": 1}
    assert _split(2, {"a": 1, "b": 1, "c": 1}, healthy="bc") == {"a": 0, "b": 1, "c": 1}


def test_rebalance_moves_the_share_and_moves_it_back() -> None:
    during = zones.split(
        total=3, zones=ABC, healthy={"a", "b"}, policy=REBALANCE, current={"a": 1, "b": 1, "c": 1}
    )
    assert dict(during.counts) == {"a": 2, "b": 1, "c": 0}
    assert during.cause is zones.Cause.ZONE_OUTAGE_REBALANCE
    assert during.reason == (
        "zone c unavailable: its share moves to a, b until it recovers (Rebalance); "
        "a=2 b=1 c=0 (was a=1 b=1 c=1)"
    )
    after = _split(3, during.counts, policy=REBALANCE)
    assert after == {"a": 1, "b": 1, "c": 1}


def test_rebalance_names_several_lost_zones() -> None:
    allocation = zones.split(
        total=2, zones=ABC, healthy={"a"}, policy=REBALANCE, current={"a": 1, "b": 1}
    )
    assert dict(allocation.counts) == {"a": 2, "b": 0, "c": 0}
    assert allocation.reason.startswith("zones b, c unavailable: their share moves to a until")


@pytest.mark.parametrize("policy", [WAIT, REBALANCE])
def test_no_healthy_zone_keeps_the_current_allocation(policy: zones.OutagePolicy) -> None:
    current = {"a": 2, "b": 1, "c": 0}
    allocation = zones.split(total=3, zones=ABC, healthy=set(), policy=policy, current=current)
    assert dict(allocation.counts) == current
    assert allocation.cause is zones.Cause.NO_HEALTHY_ZONE
    assert allocation.reason == (
        "no zone is healthy (a, b, c): keeping the current allocation; a=2 b=1 c=0"
    )
    assert _split(5, current, healthy="", policy=policy) == {"a": 2, "b": 2, "c": 1}
    assert _split(1, current, healthy="", policy=policy) == {"a": 1, "b": 0, "c": 0}


def test_spread_reason_shows_the_change() -> None:
    allocation = zones.split(
        total=5, zones=ABC, healthy=set(ABC), policy=WAIT, current={"a": 1, "b": 1, "c": 1}
    )
    assert allocation.cause is zones.Cause.SPREAD
    assert allocation.reason == "5 units spread over 3 zones; a=2 b=2 c=1 (was a=1 b=1 c=1)"


def test_counts_are_read_only() -> None:
    allocation = zones.split(total=1, zones=["a"], healthy={"a"}, policy=WAIT, current={})
    with pytest.raises(TypeError):
        allocation.counts["a"] = 2  # type: ignore[index]


def test_invalid_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="no zone"):
        zones.split(total=1, zones=[], healthy=set(), policy=WAIT, current={})
    with pytest.raises(ValueError, match="total"):
        zones.split(total=-1, zones=ABC, healthy=set(ABC), policy=WAIT, current={})


names = st.lists(st.sampled_from("abcdef"), min_size=1, max_size=5, unique=True)


@st.composite
def situations(draw: st.DrawFn) -> tuple[list[str], set[str], dict[str, int], int]:
    zone_names = draw(names)
    healthy = set(draw(st.lists(st.sampled_from(zone_names), unique=True)))
    current = {zone: draw(st.integers(0, 6)) for zone in zone_names}
    return zone_names, healthy, current, draw(st.integers(0, 25))


def _eligible(zone_names: list[str], healthy: set[str], policy: zones.OutagePolicy) -> list[str]:
    return [z for z in zone_names if z in healthy] if policy is REBALANCE else list(zone_names)


def _moves(before: Mapping[str, int], after: Mapping[str, int]) -> int:
    return sum(abs(after[zone] - before.get(zone, 0)) for zone in after)


@settings(deadline=None)
@given(situation=situations(), policy=st.sampled_from(list(zones.OutagePolicy)))
def test_sums_to_total_and_is_even_over_the_zones_that_take_units(
    situation: tuple[list[str], set[str], dict[str, int], int], policy: zones.OutagePolicy
) -> None:
    zone_names, healthy, current, total = situation
    counts = _split(total, current, healthy=healthy, policy=policy, names=zone_names)
    assert sorted(counts) == sorted(zone_names)
    if healthy:
        eligible = _eligible(zone_names, healthy, policy)
        spread = [counts[zone] for zone in eligible]
        assert max(spread) - min(spread) <= 1
        assert all(counts[zone] == 0 for zone in zone_names if zone not in eligible)


@settings(deadline=None)
@given(situation=situations(), policy=st.sampled_from(list(zones.OutagePolicy)))
def test_moves_the_fewest_units(
    situation: tuple[list[str], set[str], dict[str, int], int], policy: zones.OutagePolicy
) -> None:
    zone_names, healthy, current, total = situation
    counts = _split(total, current, healthy=healthy, policy=policy, names=zone_names)
    if not healthy:
        # Nothing is rebalanced: only the difference in total is added or removed.
        assert _moves(current, counts) == abs(total - sum(current.values()))
        return
    eligible = _eligible(zone_names, healthy, policy)
    base, extra = divmod(total, len(eligible))
    fewest = min(
        _moves(
            current,
            {zone: (base + (zone in plus) if zone in eligible else 0) for zone in zone_names},
        )
        for plus in itertools.combinations(eligible, extra)
    )
    assert _moves(current, counts) == fewest


@settings(deadline=None)
@given(situation=situations(), policy=st.sampled_from(list(zones.OutagePolicy)))
def test_deterministic_whatever_the_order_of_zones(
    situation: tuple[list[str], set[str], dict[str, int], int], policy: zones.OutagePolicy
) -> None:
    zone_names, healthy, current, total = situation
    forward = zones.split(
        total=total, zones=zone_names, healthy=healthy, policy=policy, current=current
    )
    backward = zones.split(
        total=total, zones=zone_names[::-1], healthy=healthy, policy=policy, current=current
    )
    assert forward == backward
    assert list(forward.counts) == sorted(zone_names)


@settings(deadline=None)
@given(zone_names=names, totals=st.lists(st.integers(0, 20), min_size=1, max_size=10))
def test_step_by_step_equals_a_fresh_split(zone_names: list[str], totals: list[int]) -> None:
    counts: Mapping[str, int] = {}
    for total in totals:
        counts = _split(total, counts, healthy=zone_names, names=zone_names)
    assert counts == _split(totals[-1], {}, healthy=zone_names, names=zone_names)


@settings(deadline=None)
@given(situation=situations())
def test_rebalanced_split_returns_to_even_when_zones_recover(
    situation: tuple[list[str], set[str], dict[str, int], int],
) -> None:
    zone_names, healthy, current, total = situation
    during = _split(total, current, healthy=healthy, policy=REBALANCE, names=zone_names)
    after = _split(total, during, healthy=zone_names, policy=REBALANCE, names=zone_names)
    assert max(after.values()) - min(after.values()) <= 1


# A zone without room: pending units wait there, or (Rebalance) as many start elsewhere.


def test_a_full_zone_waits_for_room_under_wait() -> None:
    allocation = zones.split(
        total=4,
        zones="ab",
        healthy={"a", "b"},
        policy=WAIT,
        current={"a": 2, "b": 2},
        full={"a": 1},
    )
    assert dict(allocation.counts) == {"a": 2, "b": 2}
    assert allocation.cause is zones.Cause.ZONE_FULL_WAIT
    assert allocation.reason == "zone a full: 1 unit pending until room frees (Wait); a=2 b=2"


def test_a_full_zone_is_helped_out_under_rebalance_until_room_frees() -> None:
    full = zones.split(
        total=4,
        zones="ab",
        healthy={"a", "b"},
        policy=REBALANCE,
        current={"a": 2, "b": 2},
        full={"a": 1},
    )
    assert dict(full.counts) == {"a": 2, "b": 3}  # the pending unit stays queued in a
    assert full.cause is zones.Cause.ZONE_FULL_REBALANCE
    assert full.reason.startswith("zone a full: 1 unit pending there, as many started in b")
    # Stable while a stays full: the next split from {a: 2, b: 3} is the same.
    again = zones.split(
        total=4,
        zones="ab",
        healthy={"a", "b"},
        policy=REBALANCE,
        current=full.counts,
        full={"a": 1},
    )
    assert again.counts == full.counts
    # Room freed, the queued unit placed: the stand-in goes.
    freed = zones.split(
        total=4, zones="ab", healthy={"a", "b"}, policy=REBALANCE, current=full.counts
    )
    assert dict(freed.counts) == {"a": 2, "b": 2}
    assert freed.cause is zones.Cause.SPREAD


def test_rebalance_with_every_zone_full_waits() -> None:
    allocation = zones.split(
        total=4,
        zones="ab",
        healthy={"a", "b"},
        policy=REBALANCE,
        current={"a": 2, "b": 2},
        full={"a": 1, "b": 2},
    )
    assert dict(allocation.counts) == {"a": 2, "b": 2}
    assert allocation.cause is zones.Cause.ZONE_FULL_WAIT
    assert "no zone has room (Rebalance)" in allocation.reason


def test_an_outage_outranks_a_full_zone() -> None:
    allocation = zones.split(
        total=3,
        zones="abc",
        healthy={"a", "b"},
        policy=REBALANCE,
        current={"a": 1, "b": 1, "c": 1},
        full={"a": 1},
    )
    assert allocation.cause is zones.Cause.ZONE_OUTAGE_REBALANCE
    assert allocation.total == 3
