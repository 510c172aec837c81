"""Demand rate from counter scrapes: resets, new and vanished gateway replicas."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiu.policy import demand


def _scrape(time: float, **counters: float) -> demand.Scrape:
    return demand.Scrape(time=time, counters=counters)


@pytest.mark.parametrize(
    ("previous", "current", "tps"),
    [
        pytest.param(_scrape(0, a=100), _scrape(10, a=150), 5.0, id="steady"),
        pytest.param(_scrape(0, a=100, b=10), _scrape(10, a=150, b=60), 10.0, id="two-replicas"),
        pytest.param(_scrape(0, a=100), _scrape(10, a=30), 3.0, id="reset-counts-new-value"),
        pytest.param(_scrape(0, a=100, b=50), _scrape(10, a=150), 5.0, id="replica-gone"),
        pytest.param(_scrape(0, a=100), _scrape(10, a=150, b=20), 7.0, id="replica-new"),
        pytest.param(_scrape(0), _scrape(10), 0.0, id="no-replica"),
    ],
)
def test_rate(previous: demand.Scrape, current: demand.Scrape, tps: float) -> None:
    assert demand.rate(previous=previous, current=current) == tps


@pytest.mark.parametrize("later", [0.0, -5.0])
def test_no_rate_without_elapsed_time(later: float) -> None:
    assert demand.rate(previous=_scrape(10, a=1), current=_scrape(10 + later, a=9)) is None


counters = st.dictionaries(
    st.sampled_from(["a", "b", "c", "d"]), st.floats(min_value=0, max_value=1e9), max_size=4
)


@settings(deadline=None)
@given(before=counters, after=counters)
def test_increase_is_never_negative(before: dict[str, float], after: dict[str, float]) -> None:
    increase = demand.increase(
        previous=demand.Scrape(time=0, counters=before),
        current=demand.Scrape(time=1, counters=after),
    )
    assert increase >= 0


@settings(deadline=None)
@given(
    before=st.dictionaries(st.sampled_from("abcd"), st.integers(0, 10**6), max_size=4),
    deltas=st.lists(st.integers(0, 10**6), min_size=4, max_size=4),
    elapsed=st.floats(min_value=0.5, max_value=120),
)
def test_monotonic_counters_give_the_sum_of_increases(
    before: dict[str, int], deltas: list[int], elapsed: float
) -> None:
    after = {series: value + deltas[i] for i, (series, value) in enumerate(before.items())}
    tps = demand.rate(
        previous=demand.Scrape(time=0, counters=before),
        current=demand.Scrape(time=elapsed, counters=after),
    )
    assert tps == pytest.approx(sum(deltas[: len(before)]) / elapsed)
