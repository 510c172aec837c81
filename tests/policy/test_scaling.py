"""Desired units from demand: sized by the stable rate and its noise, bursts at once,
delayed down, scale to zero."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from kiu.controller.config import Config
from kiu.policy import scaling

Cause = scaling.Cause
PERIOD = 5.0  # seconds between evaluations in these examples (the policy takes any)


def _policy(**overrides: object) -> scaling.Policy:
    fields: dict[str, object] = {"tps_per_unit": 5.0, "min_units": 1, "max_units": 10}
    fields.update(overrides)
    return scaling.Policy(**fields)  # type: ignore[arg-type]


def _replay(
    policy: scaling.Policy,
    demands: Iterable[float | None],
    *,
    current: int = 1,
    history: scaling.History | None = None,
    start: float = 0.0,
) -> list[scaling.Recommendation]:
    """Evaluate every PERIOD seconds, feeding each recommendation into the next."""
    history = history or scaling.History()
    out = []
    for i, demand in enumerate(demands):
        rec = scaling.recommend(
            policy=policy,
            demand_tps=demand,
            demand_seconds=PERIOD,
            current=current,
            running=True,
            history=history,
            now=start + i * PERIOD,
        )
        current, history = rec.desired, rec.history
        out.append(rec)
    return out


def _poisson(rate: float, evaluations: int, seed: int) -> list[float]:
    """Demand as the operator measures it: Poisson calls per period, divided by the period."""
    counts = np.random.default_rng(seed).poisson(rate * PERIOD, size=evaluations)
    return [float(c) / PERIOD for c in counts]


def _needed(rate: float, policy: scaling.Policy) -> int:
    """Units a rate needs, computed independently: 70 % target, one second's noise."""
    return max(
        math.ceil(rate / (policy.tps_per_unit * policy.target_utilization) - 1e-9),
        math.ceil((rate + 2 * math.sqrt(rate)) / policy.tps_per_unit - 1e-9),
    )


def _settle(policy: scaling.Policy) -> int:
    """Evaluations until a steady load is settled: the stable rate's evidence at full weight
    (ten windows: the start weighs e^-10), then the scale-down delay and idleness."""
    return int(
        (
            10 * policy.stable_window_seconds
            + max(policy.scale_down_delay_seconds, policy.scale_to_zero_after_seconds)
        )
        // PERIOD
        + 1
    )


def test_reason_names_the_stable_rate_its_noise_and_the_previous_count() -> None:
    (rec,) = _replay(_policy(), [30.0], current=3)
    assert (rec.desired, rec.cause, rec.needed) == (9, Cause.SCALE_UP, 9)
    # 150 calls in 5 s; 4.5 sigma of Poisson noise either way (score interval).
    low, high = (30.0 - 9.2, 30.0 + 13.2)
    for rate in (low, high):
        assert abs(150 - rate * 5) == pytest.approx(4.5 * math.sqrt(rate * 5), abs=0.5)
    assert rec.reason == (
        "demand 30.0 TPS (20.8-43.2 allowing for noise; last 5 s 30.0) needs 9 units "
        "at 70% target utilization of 5 TPS/unit (was 3)"
    )


def test_a_new_model_adds_units_once_even_the_lower_bound_needs_them() -> None:
    # 62 calls in 5 s could be a rate as low as 7.1 TPS, which 3 units serve; after
    # 20 s the lower bound is 9.3 TPS, and 3 units serve no more than 9.25 (one second's
    # calls, r + 2 sqrt(r), within their 15 TPS).
    recs = _replay(_policy(), [12.4] * 5, current=3)
    assert [r.desired for r in recs] == [3, 3, 3, 4, 4]
    assert recs[0].reason.endswith("keeping 3 while the rate may be 7.1 TPS, which 3 units serve")


def test_a_steady_load_settles_on_the_units_its_rate_needs() -> None:
    # 12 TPS needs 4 units at 70 % of 5 TPS; a 5 s count of 60 calls varies by 13 %.
    recs = _replay(_policy(), _poisson(12.0, 2000, seed=1), current=1)
    assert {r.desired for r in recs[1:]} == {4}
    assert recs[-1].cause is Cause.STEADY


