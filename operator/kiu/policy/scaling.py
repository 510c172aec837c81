"""How many inference units a model should have, from its demand.

Demand is what callers asked for (admitted + throttled calls), not what was served,
so throttling shows up as demand. Each sample is a count of arrivals over a short
window; arrivals of independent callers are Poisson, so a count of n varies by
sqrt(n): 13 % for 60 calls. The policy therefore keeps two views of the rate:

* the *stable rate*, an exponentially weighted count over an exponentially weighted
  time (`Policy.stable_window_seconds`), with its own noise, and sizes the fleet from
  it: more units once its lower confidence bound needs them, fewer once its upper
  bound fits fewer (then only after `scale_down_delay_seconds` of such evidence);
* the *latest window*, alone and joined with the window before it: when either is
  further from the stable rate than Poisson noise explains, the level has moved. The
  stable rate restarts from that window, and if it needs more units they are decided
  at once (a burst). While a burst is
  recent, the count follows the restarted stable rate up without waiting for its
  bound, and no unit goes.

A steady load thus settles on the units its rate needs and stays there, while a real
step is acted on in the evaluation that measures it. With min 0, a model with no
demand for `scale_to_zero_after_seconds` goes to zero units; the first demand brings
one back at once. See docs/scaling.md.

`recommend` is pure: what must survive to the next evaluation is in `History`, returned
with each recommendation; persist it (a few numbers) and pass it back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

# ceil() of a ratio that is an integer in exact arithmetic must not round up because of
# float error (7 TPS / (5 TPS x 0.7) is 2 units, not 3).
_EPSILON = 1e-9
#: Standard deviations of Poisson noise within which the stable rate is taken to lie:
#: more units once its lower bound needs them, fewer once its upper bound fits fewer.
#: At a rate right on a boundary between two counts, a change needs an excursion of
#: the stable rate this large (3 in 10^6 per stable window), so the count holds.
BOUND_SIGMAS = 4.5
#: Standard deviations by which the latest window (alone, or joined with the one before)
#: must differ from the stable rate to count as a change of level: rare enough by chance
#: (3 in 10^7 evaluations per test, about once in 60 days of 3 s evaluations for the
#: two) that a steady load does not trigger it.
CHANGE_SIGMAS = 5.0
#: Headroom for the calls of one second (the gateway's token bucket holds one second of
#: the limit): at rate r, up to r + 2 sqrt(r) calls in a second fit in the units'
#: full TPS. It adds units only below about 22 TPS in all, where the 30 % headroom of
#: the default target is less than that noise (one unit at 3.5 TPS: calls above 5 in
#: 14 % of seconds).
SECOND_SIGMAS = 2.0


class Cause(StrEnum):
    """Short CamelCase code of a recommendation, for condition reasons and Events."""

    SCALE_UP = "ScaleUp"
    SCALE_DOWN = "ScaleDown"
    SCALE_TO_ZERO = "ScaleToZero"
    STEADY = "Steady"
    SCALE_DOWN_DELAYED = "ScaleDownDelayed"
    BURST = "Burst"
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
    `stable_window_seconds` is the time constant of the stable rate: longer is less
    noisy and follows slow changes later (a step is caught by the burst rule anyway).
    """

    tps_per_unit: float
    min_units: int
    max_units: int | None = None
    target_utilization: float = 0.7
    scale_down_delay_seconds: float = 300.0
    scale_to_zero_after_seconds: float = 900.0
    stable_window_seconds: float = 60.0

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
        if self.scale_down_delay_seconds < 0 or self.scale_to_zero_after_seconds < 0:
            raise ValueError("delays must be >= 0 seconds")
        if not self.stable_window_seconds > 0:
            raise ValueError(f"stable_window_seconds must be > 0, got {self.stable_window_seconds}")


@dataclass(frozen=True, slots=True)
class Rate:
    """Calls counted over an exposure time, each exponentially weighted by age.

    `calls / seconds` is the rate. `spread` is the sum of squared weights times the
    exposure of each sample, so that the rate's Poisson variance is rate x spread /
    seconds^2: the rate is as noisy as a plain count over `seconds^2 / spread`.
    """

    calls: float = 0.0
    seconds: float = 0.0
    spread: float = 0.0

    @property
    def tps(self) -> float:
        return self.calls / self.seconds if self.seconds > 0 else 0.0

    def bounds(self, sigmas: float) -> tuple[float, float]:
        """The rates within `sigmas` standard deviations of Poisson noise of this count.

        The roots of (n - r T)^2 = z^2 r T (a score interval): exact at a count of zero,
        where the upper bound is z^2 / T rather than zero.
        """
        if self.seconds <= 0 or self.spread <= 0:
            return 0.0, math.inf
        exposure = self.seconds**2 / self.spread
        count = self.tps * exposure
        middle = count + sigmas**2 / 2
        half = sigmas * math.sqrt(count + sigmas**2 / 4)
        return max(middle - half, 0.0) / exposure, (middle + half) / exposure

    def aged(self, seconds: float, window: float) -> Rate:
        """The same evidence `seconds` later, weighted down by exp(-seconds / window)."""
        decay = math.exp(-max(seconds, 0.0) / window)
        return Rate(self.calls * decay, self.seconds * decay, self.spread * decay * decay)

    def plus(self, tps: float, seconds: float) -> Rate:
        return Rate(self.calls + tps * seconds, self.seconds + seconds, self.spread + seconds)


