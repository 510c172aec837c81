"""TPS limit, per-replica share and the token bucket the gateway admits calls with."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiu.policy import budget


@pytest.mark.parametrize(
    ("tps_per_unit", "ready_units", "limit"),
    [(5.0, 3, 15.0), (5.0, 0, 0.0), (0.5, 1, 0.5), (5.0, -1, 0.0)],
)
def test_tps_limit_is_tps_per_unit_times_ready_units(
    tps_per_unit: float, ready_units: int, limit: float
) -> None:
    assert budget.tps_limit(tps_per_unit=tps_per_unit, ready_units=ready_units) == limit


@pytest.mark.parametrize(
    ("limit", "replicas", "share"),
    [(15.0, 3, 5.0), (15.0, 1, 15.0), (15.0, 0, 15.0), (15.0, -2, 15.0), (0.0, 2, 0.0)],
)
def test_replica_share_splits_the_limit_evenly(limit: float, replicas: int, share: float) -> None:
    assert budget.replica_share(limit=limit, replicas=replicas) == share


def test_bucket_starts_full_with_one_second_of_burst() -> None:
    bucket = budget.TokenBucket(rate=5.0, now=0.0)
    assert (bucket.rate, bucket.capacity) == (5.0, 5.0)
    assert [bucket.try_acquire(now=0.0) for _ in range(6)] == [True] * 5 + [False]


def test_bucket_refills_at_the_rate() -> None:
    bucket = budget.TokenBucket(rate=5.0, now=0.0)
    for _ in range(5):
        bucket.try_acquire(now=0.0)
    assert not bucket.try_acquire(now=0.1)
    assert bucket.try_acquire(now=0.2)
    assert not bucket.try_acquire(now=0.2)


def test_rate_below_one_still_admits_a_single_call() -> None:
    bucket = budget.TokenBucket(rate=0.5, now=0.0)
    assert bucket.capacity == 1.0
    assert bucket.try_acquire(now=0.0)
    assert not bucket.try_acquire(now=1.0)
    assert bucket.try_acquire(now=2.0)


def test_rate_zero_admits_nothing() -> None:
    bucket = budget.TokenBucket(rate=0.0, now=0.0)
    assert bucket.capacity == 0.0
    assert not any(bucket.try_acquire(now=float(t)) for t in range(100))


def test_time_going_backwards_mints_no_tokens() -> None:
    bucket = budget.TokenBucket(rate=1.0, now=100.0)
    assert bucket.try_acquire(now=100.0)
    assert not bucket.try_acquire(now=50.0)
    # Back to the present: still nothing earned for the time that did not pass.
    assert not bucket.try_acquire(now=100.0)
    assert bucket.try_acquire(now=101.0)


def test_set_rate_credits_the_old_rate_then_clips_to_the_new_capacity() -> None:
    bucket = budget.TokenBucket(rate=10.0, now=0.0)
    for _ in range(10):
        assert bucket.try_acquire(now=0.0)
    bucket.set_rate(rate=2.0, now=0.5)  # 5 tokens earned at the old rate, clipped to 2
    assert (bucket.rate, bucket.capacity) == (2.0, 2.0)
    assert [bucket.try_acquire(now=0.5) for _ in range(3)] == [True, True, False]


def test_set_rate_up_does_not_top_up() -> None:
    bucket = budget.TokenBucket(rate=1.0, now=0.0)
    assert bucket.try_acquire(now=0.0)  # drained
    bucket.set_rate(rate=4.0, now=0.0)
    assert bucket.capacity == 4.0
    assert not bucket.try_acquire(now=0.0)
    assert bucket.try_acquire(now=0.25)


def test_a_closed_bucket_opens_full() -> None:
    """A model whose first unit becomes ready admits a second of its limit at once."""
    bucket = budget.TokenBucket(rate=0.0, now=0.0)
    bucket.set_rate(rate=4.0, now=10.0)
    assert [bucket.try_acquire(now=10.0) for _ in range(5)] == [True] * 4 + [False]


def test_burst_seconds_scales_the_capacity() -> None:
    assert budget.TokenBucket(rate=4.0, now=0.0, burst_seconds=0.5).capacity == 2.0
    assert budget.TokenBucket(rate=4.0, now=0.0, burst_seconds=0.1).capacity == 1.0


@pytest.mark.parametrize("rate", [-1.0, math.nan, math.inf])
def test_invalid_rate_is_rejected(rate: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        budget.TokenBucket(rate=rate, now=0.0)
    with pytest.raises(ValueError, match="rate"):
        budget.TokenBucket(rate=1.0, now=0.0).set_rate(rate=rate, now=1.0)


def test_invalid_burst_is_rejected() -> None:
    with pytest.raises(ValueError, match="burst_seconds"):
        budget.TokenBucket(rate=1.0, now=0.0, burst_seconds=0.0)


rates = st.floats(min_value=0.1, max_value=200.0)
gaps = st.lists(st.floats(min_value=0.0, max_value=2.0), min_size=1, max_size=150)


@settings(deadline=None)
@given(rate=rates, burst=st.floats(min_value=0.05, max_value=3.0), gaps=gaps)
def test_never_admits_more_than_rate_times_window_plus_capacity(
    rate: float, burst: float, gaps: list[float]
) -> None:
    bucket = budget.TokenBucket(rate=rate, now=0.0, burst_seconds=burst)
    times = [sum(gaps[: i + 1]) for i in range(len(gaps))]
    admitted = [t for t in times if bucket.try_acquire(now=t)]
    for i, start in enumerate(admitted):
        for j in range(i, len(admitted)):
            window = admitted[j] - start
            assert j - i + 1 <= rate * window + bucket.capacity + 1e-6


@settings(deadline=None)
@given(rate=rates, extra=st.lists(st.floats(min_value=0.0, max_value=3.0), max_size=150))
def test_admits_every_call_offered_below_the_rate(rate: float, extra: list[float]) -> None:
    bucket = budget.TokenBucket(rate=rate, now=0.0)
    now = 0.0
    for slack in extra:
        assert bucket.try_acquire(now=now)
        now += 1.0 / rate + slack / rate
    assert bucket.try_acquire(now=now)


@settings(deadline=None)
@given(
    rate=rates,
    new_rate=st.floats(min_value=0.0, max_value=200.0),
    at=st.floats(min_value=0.0, max_value=5.0),
)
def test_set_rate_never_leaves_more_tokens_than_capacity(
    rate: float, new_rate: float, at: float
) -> None:
    bucket = budget.TokenBucket(rate=rate, now=0.0)
    bucket.set_rate(rate=new_rate, now=at)
    admitted = 0
    while bucket.try_acquire(now=at):
        admitted += 1
    assert admitted <= bucket.capacity + 1e-6