def test_a_step_up_is_acted_on_in_the_first_evaluation() -> None:
    before = _replay(_policy(), _poisson(3.0, 100, seed=2), current=1)
    assert before[-1].desired == 2  # 3 TPS: one unit, and one more for one second's noise
    (after,) = _replay(_policy(), [15.0], current=2, history=before[-1].history, start=100 * PERIOD)
    assert (after.desired, after.cause) == (5, Cause.SCALE_UP)
    assert after.reason.startswith("demand 15.0 TPS")
    assert after.reason.endswith("; a burst: the last 5 s are above what noise explains (was 2)")


def _evaluate(
    calls: float, *, seconds: float, current: int, history: scaling.History, now: float
) -> scaling.Recommendation:
    """One evaluation of the default policy on `calls` counted over `seconds`."""
    return scaling.recommend(
        policy=_policy(),
        demand_tps=calls / seconds,
        demand_seconds=seconds,
        current=current,
        running=True,
        history=history,
        now=now,
    )


def test_a_step_half_seen_by_two_windows_is_decided_on_the_second() -> None:
    # 3 TPS in 3 s windows (9 calls), then 15 TPS from 1 s before an evaluation: that
    # window holds 9 - 3 + 15 = 21 calls, 3.1 sigma on the square-root scale, too few to
    # tell from noise. The next window, drawn low at 30 calls (45 expected), is 4.9
    # sigma alone: still short of 5. Together, 51 calls in 6 s against 18 expected are
    # 5.8 sigma (above 5 x sqrt(1 + 6/120) = 5.1), so the step is decided there.
    def sigmas(calls: float, expected: float) -> float:
        return 2 * (math.sqrt(calls + 0.375) - math.sqrt(expected + 0.375))

    assert sigmas(21, 9) < 5
    assert sigmas(30, 9) < 5
    assert sigmas(51, 18) > 5.2
    history, current, now = scaling.History(), 1, 0.0
    for calls in [9.0] * 600 + [21.0]:
        now += 3.0
        rec = _evaluate(calls, seconds=3.0, current=current, history=history, now=now)
        history, current = rec.history, rec.desired
    assert rec.cause is not Cause.SCALE_UP
    step = _evaluate(30.0, seconds=3.0, current=current, history=history, now=now + 3.0)
    assert step.cause is Cause.SCALE_UP
    assert "a burst: the last 6 s are above what noise explains" in step.reason
    # The same sample passed again soon after is not joined with itself.
    again = _evaluate(30.0, seconds=3.0, current=current, history=history, now=now + 0.5)
    assert again.cause is not Cause.SCALE_UP


def test_a_step_at_any_phase_is_decided_within_5_s_at_the_default_period() -> None:
    # Calls drawn second by second; the step from 3 to 15 TPS lands at each of 15
    # one-second offsets against the evaluations of the operator's default period, 40
    # seeds. A first full window of 15 TPS falls short of 5 sigma in about 1 % of draws
    # (30 calls or fewer of 45 expected); then the next evaluation decides.
    period = Config().evaluation_period
    late = []
    for seed, offset in itertools.product(range(40), range(15)):
        at = 1800 + offset
        calls = np.random.default_rng(seed).poisson(np.where(np.arange(at + 30) < at, 3.0, 15.0))
        # 3 TPS needs 2 units (one second's calls within full TPS); 15 TPS needs 5.
        history, current, ups = scaling.History(), 2, []
        for end in np.arange(period, at + 30, period):
            window = float(calls[int(end - period) : int(end)].sum())
            rec = _evaluate(
                window, seconds=period, current=current, history=history, now=float(end)
            )
            history, current = rec.history, rec.desired
            if rec.cause is Cause.SCALE_UP:
                ups.append(float(end) - at)
        assert ups, (seed, offset)
        assert 0 <= ups[0] <= 5 + period, (seed, offset, ups)
        if ups[0] > 5:
            late.append((seed, offset, ups[0]))
    assert len(late) <= 0.02 * 40 * 15, late


def test_no_scale_down_while_a_burst_is_recent() -> None:
    policy = _policy(scale_down_delay_seconds=0)
    before = _replay(policy, [3.0] * 100, current=1)
    burst = _replay(policy, [15.0, 15.0, 3.0, 3.0], current=2, history=before[-1].history)
    assert [r.desired for r in burst] == [5, 5, 5, 5]
    assert burst[-1].cause is Cause.BURST
    assert burst[-1].reason.endswith("keeping 5 after a burst (45 s left)")


