"""How many inference units a model should have, from its demand.

Demand is what callers asked for (admitted + throttled TPS), not what was served, so
throttling shows up as demand and is acted on in the next evaluation. Scale-up is
immediate; scale-down waits for `scale_down_delay_seconds` of lower recommendations
(the stabilization window of the Kubernetes HPA) and for a tolerance margin below the
target, so a steady load near a boundary does not oscillate. With min 0, a model with
no demand for `scale_to_zero_after_seconds` goes to zero units; the first demand brings
one back at once. See docs/scaling.md.

`recommend` is pure: what must survive to the next evaluation is in `History`, returned
with each recommendation; persist it (it is a few pairs of numbers) and pass it back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

# ceil() of a ratio that is an integer in exact arithmetic must not round up because of
# float error (7 TPS / (5 TPS x 0.7) is 2 units, not 3).
_EPSILON = 1e-9


class Cause(StrEnum):
    """Short CamelCase code of a recommendation, for condition reasons and Events."""

    SCALE_UP = "ScaleUp"
    SCALE_DOWN = "ScaleDown"
    SCALE_TO_ZERO = "ScaleToZero"
    STEADY = "Steady"
    SCALE_DOWN_DELAYED = "ScaleDownDelayed"
    FLOOR = "Floor"
    CEILING = "Ceiling"
    IDLE = "Idle"
    FIXED = "Fixed"
    DEMAND_UNKNOWN = "DemandUnknown"
    STOPPED = "Stopped"


@dataclass(frozen=True, slots=True)
class Policy:
    """The scaling parameters of one model (from its spec).

    `max_units` None means no autoscaling: the model runs `min_units`, as in the
    reference service (with `min_units` 0 it still goes between 0 and 1 unit).
    `tolerance` is the margin below the target utilization that demand must fall to
    before fewer units are recommended (HPA uses 10%).
    """

    tps_per_unit: float
    min_units: int
    max_units: int | None = None
    target_utilization: float = 0.7
    scale_down_delay_seconds: float = 300.0
    scale_to_zero_after_seconds: float = 900.0
    tolerance: float = 0.1

    def __post_init__(self) -> None:
        if not (self.tps_per_unit > 0 and math.isfinite(self.tps_per_unit)):
            raise ValueError(f"tps_per_unit must be > 0, got {self.tps_per_unit}")
        if self.min_units < 0:
            raise ValueError(f"min_units must be >= 0, got {self.min_units}")
        if self.max_units is not None and self.max_units < max(self.min_units, 1):
            raise ValueError(
                f"max_units must be >= min_units and >= 1, got {self.max_units} "
                f"with min_units {self.min_units}"
            )
        if not 0 < self.target_utilization <= 1:
            raise ValueError(f"target_utilization must be in (0, 1], got {self.target_utilization}")
        if not 0 <= self.tolerance < 1:
            raise ValueError(f"tolerance must be in [0, 1), got {self.tolerance}")
        if self.scale_down_delay_seconds < 0 or self.scale_to_zero_after_seconds < 0:
            raise ValueError("delays must be >= 0 seconds")


@dataclass(frozen=True, slots=True)
class History:
    """What one evaluation leaves for the next.

    `recommendations` holds (time, units) pairs of the last `scale_down_delay_seconds`,
    without the pairs that can no longer be the maximum of the window (an older pair
    that is not larger than a newer one): times rise and units strictly fall, so the
    first pair is the window's maximum and the list holds at most one pair per
    distinct unit count. `last_demand_at` is the last time demand was above zero, or
    the first evaluation, from which idleness is measured. Persist both (in the
    resource status) across operator restarts; `History()` starts afresh.
    """

    recommendations: tuple[tuple[float, int], ...] = ()
    last_demand_at: float | None = None


@dataclass(frozen=True, slots=True)
class Recommendation:
    """The desired units, why, and the history to pass to the next evaluation.

    `needed` is the units the demand needs at the target utilization, before the
    scale-down delay and the min/max limits (0 when demand is unknown or stopped).
    """

    desired: int
    cause: Cause
    reason: str
    needed: int
    history: History


def recommend(
    *,
    policy: Policy,
    demand_tps: float | None,
    current: int,
    running: bool,
    history: History,
    now: float,
) -> Recommendation:
    """Recommend the desired units for a model evaluated at time `now` (seconds).

    `demand_tps` is admitted + throttled calls per second since the last evaluation,
    or None when it could not be measured (no gateway answered): then nothing scales
    on demand, but min/max changes still apply. `current` is the desired count
    published by the last evaluation.
    """
    if not running:
        return Recommendation(
            desired=0,
            cause=Cause.STOPPED,
            reason="model stopped: 0 units" + _was(0, current),
            needed=0,
            history=History(),
        )
    # Without a maximum the model runs min units; min 0 still scales between 0 and 1.
    ceiling = max(policy.min_units, 1) if policy.max_units is None else policy.max_units
    if demand_tps is None:
        held = 0 if current == 0 and policy.min_units == 0 else current
        desired = min(max(held, policy.min_units), ceiling)
        return Recommendation(
            desired=desired,
            cause=_change(desired, current) or Cause.DEMAND_UNKNOWN,
            reason=f"demand unknown (no gateway metrics): "
            f"{'keeping' if desired == current else 'set to'} {_units(desired)}"
            + _was(desired, current),
            needed=0,
            history=history,
        )
    if not (demand_tps >= 0 and math.isfinite(demand_tps)):
        raise ValueError(f"demand_tps must be a finite number >= 0, got {demand_tps}")

    per_unit = policy.tps_per_unit * policy.target_utilization
    down_utilization = policy.target_utilization * (1 - policy.tolerance)
    needed = _units_for(demand_tps, per_unit)
    if needed > current:
        raw = needed
    else:
        # Fewer units only once demand is below the target less the tolerance at that count.
        raw = min(current, _units_for(demand_tps, policy.tps_per_unit * down_utilization))
    # No history (a new model, or history lost): count the current units as recommended
    # now, so that losing the history delays a scale-down rather than hastening it.
    past = history.recommendations or ((now, current),)
    window = _push(past, now, raw, policy.scale_down_delay_seconds)
    last_demand_at = history.last_demand_at
    if demand_tps > 0 or last_demand_at is None:
        last_demand_at = now
    new_history = History(recommendations=window, last_demand_at=last_demand_at)
    idle_for = now - last_demand_at
    demand = (
        f"demand {demand_tps:.1f} TPS needs {_units(needed)} at "
        f"{_pct(policy.target_utilization)} target utilization of "
        f"{policy.tps_per_unit:g} TPS/unit"
    )

    def result(
        desired: int, cause: Cause, reason: str, history: History = new_history
    ) -> Recommendation:
        return Recommendation(
            desired=desired,
            cause=_change(desired, current) or cause,
            reason=reason + _was(desired, current),
            needed=needed,
            history=history,
        )

    # At zero the units of the scale-down window are gone: waking starts from what the
    # demand needs, not from the count before the model went idle.
    at_zero = History(recommendations=((now, 0),), last_demand_at=last_demand_at)

    if policy.max_units is None and policy.min_units > 0:
        return result(
            policy.min_units,
            Cause.FIXED,
            f"autoscaling off (no maximum): fixed at min {policy.min_units}; {demand}",
        )
    if policy.min_units == 0 and demand_tps == 0:
        if current == 0:
            return result(0, Cause.IDLE, f"idle at zero: no demand for {idle_for:.0f} s", at_zero)
        if idle_for >= policy.scale_to_zero_after_seconds:
            return result(
                0,
                Cause.SCALE_TO_ZERO,
                f"no demand for {idle_for:.0f} s "
                f"(scale to zero after {policy.scale_to_zero_after_seconds:g} s)",
                at_zero,
            )
    if needed > ceiling:
        cap = f"max {ceiling}" if policy.max_units is not None else "1 (no maximum, min 0)"
        return result(ceiling, Cause.CEILING, f"{demand}; capped at {cap}")
    raw = min(raw, ceiling)
    stable = min(window[0][1], ceiling)  # the maximum over the scale-down delay
    # With min 0, one unit stays until the model has been idle long enough for zero.
    floor = max(policy.min_units, 1)
    if raw < floor and stable <= floor:
        why = (
            f"held at min {floor}"
            if policy.min_units
            else f"keeping 1 unit until idle for {policy.scale_to_zero_after_seconds:g} s (min 0)"
        )
        return result(floor, Cause.FLOOR, f"{demand}; {why}")
    if stable > raw:
        held_since = max(t for t, units in window if units >= stable)
        left = held_since + policy.scale_down_delay_seconds - now
        return result(
            stable,
            Cause.SCALE_DOWN_DELAYED,
            f"{demand}; keeping {stable} for the scale-down delay "
            f"({policy.scale_down_delay_seconds:g} s, {left:.0f} s left)",
        )
    if raw > needed:
        return result(
            raw,
            Cause.STEADY,
            f"{demand}; keeping {raw}: with {raw - 1} it would run above "
            f"{_pct(down_utilization)} (the target less {_pct(policy.tolerance)} tolerance)",
        )
    return result(raw, Cause.STEADY, demand)


def _units_for(demand_tps: float, tps_per_unit: float) -> int:
    return max(math.ceil(demand_tps / tps_per_unit - _EPSILON), 0)


def _push(
    window: tuple[tuple[float, int], ...], now: float, units: int, delay: float
) -> tuple[tuple[float, int], ...]:
    """Add (now, units), drop pairs older than `delay` and pairs that can no longer be the max.

    Works on any order of times (a clock that went backwards): pairs are kept by
    recency, and a pair survives only if it is larger than every more recent one.
    """
    pairs = sorted(
        [(t, u) for t, u in window if t > now - delay] + [(now, units)],
        key=lambda pair: pair[0],
        reverse=True,
    )
    kept: list[tuple[float, int]] = []
    for t, u in pairs:
        if not kept or u > kept[-1][1]:
            kept.append((t, u))
    return tuple(reversed(kept))


def _change(desired: int, current: int) -> Cause | None:
    if desired > current:
        return Cause.SCALE_UP
    if desired == 0 and current > 0:
        return Cause.SCALE_TO_ZERO
    if desired < current:
        return Cause.SCALE_DOWN
    return None


def _was(desired: int, current: int) -> str:
    return "" if desired == current else f" (was {current})"


def _units(n: int) -> str:
    return f"{n} unit" if n == 1 else f"{n} units"


def _pct(fraction: float) -> str:
    return f"{fraction * 100:.0f}%"
