"""Desired units from demand: fast up, delayed and hysteretic down, scale to zero."""

from __future__ import annotations

import math
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiu.policy import scaling

Cause = scaling.Cause
PERIOD = 15.0  # seconds between evaluations, as the operator runs them


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
            current=current,
            running=True,
            history=history,
            now=start + i * PERIOD,
        )
        current, history = rec.desired, rec.history
        out.append(rec)
    return out


def test_reason_names_demand_units_target_and_previous_count() -> None:
    (rec,) = _replay(_policy(), [12.4], current=3)
    assert (rec.desired, rec.cause, rec.needed) == (4, Cause.SCALE_UP, 4)
    assert rec.reason == (
        "demand 12.4 TPS needs 4 units at 70% target utilization of 5 TPS/unit (was 3)"
    )


def test_step_up_is_acted_on_in_the_first_evaluation() -> None:
    recs = _replay(_policy(), [3.0] * 4 + [30.0])
    assert [r.desired for r in recs] == [1, 1, 1, 1, 9]
    assert recs[-1].cause is Cause.SCALE_UP


def test_up_is_capped_at_max() -> None:
    (rec,) = _replay(_policy(max_units=6), [100.0], current=2)
    assert (rec.desired, rec.cause, rec.needed) == (6, Cause.SCALE_UP, 29)
    assert rec.reason.endswith("; capped at max 6 (was 2)")
    (again,) = _replay(_policy(max_units=6), [100.0], current=6, history=rec.history)
    assert (again.desired, again.cause) == (6, Cause.CEILING)


def test_step_down_waits_for_the_delay() -> None:
    high = _replay(_policy(), [30.0] * 3)
    low = _replay(_policy(), [3.0] * 40, current=9, history=high[-1].history, start=3 * PERIOD)
    last_high = 2 * PERIOD
    for i, rec in enumerate(low):
        now = (3 + i) * PERIOD
        if now < last_high + 300:
            assert (rec.desired, rec.cause) == (9, Cause.SCALE_DOWN_DELAYED)
        elif now == last_high + 300:
            assert (rec.desired, rec.cause) == (1, Cause.SCALE_DOWN)
            assert rec.reason.endswith("(was 9)")
        else:
            assert rec.desired == 1
    assert low[0].reason.endswith("keeping 9 for the scale-down delay (300 s, 285 s left)")


def test_a_short_dip_does_not_scale_down() -> None:
    recs = _replay(_policy(), [30.0] * 4 + [3.0] * 10 + [30.0] * 4)
    assert {r.desired for r in recs} == {9}


def test_tolerance_holds_a_unit_until_demand_is_clearly_lower() -> None:
    # 4 units at 70% serve 14 TPS; 3 units would be above 63% (70% less 10%) down to 9.45.
    recs = _replay(_policy(scale_down_delay_seconds=0), [14.0, 10.0, 9.5, 9.4], current=1)
    assert [r.desired for r in recs] == [4, 4, 4, 3]
    assert recs[1].cause is Cause.STEADY
    assert recs[1].reason == (
        "demand 10.0 TPS needs 3 units at 70% target utilization of 5 TPS/unit; "
        "keeping 4: with 3 it would run above 63% (the target less 10% tolerance)"
    )


def test_exact_multiples_do_not_round_up() -> None:
    (rec,) = _replay(_policy(), [7.0])
    assert rec.needed == 2