def test_up_is_capped_at_max() -> None:
    (rec,) = _replay(_policy(max_units=6), [100.0], current=2)
    assert (rec.desired, rec.cause, rec.needed) == (6, Cause.SCALE_UP, 29)
    assert rec.reason.endswith("; capped at max 6 (was 2)")
    (again,) = _replay(_policy(max_units=6), [100.0], current=6, history=rec.history, start=PERIOD)
    assert (again.desired, again.cause) == (6, Cause.CEILING)


def test_step_down_waits_for_the_delay() -> None:
    high = _replay(_policy(), [30.0] * 60)
    assert high[-1].desired == 9
    low = _replay(_policy(), [3.0] * 100, current=9, history=high[-1].history, start=60 * PERIOD)
    downs = [(60 + i) * PERIOD for i, r in enumerate(low) if r.cause is Cause.SCALE_DOWN]
    last_high = 59 * PERIOD
    # The first unit goes a delay after the last evaluation that needed 9; the rest as
    # the newer, lower recommendations reach the end of the delay in turn.
    assert downs[0] == last_high + 300
    assert {r.desired for r in low[: downs.index(downs[0]) + 59]} == {9}
    assert low[0].reason.endswith("keeping 9 for the scale-down delay (300 s, 295 s left)")
    assert low[-1].desired == 2


def test_a_short_dip_does_not_scale_down() -> None:
    recs = _replay(_policy(), [30.0] * 60 + [3.0] * 30 + [30.0] * 60)
    assert {r.desired for r in recs[1:]} == {9}


def test_a_rate_near_a_boundary_holds_the_count_it_has() -> None:
    # 12.8 TPS is just within 4 units (12.8 + 2 sqrt(12.8) = 19.96 calls in a second of
    # their 20 TPS). Coming from 5 units, the upper bound of the stable rate does not fit
    # 4, so 5 stay; coming from 4, its lower bound does not need 5. The count holds.
    policy = _policy(scale_down_delay_seconds=0)
    assert _needed(12.8, policy) == 4
    for current in (4, 5):
        warm = _replay(policy, [12.8] * 200, current=current)
        assert {r.desired for r in warm} == {current}
    held = _replay(policy, [12.8] * 200, current=5)[-1]
    assert held.cause is Cause.STEADY
    assert held.reason.endswith("keeping 5 while the rate may be 14.4 TPS, too much for 4 units")


def test_exact_multiples_do_not_round_up() -> None:
    # 70 TPS / (5 TPS x 0.7) is 20 units, not 21.
    (rec,) = _replay(_policy(max_units=30), [70.0])
    assert rec.needed == _needed(70.0, _policy()) == 20


def test_stopped_gives_zero_and_forgets_history() -> None:
    rec = scaling.recommend(
        policy=_policy(min_units=2),
        demand_tps=50.0,
        demand_seconds=PERIOD,
        current=4,
        running=False,
        history=scaling.History(recommendations=((0.0, 4),), last_demand_at=0.0),
        now=10.0,
    )
    assert (rec.desired, rec.cause, rec.history) == (0, Cause.STOPPED, scaling.History())
    assert rec.reason == "model stopped: 0 units (was 4)"


def test_no_maximum_means_fixed_at_min() -> None:
    recs = _replay(_policy(min_units=2, max_units=None), [0.0, 50.0, 0.0], current=2)
    assert [(r.desired, r.cause) for r in recs] == [(2, Cause.FIXED)] * 3
    assert recs[1].reason.startswith("autoscaling off (no maximum): fixed at min 2; demand")


def test_no_maximum_with_min_zero_goes_between_zero_and_one() -> None:
    recs = _replay(_policy(min_units=0, max_units=None), [0.0, 50.0], current=0)
    assert [r.desired for r in recs] == [0, 1]
    assert recs[1].reason.endswith("; capped at 1 (no maximum, min 0) (was 0)")


def test_floor_holds_min() -> None:
    (rec,) = _replay(_policy(min_units=3), [1.0], current=3)
    assert (rec.desired, rec.cause) == (3, Cause.FLOOR)
    assert rec.reason.endswith("; held at min 3")


