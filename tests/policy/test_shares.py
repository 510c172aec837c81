"""Demand-following shares of a TPS limit over gateway replicas (kiu.policy.shares)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kiu.policy import shares

rates = st.floats(min_value=0.0, max_value=1e4, allow_nan=False, allow_infinity=False)
limits = st.floats(min_value=0.0, max_value=1e4, allow_nan=False, allow_infinity=False)
fractions = st.floats(min_value=0.0, max_value=1.0)


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


@given(pool=limits, offered=st.lists(rates, min_size=1, max_size=8), floor=fractions)
def test_parts_sum_to_the_pool_and_none_is_negative(
    pool: float, offered: list[float], floor: float
) -> None:
    parts = shares.allocate(pool=pool, offered=offered, floor_fraction=floor)
    assert len(parts) == len(offered)
    assert all(p >= 0.0 for p in parts)
    assert close(sum(parts), pool)


@given(pool=limits, offered=st.lists(rates, min_size=1, max_size=8), floor=fractions)
def test_over_the_pool_nobody_gets_more_than_offered_so_admitted_adds_up_to_the_pool(
    pool: float, offered: list[float], floor: float
) -> None:
    parts = shares.allocate(pool=pool, offered=offered, floor_fraction=floor)
    if sum(offered) >= pool:
        assert all(p <= d + 1e-9 * max(1.0, d) for p, d in zip(parts, offered, strict=True))
        admitted = sum(min(p, d) for p, d in zip(parts, offered, strict=True))
        assert close(admitted, pool)
    else:
        assert all(p >= d for p, d in zip(parts, offered, strict=True))


@given(pool=limits, offered=st.lists(rates, min_size=1, max_size=8), floor=fractions)
def test_a_replica_that_receives_calls_gets_at_least_its_floor(
    pool: float, offered: list[float], floor: float
) -> None:
    parts = shares.allocate(pool=pool, offered=offered, floor_fraction=floor)
    guaranteed = floor * pool / len(offered)
    for part, demand in zip(parts, offered, strict=True):
        assert part >= min(demand, guaranteed) - 1e-9 * max(1.0, pool)


@given(
    pool=st.floats(min_value=1.0, max_value=1e4),
    offered=st.lists(st.floats(min_value=0.1, max_value=1e4), min_size=1, max_size=8),
)
def test_without_floors_an_oversubscribed_pool_is_split_in_proportion_to_demand(
    pool: float, offered: list[float]
) -> None:
    offered = [d * 2 * pool / sum(offered) for d in offered]  # twice the pool in all
    parts = shares.allocate(pool=pool, offered=offered, floor_fraction=0.0)
    for part, demand in zip(parts, offered, strict=True):
        assert close(part, pool * demand / sum(offered))


def test_splits_of_twice_the_limit() -> None:
    limit = 20.0
    for split in ([0.5, 0.5], [0.8, 0.2], [1.0, 0.0], [0.7, 0.2, 0.1]):
        offered = [2 * limit * s for s in split]
        parts = shares.allocate(pool=limit, offered=offered)
        assert close(sum(min(p, d) for p, d in zip(parts, offered, strict=True)), limit), split
    # 100/0: the replica receiving nothing keeps nothing while the other needs it all.
    assert shares.allocate(pool=20.0, offered=[40.0, 0.0]) == [20.0, 0.0]


def test_spare_is_split_evenly_when_demand_fits() -> None:
    assert shares.allocate(pool=20.0, offered=[10.0, 2.0]) == [14.0, 6.0]
    assert shares.allocate(pool=20.0, offered=[0.0, 0.0]) == [10.0, 10.0]
    assert shares.allocate(pool=20.0, offered=[]) == []


@given(
    limit=limits,
    offered=st.lists(rates, min_size=1, max_size=6),
    floor=fractions,
)
def test_replicas_that_hear_each_other_share_exactly_the_limit(
    limit: float, offered: list[float], floor: float
) -> None:
    total = sum(
        shares.share(
            limit=limit, own=own, heard=offered[:i] + offered[i + 1 :], floor_fraction=floor
        )
        for i, own in enumerate(offered)
    )
    assert close(total, limit)


@given(
    limit=limits,
    offered=st.lists(rates, min_size=1, max_size=6),
    groups=st.lists(st.integers(min_value=0, max_value=5), min_size=6, max_size=6),
)
def test_partitioned_replicas_never_exceed_the_limit_together(
    limit: float, offered: list[float], groups: list[int]
) -> None:
    """Each replica hears only those of its group; the others are silent to it."""
    replicas = len(offered)
    total = 0.0
    for i, own in enumerate(offered):
        mates = [j for j in range(replicas) if j != i and groups[j] == groups[i]]
        total += shares.share(
            limit=limit,
            own=own,
            heard=[offered[j] for j in mates],
            silent=replicas - 1 - len(mates),
        )
    assert total <= limit * (1 + 1e-9) + 1e-9


@given(limit=limits, own=rates, silent=st.integers(min_value=0, max_value=10))
def test_hearing_nobody_falls_back_to_an_even_share(limit: float, own: float, silent: int) -> None:
    assert close(shares.share(limit=limit, own=own, heard=[], silent=silent), limit / (silent + 1))


def test_a_new_replica_starts_with_a_fair_share_not_the_whole_limit() -> None:
    # It knows of two others from discovery but has heard from neither yet.
    assert shares.share(limit=30.0, own=0.0, heard=[], silent=2) == 10.0


def test_a_dead_replica_that_is_forgotten_leaves_its_share_to_the_survivors() -> None:
    assert shares.share(limit=20.0, own=40.0, heard=[], silent=1) == 10.0  # silent: reserved
    assert shares.share(limit=20.0, own=40.0, heard=[], silent=0) == 20.0  # gone: taken over


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="floor_fraction"):
        shares.allocate(pool=1.0, offered=[1.0], floor_fraction=1.5)
    with pytest.raises(ValueError, match="silent"):
        shares.share(limit=1.0, own=1.0, heard=[], silent=-1)
    with pytest.raises(ValueError, match="window"):
        shares.OfferedRate(window=0)
    with pytest.raises(ValueError, match="seconds"):
        shares.OfferedRate().add(calls=1, seconds=0.0)


def test_nan_and_negative_offered_rates_count_as_none() -> None:
    assert (
        shares.allocate(pool=10.0, offered=[math.nan, -3.0, math.inf])
        == [pytest.approx(10 / 3)] * 3
    )


def test_offered_rate_claims_growth_in_one_tick_and_releases_over_the_window() -> None:
    rate = shares.OfferedRate(window=3)
    assert rate.rate == 0.0
    assert rate.add(calls=8, seconds=0.2) == 40.0  # one tick is enough to claim
    assert rate.add(calls=8, seconds=0.2) == 40.0
    assert rate.add(calls=0, seconds=0.2) == pytest.approx(16 / 0.6)  # falls over the window
    assert rate.add(calls=0, seconds=0.2) == pytest.approx(8 / 0.6)
    assert rate.add(calls=0, seconds=0.2) == 0.0


def test_replicas_exchanging_rates_converge_after_the_split_switches() -> None:
    """Simulated exchange: each tick a replica counts its calls, then sets its share from
    its own rate and the rates the others reported the tick before."""
    limit, period, offered = 20.0, 0.2, 40.0
    meters = [shares.OfferedRate(), shares.OfferedRate()]
    reported = [0.0, 0.0]
    history = []
    for tick in range(20):
        split = (1.0, 0.0) if tick < 10 else (0.0, 1.0)  # 100/0, then 0/100
        own = [
            m.add(calls=round(offered * s * period), seconds=period)
            for m, s in zip(meters, split, strict=True)
        ]
        parts = [shares.share(limit=limit, own=own[i], heard=[reported[1 - i]]) for i in range(2)]
        reported = own
        history.append(sum(min(p, offered * s) for p, s in zip(parts, split, strict=True)))
    assert history[2:10] == [pytest.approx(limit)] * 8
    # After the switch: the new replica claims part at once, all within the window.
    assert history[10] > 0
    assert history[10 + 4 :] == [pytest.approx(limit)] * 6