@dataclass(frozen=True, slots=True)
class History:
    """What one evaluation leaves for the next.

    `recommendations` holds (time, units) pairs of the last `scale_down_delay_seconds`,
    without the pairs that can no longer be the maximum of the window (an older pair
    that is not larger than a newer one): times rise and units strictly fall, so the
    first pair is the window's maximum and the list holds at most one pair per
    distinct unit count. `last_demand_at` is the last time demand was above zero, or
    the first evaluation, from which idleness is measured. `stable` is the stable rate
    as of `sampled_at`, and `window` the sample taken then (a plain count), joined with
    the next one to see a change that one short window cannot; `burst_until` ends the
    no-scale-down time after a burst.
    Persist all of it (in the resource status) across operator restarts; `History()`
    starts afresh.
    """

    recommendations: tuple[tuple[float, int], ...] = ()
    last_demand_at: float | None = None
    stable: Rate = Rate()
    sampled_at: float | None = None
    burst_until: float | None = None
    window: Rate = Rate()


@dataclass(frozen=True, slots=True)
class Recommendation:
    """The desired units, why, and the history to pass to the next evaluation.

    `needed` is the units the stable rate needs at the target utilization, before the
    noise bounds, the scale-down delay and the min/max limits (0 when demand is unknown
    or stopped).
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
    demand_seconds: float,
    current: int,
    running: bool,
    history: History,
    now: float,
) -> Recommendation:
    """Recommend the desired units for a model evaluated at time `now` (seconds).

    `demand_tps` is admitted + throttled calls per second over the `demand_seconds`
    before `now` (the scrape interval, or the range of a Prometheus rate), or None when
    it could not be measured (no gateway answered): then nothing scales on demand, but
    min/max changes still apply. `current` is the desired count published by the last
    evaluation. A sample passed again (an evaluation sooner than `demand_seconds` after
    the last) counts only for the time since the last evaluation.
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
    if not (demand_seconds > 0 and math.isfinite(demand_seconds)):
        raise ValueError(f"demand_seconds must be a finite number > 0, got {demand_seconds}")

    window = policy.stable_window_seconds
    latest = Rate().plus(demand_tps, demand_seconds)
    if history.sampled_at is None:
        # Nothing known before (a new model, or history lost): the sample is all there
        # is; its wide bounds add units only where even its lower bound needs them.
        stable, moved = latest, False
    else:
        elapsed = now - history.sampled_at
        before = history.stable.aged(elapsed, window)
        changed = _changed(latest, history.window, elapsed=elapsed, before=before)
        moved = changed is not None
        # After a change of level the old evidence describes a rate that is gone.
        exposure = min(max(elapsed, 0.0), demand_seconds)
        stable = changed or before.plus(demand_tps, exposure)
    low, high = stable.bounds(BOUND_SIGMAS)
    needed = _needed(stable.tps, policy)
    burst = moved and stable.tps > history.stable.tps and needed > current
    burst_until = now + window if burst else history.burst_until
    bursting = burst_until is not None and now < burst_until
    if needed > current and (bursting or _needed(low, policy) > current):
        raw = needed
    elif bursting:
        raw = current
    else:
        raw = min(current, _needed(high, policy))
    # No history (a new model, or history lost): count the current units as recommended
    # now, so that losing the history delays a scale-down rather than hastening it.
    past = history.recommendations or ((now, current),)
    recommended = _push(past, now, raw, policy.scale_down_delay_seconds)
    last_demand_at = history.last_demand_at
    if demand_tps > 0 or last_demand_at is None:
        last_demand_at = now
    new_history = History(
        recommendations=recommended,
        last_demand_at=last_demand_at,
        stable=stable,
        sampled_at=now,
        burst_until=burst_until if bursting else None,
        window=latest,
    )
    idle_for = now - last_demand_at
    demand = (
        f"demand {stable.tps:.1f} TPS ({low:.1f}-{high:.1f} allowing for noise; last "
        f"{demand_seconds:g} s {demand_tps:.1f}) needs {_units(needed)} at "
        f"{_pct(policy.target_utilization)} target utilization of "
        f"{policy.tps_per_unit:g} TPS/unit"
    )
    if burst:
        demand += f"; a burst: the last {stable.seconds:g} s are above what noise explains"

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
    at_zero = History(
        recommendations=((now, 0),),
        last_demand_at=last_demand_at,
        stable=stable,
        sampled_at=now,
        window=latest,
    )

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
    if needed > ceiling and raw == needed:
        cap = f"max {ceiling}" if policy.max_units is not None else "1 (no maximum, min 0)"
        return result(ceiling, Cause.CEILING, f"{demand}; capped at {cap}")
    raw = min(max(raw, policy.min_units), ceiling)
    stable_units = min(recommended[0][1], ceiling)  # the maximum over the scale-down delay
    # With min 0, one unit stays until the model has been idle long enough for zero.
    floor = max(policy.min_units, 1)
    if raw <= floor and needed < floor and stable_units <= floor:
        why = (
            f"held at min {floor}"
            if policy.min_units
            else f"keeping 1 unit until idle for {policy.scale_to_zero_after_seconds:g} s (min 0)"
        )
        return result(floor, Cause.FLOOR, f"{demand}; {why}")
    if stable_units > raw:
        held_since = max(t for t, units in recommended if units >= stable_units)
        left = held_since + policy.scale_down_delay_seconds - now
        return result(
            stable_units,
            Cause.SCALE_DOWN_DELAYED,
            f"{demand}; keeping {stable_units} for the scale-down delay "
            f"({policy.scale_down_delay_seconds:g} s, {left:.0f} s left)",
        )
    if bursting and raw == current and needed < current:
        assert burst_until is not None
        return result(
            raw,
            Cause.BURST,
            f"{demand}; keeping {raw} after a burst ({burst_until - now:.0f} s left)",
        )
    if raw > needed:
        return result(
            raw,
            Cause.STEADY,
            f"{demand}; keeping {raw} while the rate may be {high:.1f} TPS, too much for "
            f"{_units(raw - 1)}",
        )
    if raw < needed:
        return result(
            raw,
            Cause.STEADY,
            f"{demand}; keeping {raw} while the rate may be {low:.1f} TPS, which "
            f"{_units(raw)} serve",
        )
    return result(raw, Cause.STEADY, demand)