def test_min_holds_while_the_rate_needs_more_than_max_but_its_bound_does_not() -> None:
    # min = max = 2 with 1 unit running; a first sample of 1 TPS at 1 TPS per unit needs
    # 3 units (one second's calls within full TPS), its lower bound only 1: the count
    # goes to 2, within the limits, whatever the noise bounds hold.
    policy = _policy(tps_per_unit=1.0, min_units=2, max_units=2, target_utilization=1.0)
    (rec,) = _replay(policy, [1.0], current=1)
    assert (rec.desired, rec.cause) == (2, Cause.SCALE_UP)


def test_raised_floor_scales_up_at_once() -> None:
    (rec,) = _replay(_policy(min_units=5), [1.0], current=3)
    assert (rec.desired, rec.cause) == (5, Cause.SCALE_UP)


def test_lowered_max_scales_down_at_once() -> None:
    (rec,) = _replay(_policy(max_units=4), [30.0], current=9)
    assert (rec.desired, rec.cause) == (4, Cause.SCALE_DOWN)


def test_scale_to_zero_after_the_idle_time() -> None:
    policy = _policy(min_units=0)
    busy = _replay(policy, [10.0])
    idle = _replay(policy, [0.0] * 200, current=4, history=busy[-1].history, start=PERIOD)
    zero = [(i + 1) * PERIOD for i, r in enumerate(idle) if r.desired == 0]
    assert zero[0] == 900.0  # the last demand was at 0 s
    kept = [r for r in idle if r.desired > 0][-1]
    assert kept.cause is Cause.FLOOR
    assert kept.reason.endswith("; keeping 1 unit until idle for 900 s (min 0)")
    gone = idle[len(idle) - len(zero)]
    assert (gone.cause, gone.reason) == (
        Cause.SCALE_TO_ZERO,
        "no demand for 900 s (scale to zero after 900 s) (was 1)",
    )
    assert idle[-1].cause is Cause.IDLE


def test_first_demand_after_zero_starts_a_unit_at_once() -> None:
    policy = _policy(min_units=0)
    (rec,) = _replay(policy, [0.01], current=0)
    assert (rec.desired, rec.cause) == (1, Cause.SCALE_UP)
    idle = _replay(policy, [0.0] * 10, current=0)
    (woken,) = _replay(policy, [0.001], current=0, history=idle[-1].history, start=50.0)
    assert (woken.desired, woken.cause) == (1, Cause.SCALE_UP)


def test_waking_from_zero_starts_from_the_demand_not_the_count_before_idling() -> None:
    # Zero comes before the scale-down delay has passed, so the window still holds 2.
    policy = _policy(min_units=0, scale_to_zero_after_seconds=60.0)
    busy = _replay(policy, [5.0] * 3)
    assert busy[-1].desired == 2
    idle = _replay(policy, [0.0] * 15, current=2, history=busy[-1].history, start=3 * PERIOD)
    assert [r.desired for r in idle][-2:] == [0, 0]
    (woken,) = _replay(policy, [0.2], current=0, history=idle[-1].history, start=18 * PERIOD)
    assert (woken.desired, woken.cause) == (1, Cause.SCALE_UP)


def test_a_new_model_with_min_zero_and_no_demand_stays_at_zero() -> None:
    (rec,) = _replay(_policy(min_units=0), [0.0], current=0)
    assert (rec.desired, rec.cause, rec.reason) == (
        0,
        Cause.IDLE,
        "idle at zero: no demand for 0 s",
    )


def test_unknown_demand_keeps_the_current_units() -> None:
    policy = _policy(min_units=2, max_units=6)
    recs = _replay(policy, [None, None], current=4)
    assert [(r.desired, r.cause) for r in recs] == [(4, Cause.DEMAND_UNKNOWN)] * 2
    assert recs[0].reason == "demand unknown (no gateway metrics): keeping 4 units"
    assert recs[0].history == scaling.History()
    (clamped,) = _replay(_policy(min_units=2, max_units=3), [None], current=4)
    assert (clamped.desired, clamped.cause) == (3, Cause.SCALE_DOWN)
    (idle,) = _replay(_policy(min_units=0), [None], current=0)
    assert idle.desired == 0


