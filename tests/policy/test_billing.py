"""Unit-hours as the exact integral of the in-service step function."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiu.policy import billing


def _replay(samples: list[tuple[float, int]]) -> billing.Ledger:
    ledger = billing.Ledger()
    for now, units in samples:
        ledger = billing.accrue(ledger=ledger, now=now, in_service=units)
    return ledger


def test_first_observation_bills_nothing() -> None:
    ledger = billing.accrue(ledger=billing.Ledger(), now=100.0, in_service=3)
    assert ledger == billing.Ledger(unit_seconds=0.0, last_time=100.0, last_units=3)


def test_two_units_for_eight_hours_are_sixteen_unit_hours() -> None:
    # The reference's own example: 8 hours running x 2 units.
    ledger = _replay([(0.0, 2), (8 * 3600.0, 2)])
    assert ledger.unit_hours == 16.0


def test_between_samples_the_earlier_count_holds() -> None:
    ledger = _replay([(0.0, 1), (60.0, 3), (120.0, 0), (180.0, 5)])
    assert ledger.unit_seconds == 60 * 1 + 60 * 3 + 60 * 0


def test_a_gap_is_billed_at_the_last_known_count() -> None:
    ledger = _replay([(0.0, 4), (3600.0, 4)])
    assert ledger.unit_hours == 4.0


def test_time_going_backwards_bills_nothing_and_keeps_the_later_time() -> None:
    ledger = _replay([(0.0, 2), (100.0, 2), (50.0, 5)])
    assert ledger.unit_seconds == 200.0
    assert ledger.last_time == 100.0
    ledger = billing.accrue(ledger=ledger, now=110.0, in_service=0)
    assert ledger.unit_seconds == 200.0 + 10 * 5


def test_negative_in_service_is_rejected() -> None:
    with pytest.raises(ValueError, match="in_service"):
        billing.accrue(ledger=billing.Ledger(), now=0.0, in_service=-1)


samples = st.lists(
    st.tuples(st.floats(min_value=0.0, max_value=7200.0), st.integers(0, 50)),
    min_size=1,
    max_size=60,
)


@settings(deadline=None)
@given(start=st.floats(min_value=0.0, max_value=1e9), steps=samples)
def test_equals_the_exact_integral(start: float, steps: list[tuple[float, int]]) -> None:
    times = [start + sum(gap for gap, _ in steps[: i + 1]) for i in range(len(steps))]
    ledger = _replay([(t, units) for t, (_, units) in zip(times, steps, strict=True)])
    exact = math.fsum((times[i + 1] - times[i]) * steps[i][1] for i in range(len(steps) - 1))
    assert math.isclose(ledger.unit_seconds, exact, rel_tol=1e-9, abs_tol=1e-3)


@settings(deadline=None)
@given(samples=st.lists(st.tuples(st.floats(0.0, 1e6), st.integers(0, 50)), max_size=60))
def test_never_decreases_whatever_the_order_of_times(samples: list[tuple[float, int]]) -> None:
    ledger = billing.Ledger()
    for now, units in samples:
        after = billing.accrue(ledger=ledger, now=now, in_service=units)
        assert after.unit_seconds >= ledger.unit_seconds
        ledger = after