def _changed(latest: Rate, previous: Rate, *, elapsed: float, before: Rate) -> Rate | None:
    """The recent count that shows a change of level, if one does: the latest window,
    else the latest and the previous window together (a step that filled only part of
    the previous window and, by chance, too little of the latest to show alone). The
    windows are joined only when the evaluations were about one window apart: sooner, the
    latest sample may be the previous one passed again; later, time lies between them."""
    if _differs(latest, before):
        return latest
    if previous.seconds > 0 and 0.9 * latest.seconds <= elapsed <= 1.5 * latest.seconds:
        joined = Rate(
            latest.calls + previous.calls,
            latest.seconds + previous.seconds,
            latest.spread + previous.spread,
        )
        if _differs(joined, before):
            return joined
    return None


def _differs(latest: Rate, before: Rate) -> bool:
    """Whether a window's count is further from the stable rate than noise explains.

    On the square-root scale a Poisson count is nearly normal with a variance of 1/4
    whatever its mean (Anscombe), so one threshold serves 3 calls and 3000 alike and
    the rare chance excursions of small counts are not mistaken for changes. The
    stable rate's own noise widens the test by the ratio of the two exposures.
    """
    if before.seconds <= 0:
        return False
    expected = before.tps * latest.seconds
    distance = 2 * (math.sqrt(latest.calls + 0.375) - math.sqrt(expected + 0.375))
    return abs(distance) > CHANGE_SIGMAS * math.sqrt(
        1 + latest.seconds * before.spread / before.seconds**2
    )


def _units_for(demand_tps: float, tps_per_unit: float) -> int:
    return max(math.ceil(demand_tps / tps_per_unit - _EPSILON), 0)


def _needed(rate: float, policy: Policy) -> int:
    """Units for `rate` at the target utilization, and enough that the calls of one
    second fit the units' full TPS but in `SECOND_SIGMAS` of Poisson noise."""
    return max(
        _units_for(rate, policy.tps_per_unit * policy.target_utilization),
        _units_for(rate + SECOND_SIGMAS * math.sqrt(rate), policy.tps_per_unit),
    )


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