def test_lost_history_delays_rather_than_hastens_scale_down() -> None:
    recs = _replay(_policy(), [3.0] * 80, current=8)
    assert [r.desired for r in recs[:60]] == [8] * 60
    assert recs[60].desired < 8
    assert recs[-1].desired == 2


def _at(history: scaling.History, now: float) -> scaling.Recommendation:
    """One more evaluation of 12 TPS over 5 s at `now`, whatever the time of the last."""
    return scaling.recommend(
        policy=_policy(),
        demand_tps=12.0,
        demand_seconds=PERIOD,
        current=4,
        running=True,
        history=history,
        now=now,
    )


def test_a_sample_passed_again_counts_only_for_the_time_since() -> None:
    (first,) = _replay(_policy(), [12.0], current=4)
    again = _at(first.history, 0.5)
    assert again.history.stable.seconds == pytest.approx(
        first.history.stable.seconds * math.exp(-0.5 / 60) + 0.5
    )


def test_a_clock_that_goes_back_adds_no_time() -> None:
    (first,) = _replay(_policy(), [12.0], current=4, start=100.0)
    back = _at(first.history, 90.0)
    assert back.history.stable == first.history.stable
    assert back.desired == 4


def test_noise_bounds_of_a_count() -> None:
    # 100 calls in 100 s: the rates r whose 3 sigma of Poisson noise, sqrt(r T), just
    # reaches the count. No calls at all still allows z^2 / T.
    low, high = scaling.Rate(100.0, 100.0, 100.0).bounds(3.0)
    for rate in (low, high):
        assert abs(100 - rate * 100) == pytest.approx(3 * math.sqrt(rate * 100))
    assert low < 1.0 < high
    assert scaling.Rate(0.0, 100.0, 100.0).bounds(3.0) == (0.0, 0.09)
    assert scaling.Rate().bounds(3.0) == (0.0, math.inf)
    # An exponentially weighted rate is as noisy as a plain count over seconds^2/spread.
    weighted = scaling.Rate(50.0, 50.0, 25.0)
    assert weighted.bounds(3.0) == pytest.approx(scaling.Rate(100.0, 100.0, 100.0).bounds(3.0))


@pytest.mark.parametrize(
    "overrides",
    [
        {"tps_per_unit": 0.0},
        {"tps_per_unit": math.inf},
        {"min_units": -1},
        {"min_units": 3, "max_units": 2},
        {"min_units": 0, "max_units": 0},
        {"target_utilization": 0.0},
        {"target_utilization": 1.5},
        {"stable_window_seconds": 0.0},
        {"scale_down_delay_seconds": -1.0},
    ],
)
def test_invalid_policy_is_rejected(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="must be"):
        _policy(**overrides)


@pytest.mark.parametrize("demand", [-1.0, math.nan, math.inf])
def test_invalid_demand_is_rejected(demand: float) -> None:
    with pytest.raises(ValueError, match="demand_tps"):
        _replay(_policy(), [demand])


def test_invalid_demand_window_is_rejected() -> None:
    with pytest.raises(ValueError, match="demand_seconds"):
        scaling.recommend(
            policy=_policy(),
            demand_tps=1.0,
            demand_seconds=0.0,
            current=1,
            running=True,
            history=scaling.History(),
            now=0.0,
        )


policies = st.builds(
    lambda tps, low, span, target, delay, window: scaling.Policy(
        tps_per_unit=tps,
        min_units=low,
        max_units=max(low, 1) + span,
        target_utilization=target,
        scale_down_delay_seconds=delay,
        scale_to_zero_after_seconds=delay * 3,
        stable_window_seconds=window,
    ),
    st.floats(min_value=0.5, max_value=50.0),
    st.integers(0, 5),
    st.integers(0, 40),
    st.floats(min_value=0.3, max_value=1.0),
    st.sampled_from([0.0, 60.0, 300.0]),
    st.sampled_from([30.0, 60.0, 300.0]),
)
demands = st.floats(min_value=0.0, max_value=2000.0)