def test_stopped_gives_zero_and_forgets_history() -> None:
    rec = scaling.recommend(
        policy=_policy(min_units=2),
        demand_tps=50.0,
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
    assert recs[1].reason.startswith("autoscaling off (no maximum): fixed at min 2; demand 50.0")


def test_no_maximum_with_min_zero_goes_between_zero_and_one() -> None:
    recs = _replay(_policy(min_units=0, max_units=None), [0.0, 50.0], current=0)
    assert [r.desired for r in recs] == [0, 1]
    assert recs[1].reason.endswith("; capped at 1 (no maximum, min 0) (was 0)")


def test_floor_holds_min() -> None:
    (rec,) = _replay(_policy(min_units=3), [1.0], current=3)
    assert (rec.desired, rec.cause) == (3, Cause.FLOOR)
    assert rec.reason.endswith("; held at min 3")


def test_raised_floor_scales_up_at_once() -> None:
    (rec,) = _replay(_policy(min_units=5), [1.0], current=3)
    assert (rec.desired, rec.cause) == (5, Cause.SCALE_UP)


def test_lowered_max_scales_down_at_once() -> None:
    (rec,) = _replay(_policy(max_units=4), [30.0], current=9)
    assert (rec.desired, rec.cause) == (4, Cause.SCALE_DOWN)


def test_scale_to_zero_after_the_idle_time() -> None:
    policy = _policy(min_units=0)
    busy = _replay(policy, [10.0])
    idle = _replay(policy, [0.0] * 70, current=3, history=busy[-1].history, start=PERIOD)
    desired = [(i + 1) * PERIOD for i, r in enumerate(idle) if r.desired == 0]
    assert desired[0] == 900.0  # the last demand was at 0 s
    kept = [r for r in idle if r.desired > 0][-1]
    assert kept.cause is Cause.FLOOR
    assert kept.reason.endswith("; keeping 1 unit until idle for 900 s (min 0)")
    gone = idle[len(idle) - len(desired)]
    assert (gone.cause, gone.reason) == (
        Cause.SCALE_TO_ZERO,
        "no demand for 900 s (scale to zero after 900 s) (was 1)",
    )
    assert idle[-1].cause is Cause.IDLE


def test_first_demand_after_zero_starts_a_unit_at_once() -> None:
    policy = _policy(min_units=0)
    (rec,) = _replay(policy, [0.01], current=0)
    assert (rec.desired, rec.cause) == (1, Cause.SCALE_UP)


def test_waking_from_zero_starts_from_the_demand_not_the_count_before_idling() -> None:
    # Zero comes before the scale-down delay has passed, so the window still holds 2.
    policy = _policy(min_units=0, scale_to_zero_after_seconds=60.0)
    busy = _replay(policy, [5.0])
    assert busy[-1].desired == 2
    idle = _replay(policy, [0.0] * 5, current=2, history=busy[-1].history, start=PERIOD)
    assert [r.desired for r in idle][-2:] == [0, 0]
    (woken,) = _replay(policy, [0.1], current=0, history=idle[-1].history, start=6 * PERIOD)
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
    recs = _replay(_policy(), [3.0] * 21, current=8)
    assert [r.desired for r in recs[:20]] == [8] * 20
    assert recs[20].desired == 1


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
        {"tolerance": 1.0},
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


policies = st.builds(
    lambda tps, low, span, target, delay: scaling.Policy(
        tps_per_unit=tps,
        min_units=low,
        max_units=max(low, 1) + span,
        target_utilization=target,
        scale_down_delay_seconds=delay,
        scale_to_zero_after_seconds=delay * 3,
    ),
    st.floats(min_value=0.5, max_value=50.0),
    st.integers(0, 5),
    st.integers(0, 20),
    st.floats(min_value=0.3, max_value=1.0),
    st.sampled_from([0.0, 60.0, 300.0]),
)
demands = st.floats(min_value=0.0, max_value=2000.0)


@settings(deadline=None)
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


@settings(deadline=None)
@given(policy=policies, demand=demands, current=st.integers(0, 40))
def test_a_constant_load_settles_and_stays(
    policy: scaling.Policy, demand: float, current: int
) -> None:
    settle = int(max(policy.scale_down_delay_seconds, policy.scale_to_zero_after_seconds) // PERIOD)
    recs = _replay(policy, [demand] * (settle + 40), current=current)
    assert len({r.desired for r in recs[settle + 1 :]}) == 1


@settings(deadline=None)
@given(
    policy=policies,
    level=st.floats(min_value=0.5, max_value=500.0),
    noise=st.lists(st.floats(min_value=-0.05, max_value=0.05), min_size=1, max_size=120),
)
def test_noise_of_five_percent_causes_no_scale_events(
    policy: scaling.Policy, level: float, noise: list[float]
) -> None:
    # Settled on the top of the noise band, then noisy for up to half an hour.
    (settled,) = _replay(policy, [level * 1.05], current=policy.min_units)
    recs = _replay(
        policy,
        [level * (1 + n) for n in noise],
        current=settled.desired,
        history=settled.history,
        start=PERIOD,
    )
    assert {r.desired for r in recs} == {settled.desired}


@settings(deadline=None)
@given(
    policy=policies,
    before=demands,
    after=demands,
    steps=st.integers(1, 30),
)
def test_a_step_up_is_acted_on_in_the_first_evaluation(
    policy: scaling.Policy, before: float, after: float, steps: int
) -> None:
    recs = _replay(policy, [before] * steps + [after], current=policy.min_units)
    assert policy.max_units is not None
    needed = math.ceil(after / (policy.tps_per_unit * policy.target_utilization) - 1e-9)
    assert recs[-1].desired >= min(needed, policy.max_units)


@settings(deadline=None)
@given(policy=policies, high=demands, low=demands)
def test_a_step_down_waits_for_the_delay(policy: scaling.Policy, high: float, low: float) -> None:
    (top,) = _replay(policy, [max(high, low)], current=policy.min_units)
    recs = _replay(
        policy, [min(high, low)] * 40, current=top.desired, history=top.history, start=PERIOD
    )
    for i, rec in enumerate(recs):
        if (i + 1) * PERIOD < policy.scale_down_delay_seconds:
            assert rec.desired == top.desired


@settings(deadline=None)
@given(policy=policies, trace=st.lists(demands, min_size=1, max_size=60))
def test_replay_is_deterministic(policy: scaling.Policy, trace: list[float]) -> None:
    assert _replay(policy, trace) == _replay(policy, trace)


def test_delay_after_a_capped_burst_is_reported_as_a_delay() -> None:
    policy = _policy(max_units=6)
    burst = _replay(policy, [100.0, 100.0], current=2)
    (after,) = _replay(policy, [3.0], current=6, history=burst[-1].history, start=2 * PERIOD)
    assert (after.desired, after.cause) == (6, Cause.SCALE_DOWN_DELAYED)
    assert after.reason.endswith("keeping 6 for the scale-down delay (300 s, 285 s left)")