@given(
    policy=policies,
    trace=st.lists(st.one_of(demands, st.none()), min_size=1, max_size=80),
    current=st.integers(0, 40),
)
def test_desired_stays_within_min_and_max(
    policy: scaling.Policy, trace: list[float | None], current: int
) -> None:
    assert policy.max_units is not None
    for rec in _replay(policy, trace, current=current):
        if rec.desired == 0 and policy.min_units == 0:
            continue
        assert policy.min_units <= rec.desired <= policy.max_units
        assert rec.reason
        assert len(rec.history.recommendations) <= len(trace) + 1


@settings(max_examples=40)
@given(
    policy=policies,
    rate=st.floats(min_value=0.05, max_value=400.0),
    current=st.integers(0, 40),
    seed=st.integers(0, 2**32 - 1),
)
def test_a_stationary_poisson_load_never_reverses_and_settles(
    policy: scaling.Policy, rate: float, current: int, seed: int
) -> None:
    # With min 0, scale to zero after the default 900 s: at 0.05 TPS a silence that long
    # has a chance of e^-45.
    policy = dataclasses.replace(policy, scale_to_zero_after_seconds=900.0)
    settle = _settle(policy)
    evaluations = settle + 2000  # about 2.8 hours of 5 s evaluations after settling
    recs = _replay(policy, _poisson(rate, evaluations, seed), current=current)
    counts = [r.desired for r in recs]
    moves = [b - a for a, b in itertools.pairwise(counts[1:]) if b != a]
    # Never a reversal; after settling at most one step. A rate within the noise bound
    # of a boundary holds the count it came with until the evidence is clear, which can
    # take a while; it then moves once and stays.
    assert all(m > 0 for m in moves) or all(m < 0 for m in moves), counts
    assert sum(a != b for a, b in itertools.pairwise(counts[settle:])) <= 1, counts


@given(
    policy=policies,
    rate=st.floats(min_value=40.0, max_value=400.0),
    factor=st.floats(min_value=2.0, max_value=10.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_a_step_to_twice_the_capacity_is_decided_in_the_first_evaluation_after_it(
    policy: scaling.Policy, rate: float, factor: float, seed: int
) -> None:
    # At least 200 calls per 5 s before the step: enough that doubling is beyond noise.
    settle = _settle(policy)
    before = _replay(policy, _poisson(rate, settle, seed), current=policy.min_units)
    settled = before[-1].desired
    assert policy.max_units is not None
    assume(settled < policy.max_units)
    capacity = settled * policy.tps_per_unit * policy.target_utilization
    (after,) = _replay(
        policy,
        _poisson(factor * max(capacity, rate), 1, seed + 1),
        current=settled,
        history=before[-1].history,
        start=settle * PERIOD,
    )
    assert after.desired > settled
    assert after.cause is Cause.SCALE_UP


@given(policy=policies, demand=demands, current=st.integers(0, 40))
def test_a_constant_load_settles_and_stays(
    policy: scaling.Policy, demand: float, current: int
) -> None:
    settle = _settle(policy)
    recs = _replay(policy, [demand] * (settle + 40), current=current)
    assert len({r.desired for r in recs[settle + 1 :]}) == 1


@given(policy=policies, high=demands, low=demands)
def test_a_step_down_waits_for_the_delay(policy: scaling.Policy, high: float, low: float) -> None:
    settle = int(10 * policy.stable_window_seconds // PERIOD)
    top = _replay(policy, [max(high, low)] * settle, current=policy.min_units)[-1]
    recs = _replay(
        policy,
        [min(high, low)] * 80,
        current=top.desired,
        history=top.history,
        start=settle * PERIOD,
    )
    for i, rec in enumerate(recs):
        if (i + 1) * PERIOD < policy.scale_down_delay_seconds:
            assert rec.desired >= top.desired


@given(policy=policies, trace=st.lists(demands, min_size=1, max_size=60))
def test_replay_is_deterministic(policy: scaling.Policy, trace: list[float]) -> None:
    assert _replay(policy, trace) == _replay(policy, trace)


def test_delay_after_a_capped_burst_is_reported_as_a_delay() -> None:
    policy = _policy(max_units=6)
    burst = _replay(policy, [100.0] * 20, current=2)
    (after,) = _replay(policy, [3.0], current=6, history=burst[-1].history, start=20 * PERIOD)
    assert (after.desired, after.cause) == (6, Cause.SCALE_DOWN_DELAYED)
    assert after.reason.endswith("keeping 6 for the scale-down delay (300 s, 295 s left)")
