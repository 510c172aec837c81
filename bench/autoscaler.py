"""Autoscaler replay: `kiu.policy.scaling` over demand traces, against static fleets and an HPA.

Deterministic (seeded traces, no clock, no I/O): the same code and settings give
the same figures on any machine. Time advances in one-second steps:

* the trace gives the calls offered in each second (Poisson around a rate curve);
* every evaluation period the scaler sees the demand of the period just ended and
  decides a desired count; added units come into service `startup` seconds after
  the decision; removed units leave service at once (starting ones first);
* each second admits at most `in-service units x tps` calls; the rest is
  throttled (no retries: the trace is what independent callers offer);
* unit-hours integrate the units that exist (in service + starting), and,
  separately, those in service (what kiu bills).

Scalers compared on every trace, in the same run:

* ``kiu``: `scaling.recommend` with its defaults, at the operator's evaluation
  period (`kiu.controller.config.Config`), and again at 15 s (the HPA's period);
  ``kiu-<period>s-rate1m`` sees demand averaged over the last minute, as the
  operator's `--prometheus-url` mode gets it from ``rate(...[1m])``;
* ``static-peak``: what a user of the reference service provisions,
  ``ceil(peak / tps)`` units, where peak is the highest one-minute mean demand;
* ``static-peak-70``: a static fleet with kiu's 70 % headroom,
  ``ceil(peak / (0.7 tps))``;
* ``hpa``: the Kubernetes HPA algorithm with default behaviour (15 s sync, 10 %
  tolerance both ways, scale-up by max(100 %, 4 pods) per 15 s, 300 s scale-down
  stabilisation, unready pods counted at 0 on the way up), scaling a per-pod
  requests-per-second metric with a target of 70 % of a unit's TPS. Variant
  ``hpa-served`` sees the calls served per pod (what a pod-level metric such as
  CPU or a server-side counter sees: throttled calls are invisible); variant
  ``hpa-offered`` sees the offered calls, the same signal kiu uses, so the
  difference to kiu is the algorithm alone. Both see an exact metric over the
  last sync period (a real metrics pipeline adds lag, so this flatters the HPA).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from bench import common
from kiu.controller.config import Config
from kiu.policy import scaling

NAME = "autoscaler"
TPS = 5.0  # calls per second one unit serves
STARTUP = 60  # seconds from the decision to add a unit until it is in service
TARGET = 0.7  # kiu's default target utilization; the HPA's target is set to the same
MAX_UNITS = 100
MIN_UNITS = 1  # the HPA cannot go below 1 by default; kiu uses the same floor
HPA_PERIOD = 15
HPA_TOLERANCE = 0.1
HPA_DOWN_WINDOW = 300.0
KIU_PERIOD = int(Config().evaluation_period)
#: The evaluation period kiu's previous rule shipped with: the "previous" baseline is
#: the rule and period users ran before, and the new policy is also shown at it.
PREVIOUS_PERIOD = 5
PREVIOUS = f"kiu-{PREVIOUS_PERIOD}s-previous"
#: Evaluation periods whose first decision after a step is compared (a period sweep).
SWEEP_PERIODS = (1, 2, 3, 5)
#: Seconds after a step within which the first scale-up decision is due.
FIRST_DECISION_S = 5
#: Throttled share of the business-week target, at which the fewest units are computed.
FRONTIER_SHARE = 0.0002
SEED = 20240611
#: Each seeded trace is drawn anew for every seed; figures are the median over them.
SEEDS = (SEED, SEED + 1000, SEED + 2000)
DAY = 86_400
HOUR = 3_600

# --------------------------------------------------------------------------- traces


@dataclass
class Trace:
    name: str
    description: str
    rate: np.ndarray  # the rate curve, calls/s, one value per second
    offered: np.ndarray  # calls offered in each second
    step: tuple[int, float, float] | None = None  # (second, rate before, rate after)
    seeded: bool = True  # drawn at random (else the same for every seed)

    @property
    def seconds(self) -> int:
        return len(self.offered)

    @property
    def peak(self) -> float:
        """The highest one-minute mean of the offered demand (what a dashboard shows)."""
        minutes = self.offered[: self.seconds // 60 * 60].reshape(-1, 60).mean(axis=1)
        return float(minutes.max())


def _poisson(rate: np.ndarray, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).poisson(np.maximum(rate, 0.0)).astype(float)


def steady(seed: int = SEED) -> Trace:
    rate = np.full(2 * HOUR, 12.0)
    return Trace("steady", "12 TPS for 2 h (Poisson arrivals)", rate, _poisson(rate, seed + 1))


def step_up(offset: int = 7, seed: int = SEED) -> Trace:
    at = 30 * 60 + offset
    rate = np.where(np.arange(90 * 60) < at, 3.0, 15.0)
    return Trace(
        "step-up",
        "3 TPS (below one unit's 5) for 30 min, then 15 TPS (three units' worth) for 60 min",
        rate,
        _poisson(rate, seed + 2),
        step=(at, 3.0, 15.0),
    )


def step_down(offset: int = 7, seed: int = SEED) -> Trace:
    at = 30 * 60 + offset
    rate = np.where(np.arange(90 * 60) < at, 15.0, 3.0)
    return Trace(
        "step-down",
        "15 TPS for 30 min, then 3 TPS for 60 min",
        rate,
        _poisson(rate, seed + 3),
        step=(at, 15.0, 3.0),
    )


# Fraction of the weekday peak by hour of day (linear in between): nights near zero,
# a morning ramp, office hours with a lunch dip, an evening tail. Weekends are low.
_WEEKDAY = [
    (0, 0.03), (5, 0.02), (6, 0.05), (7, 0.20), (8, 0.55), (9, 0.85), (10, 0.95), (11, 1.0),
    (12, 0.80), (13, 0.85), (14, 0.95), (15, 1.0), (16, 0.90), (17, 0.65), (18, 0.35),
    (19, 0.20), (20, 0.12), (21, 0.08), (22, 0.05), (24, 0.03),
]  # fmt: skip
_WEEKEND = [(0, 0.02), (8, 0.04), (10, 0.10), (13, 0.15), (16, 0.12), (19, 0.08), (24, 0.02)]
DIURNAL_PEAK = 60.0


def diurnal(seed: int = SEED) -> Trace:
    """A business week: Monday to Friday office hours, nights and the weekend near zero."""
    seconds = np.arange(7 * DAY)
    hour = (seconds % DAY) / HOUR
    weekday = np.interp(hour, *zip(*_WEEKDAY, strict=True))
    weekend = np.interp(hour, *zip(*_WEEKEND, strict=True))
    shape = np.where(seconds // DAY < 5, weekday, weekend)
    # Minute-to-minute variation of +-5 % (smoothed log-normal) on top of the shape.
    rng = np.random.default_rng(seed + 4)
    wobble = np.exp(rng.normal(0.0, 0.05, size=len(seconds) // 60 + 1))
    wobble = np.convolve(wobble, np.ones(5) / 5, mode="same")
    rate = DIURNAL_PEAK * shape * np.repeat(wobble, 60)[: len(seconds)]
    return Trace(
        "diurnal",
        "one business week, peak 60 TPS: weekdays ramp 07-09 h, office hours 09-17 h with a "
        "lunch dip, evening tail, nights 2-3 % of peak; weekends 2-15 %; +-5 % minute-level "
        "variation, Poisson arrivals",
        rate,
        _poisson(rate, seed + 5),
    )


def diurnal_sine() -> Trace:
    """The sinusoid of docs/scaling.md: two days between 0 and 60 TPS, no noise."""
    seconds = np.arange(2 * DAY)
    rate = DIURNAL_PEAK / 2 * (1 - np.cos(2 * math.pi * seconds / DAY))
    return Trace(
        "diurnal-sine",
        "two days of a sinusoid between 0 and 60 TPS, exact rates (the trace of "
        "docs/scaling.md; mean = 50 % of peak: a wide daily peak, less favourable to "
        "autoscaling than office hours)",
        rate,
        rate.copy(),
        seeded=False,
    )


def spiky(seed: int = SEED) -> Trace:
    rng = np.random.default_rng(seed + 6)
    seconds = 4 * HOUR
    rate = np.full(seconds, 4.0)
    t = int(rng.exponential(600))
    while t < seconds:
        length = int(rng.uniform(10, 60))
        rate[t : t + length] = rng.uniform(15, 30)
        t += length + int(rng.exponential(600))
    return Trace(
        "spiky",
        "4 TPS for 4 h with bursts to 15-30 TPS lasting 10-60 s, about one every 10 min",
        rate,
        _poisson(rate, seed + 7),
    )


def slow_ramp(seed: int = SEED) -> Trace:
    rate = np.concatenate([np.linspace(2.0, 50.0, 4 * HOUR), np.full(HOUR // 2, 50.0)])
    return Trace(
        "slow-ramp",
        "2 to 50 TPS linearly over 4 h, then 30 min at 50 TPS",
        rate,
        _poisson(rate, seed + 8),
    )


def traces(seed: int = SEED) -> list[Trace]:
    return [
        steady(seed),
        step_up(seed=seed),
        step_down(seed=seed),
        diurnal(seed),
        diurnal_sine(),
        spiky(seed),
        slow_ramp(seed),
    ]


# -------------------------------------------------------------------------- scalers


@dataclass(frozen=True)
class Facts:
    """What a scaler sees at an evaluation."""

    now: float
    offered_tps: float  # offered over the period just ended
    offered_1m_tps: float  # offered over the last 60 s (what Prometheus' rate[1m] gives)
    served_tps: float  # admitted over the same period
    ready: int  # units in service
    starting: int
    desired: int  # the desired count decided last time


class Scaler(Protocol):
    name: str
    period: int

    def initial(self, tps: float) -> int: ...

    def decide(self, facts: Facts) -> int: ...


@dataclass
class Static:
    name: str
    units: int
    period: int = 60

    def initial(self, tps: float) -> int:
        return self.units

    def decide(self, facts: Facts) -> int:
        return self.units


@dataclass
class Kiu:
    name: str
    period: int
    rate_1m: bool = False  # demand as Prometheus' rate[1m] (operator's --prometheus-url)
    policy: scaling.Policy = field(
        default_factory=lambda: scaling.Policy(
            tps_per_unit=TPS, min_units=MIN_UNITS, max_units=MAX_UNITS
        )
    )
    history: scaling.History = field(default_factory=scaling.History)

    def initial(self, tps: float) -> int:
        return max(MIN_UNITS, math.ceil(tps / (TPS * self.policy.target_utilization) - 1e-9))

    def decide(self, facts: Facts) -> int:
        rec = scaling.recommend(
            policy=self.policy,
            demand_tps=facts.offered_1m_tps if self.rate_1m else facts.offered_tps,
            demand_seconds=min(60.0, facts.now) if self.rate_1m else float(self.period),
            current=facts.desired,
            running=True,
            history=self.history,
            now=facts.now,
        )
        self.history = rec.history
        return rec.desired


@dataclass
class Previous:
    """kiu's previous rule, the baseline of the current one: size from the last period's
    demand alone; up at once to ceil(demand / (0.7 tps)); down to the count demand needs
    at 63 % (the target less a 10 % tolerance), as the maximum of such recommendations
    over the last 300 s (the HPA's stabilisation window)."""

    name: str
    period: int
    tolerance: float = 0.1
    delay: float = 300.0
    window: list[tuple[float, int]] = field(default_factory=list)

    def initial(self, tps: float) -> int:
        return max(MIN_UNITS, math.ceil(tps / (TPS * TARGET) - 1e-9))

    def decide(self, facts: Facts) -> int:
        current, demand = facts.desired, facts.offered_tps
        needed = math.ceil(demand / (TPS * TARGET) - 1e-9)
        if needed > current:
            raw = needed
        else:
            raw = min(current, math.ceil(demand / (TPS * TARGET * (1 - self.tolerance)) - 1e-9))
        if not self.window:
            self.window = [(facts.now, current)]
        self.window = [(t, u) for t, u in self.window if t > facts.now - self.delay]
        self.window.append((facts.now, raw))
        return min(max(max(u for _, u in self.window), raw, MIN_UNITS), MAX_UNITS)


@dataclass
class Hpa:
    """The HPA v2 replica calculation and default behaviour for a Pods metric."""

    name: str
    served: bool  # scale on served calls per pod (else offered)
    period: int = HPA_PERIOD
    recommendations: list[tuple[float, int]] = field(default_factory=list)

    def initial(self, tps: float) -> int:
        return max(MIN_UNITS, math.ceil(tps / (TPS * TARGET) - 1e-9))

    def decide(self, facts: Facts) -> int:
        current = facts.desired
        raw = self._replicas(facts)
        # Stabilisation: scale-up window 0 s, scale-down window 300 s (max of the window).
        now = facts.now
        self.recommendations = [
            (t, r) for t, r in self.recommendations if t > now - HPA_DOWN_WINDOW
        ] + [(now, raw)]
        down = max(r for _, r in self.recommendations)
        wanted = current
        wanted = max(wanted, raw)  # up: the newest recommendation (window 0)
        wanted = min(wanted, down)
        # Rate limits per 15 s: up by max(100 %, 4 pods); down by 100 %.
        wanted = min(wanted, max(2 * current, current + 4))
        return min(max(wanted, MIN_UNITS), MAX_UNITS)

    def _replicas(self, facts: Facts) -> int:
        """replica_calculator.go GetMetricReplicas for a Pods metric (no missing metrics)."""
        current, ready, others = facts.desired, facts.ready, facts.starting
        total = facts.served_tps if self.served else facts.offered_tps
        target = TPS * TARGET
        if ready == 0:
            return current  # no metric at all: the HPA keeps the count
        ratio = total / ready / target
        if others == 0:
            if abs(1.0 - ratio) <= HPA_TOLERANCE:
                return current
            return math.ceil(ratio * ready - 1e-9)
        # Pods without a metric yet count as 0 on the way up, as the target on the way down.
        if ratio > 1.0:
            new_ratio = total / (ready + others) / target
        else:
            new_ratio = (total + others * target) / (ready + others) / target
        if (
            abs(1.0 - new_ratio) <= HPA_TOLERANCE
            or (ratio < 1.0 < new_ratio)
            or (ratio > 1.0 > new_ratio)
        ):
            return current
        new = math.ceil(new_ratio * (ready + others) - 1e-9)
        if (new_ratio < 1.0 and new > current) or (new_ratio > 1.0 and new < current):
            return current
        return new


def scalers(trace: Trace) -> list[Scaler]:
    peak = trace.peak
    return [
        Kiu(f"kiu-{KIU_PERIOD}s", KIU_PERIOD),
        Kiu("kiu-15s", 15),
        Kiu(f"kiu-{KIU_PERIOD}s-rate1m", KIU_PERIOD, rate_1m=True),
        *(
            [Kiu(f"kiu-{PREVIOUS_PERIOD}s", PREVIOUS_PERIOD)]
            if PREVIOUS_PERIOD != KIU_PERIOD
            else []
        ),
        Previous(PREVIOUS, PREVIOUS_PERIOD),
        Static("static-peak", max(1, math.ceil(peak / TPS - 1e-9))),
        Static("static-peak-70", max(1, math.ceil(peak / (TPS * TARGET) - 1e-9))),
        Hpa("hpa-served", served=True),
        Hpa("hpa-offered", served=False),
    ]


# ----------------------------------------------------------------------- simulation


@dataclass
class Run:
    """One scaler over one trace: totals, decisions and per-minute series for the plot."""

    unit_seconds: float = 0.0  # in service + starting
    in_service_seconds: float = 0.0
    offered: float = 0.0
    throttled: float = 0.0
    decisions: list[tuple[int, int, int]] = field(default_factory=list)  # (t, from, to)
    capacity_series: list[float] = field(default_factory=list)  # per minute
    desired_series: list[int] = field(default_factory=list)
    in_service: np.ndarray | None = None  # per second
    throttled_per_second: np.ndarray | None = None


def simulate(
    trace: Trace, scaler: Scaler, *, startup: int = STARTUP, initial: int | None = None
) -> Run:
    """Replay `trace` through `scaler`. Without `initial`, the scaler starts at the units
    it would have for the first five minutes' demand (no start-up transient)."""
    offered = trace.offered
    n = trace.seconds
    run = Run()
    if initial is None:
        initial = scaler.initial(float(offered[:300].mean()))
    desired = in_service = initial
    pending: list[list[int]] = []  # [ready_at, count], oldest first
    served = np.zeros(n)
    in_service_series = np.zeros(n, dtype=np.int32)
    throttled_series = np.zeros(n)
    period = scaler.period
    cum = np.concatenate([[0.0], np.cumsum(offered)])
    served_sum = 0.0  # running sum of served over the current period
    for t in range(n):
        while pending and pending[0][0] <= t:
            in_service += pending.pop(0)[1]
        if t > 0 and t % period == 0:
            facts = Facts(
                now=float(t),
                offered_tps=float(cum[t] - cum[t - period]) / period,
                offered_1m_tps=float(cum[t] - cum[max(t - 60, 0)]) / min(t, 60),
                served_tps=served_sum / period,
                ready=in_service,
                starting=sum(c for _, c in pending),
                desired=desired,
            )
            served_sum = 0.0
            wanted = scaler.decide(facts)
            if wanted > desired:
                pending.append([t + startup, wanted - desired])
            elif wanted < desired:
                drop = desired - wanted
                while drop and pending:  # starting units go first, newest first
                    take = min(drop, pending[-1][1])
                    pending[-1][1] -= take
                    drop -= take
                    if pending[-1][1] == 0:
                        pending.pop()
                in_service -= drop
            if wanted != desired:
                run.decisions.append((t, desired, wanted))
            desired = wanted
        capacity = in_service * TPS
        demand = offered[t]
        admitted = min(demand, capacity)
        served[t] = admitted
        served_sum += admitted
        throttled_series[t] = demand - admitted
        in_service_series[t] = in_service
        run.in_service_seconds += in_service
        run.unit_seconds += in_service + sum(c for _, c in pending)
        if t % 60 == 59:
            run.capacity_series.append(capacity)
            run.desired_series.append(desired)
    run.offered = float(offered.sum())
    run.throttled = float(throttled_series.sum())
    run.in_service = in_service_series
    run.throttled_per_second = throttled_series
    return run


def figures(trace: Trace, run: Run) -> dict[str, Any]:
    ups = [d for d in run.decisions if d[2] > d[1]]
    downs = [d for d in run.decisions if d[2] < d[1]]
    directions = [1 if d[2] > d[1] else -1 for d in run.decisions]
    reversals = sum(1 for a, b in itertools.pairwise(directions) if a != b)
    assert run.in_service is not None
    out: dict[str, Any] = {
        "unit_hours": round(run.unit_seconds / HOUR, 2),
        "unit_hours_in_service": round(run.in_service_seconds / HOUR, 2),
        "throttled_pct": round(100 * run.throttled / run.offered, 3) if run.offered else 0.0,
        "scale_ups": len(ups),
        "scale_downs": len(downs),
        "reversals": reversals,
        "changes_between_1_and_2_units": sum(1 for d in run.decisions if max(d[1], d[2]) <= 2),
        "changes_after_10_min": sum(1 for d in run.decisions if d[0] >= 600),
        "max_units": int(run.in_service.max()),
    }
    if trace.step is not None:
        out.update(step_figures(trace, run))
    return out


def step_figures(trace: Trace, run: Run) -> dict[str, Any]:
    assert trace.step is not None
    assert run.in_service is not None
    assert run.throttled_per_second is not None
    at, before, after = trace.step
    up = after > before
    decisions = [d for d in run.decisions if d[0] >= at and (d[2] > d[1]) == up]
    first = decisions[0][0] - at if decisions else None
    out: dict[str, Any] = {"first_decision_s": first}
    if up:
        enough = np.nonzero(run.in_service[at:] * TPS >= after)[0]
        out["to_capacity_s"] = int(enough[0]) if len(enough) else None
        needed = math.ceil(after / (TPS * TARGET) - 1e-9)
        settled = np.nonzero(run.in_service[at:] >= needed)[0]
        out["to_target_s"] = int(settled[0]) if len(settled) else None
        window = slice(at, at + 600)
        offered = float(trace.offered[window].sum())
        out["throttled_first_10min_pct"] = round(
            100 * float(run.throttled_per_second[window].sum()) / offered, 2
        )
    else:
        needed = max(MIN_UNITS, math.ceil(after / (TPS * TARGET) - 1e-9))
        excess = np.maximum(run.in_service[at:] - needed, 0)
        out["excess_unit_hours_after_step"] = round(float(excess.sum()) / HOUR, 3)
    return out


def phase_sweep(
    make: Callable[[int], Trace], pick: Callable[[Trace], list[Scaler]] = scalers
) -> dict[str, Any]:
    """The step up at each of 15 offsets (one per second) against the evaluation times.

    For each scaler: the first scale-up decision after the step, in seconds and in
    evaluations, and when the first evaluation whose whole window lies after the
    step took place (no scaler can have measured the full step before it).
    """
    per: dict[str, list[dict[str, Any]]] = {}
    for offset in range(15):
        trace = make(offset)
        assert trace.step is not None
        at = trace.step[0]
        for scaler in pick(trace):
            if isinstance(scaler, Static):
                continue
            f = step_figures(trace, simulate(trace, scaler))
            p = scaler.period
            first_eval = (at // p + 1) * p
            window = 60 if isinstance(scaler, Kiu) and scaler.rate_1m else p
            full = math.ceil((at + window) / p) * p
            decision = f["first_decision_s"]
            per.setdefault(scaler.name, []).append(
                {
                    "offset_s": offset,
                    "first_decision_s": decision,
                    "evaluations": None
                    if decision is None
                    else (at + decision - first_eval) // p + 1,
                    "first_full_window_s": full - at,
                    "to_capacity_s": f.get("to_capacity_s"),
                }
            )
    out: dict[str, Any] = {}
    for name, rows in per.items():
        decisions = [
            r["first_decision_s"] if r["first_decision_s"] is not None else math.inf for r in rows
        ]
        capacity = [
            r["to_capacity_s"] if r["to_capacity_s"] is not None else math.inf for r in rows
        ]
        period = next(s.period for s in pick(make(0)) if s.name == name)
        out[name] = {
            "period_s": period,
            "first_decision_max_s": max(decisions),
            "first_decision_mean_s": round(sum(decisions) / len(decisions), 2),
            "within_one_period": sum(d <= period for d in decisions),
            "by_first_full_window": sum(
                r["first_decision_s"] is not None
                and r["first_decision_s"] <= r["first_full_window_s"]
                for r in rows
            ),
            "phases": len(rows),
            "to_capacity_max_s": max(capacity),
            "rows": rows,
        }
    return out


# ---------------------------------------------------------------------------- run


def clairvoyant(trace: Trace) -> dict[str, dict[str, float]]:
    """Fleets that know the trace's true rate every second and start units instantly: the
    best any scaler sizing by the same rule can do (a frontier, not a scaler)."""
    rate, offered = trace.rate, trace.offered
    rules = {
        "70 % target": np.ceil(rate / (TPS * TARGET) - 1e-9),
        "kiu's rule": np.maximum(
            np.ceil(rate / (TPS * TARGET) - 1e-9),
            np.ceil((rate + scaling.SECOND_SIGMAS * np.sqrt(rate)) / TPS - 1e-9),
        ),
    }
    out = {}
    for name, units in rules.items():
        units = np.maximum(units, MIN_UNITS)
        throttled = float(np.maximum(offered - units * TPS, 0.0).sum())
        out[name] = {
            "unit_hours": round(float(units.sum()) / HOUR, 2),
            "throttled_pct": round(100 * throttled / float(offered.sum()), 3),
        }
    hours, share = fewest_units(rate, throttled_share=FRONTIER_SHARE)
    out[f"fewest units, {100 * FRONTIER_SHARE:g} % throttled"] = {
        "unit_hours": round(hours, 2),
        "throttled_pct": round(100 * share, 3),
    }
    return out


def fewest_units(rate: np.ndarray, *, throttled_share: float) -> tuple[float, float]:
    """The fewest unit-hours, and the expected throttled share they give, of a fleet that
    knows the rate of every second, starts units instantly and throttles at most
    `throttled_share` of the expected calls: a lower bound for every scaler.

    Poisson calls at rate r throttled by n units: E[(N - c)+] = r P(N >= c - 1) - c P(N >= c)
    with c = n x TPS. Seconds trade units for throttled calls at one price (a Lagrange
    multiplier, found by bisection), which is optimal because the throttled calls fall
    ever more slowly as units are added.
    """
    rates, per_rate = np.unique(np.round(rate, 2), return_counts=True)
    top = int(rates.max() * 3 + 60)
    k = np.arange(top + 1)
    log_factorial = np.cumsum(np.log(np.maximum(k, 1)))
    with np.errstate(divide="ignore"):
        log_pmf = -rates[:, None] + k[None, :] * np.log(rates)[:, None] - log_factorial[None, :]
    pmf = np.where(rates[:, None] > 0, np.exp(log_pmf), (k == 0)[None, :].astype(float))
    at_least = np.cumsum(pmf[:, ::-1], axis=1)[:, ::-1]  # P(N >= k)
    at_least = np.concatenate([np.ones((len(rates), 1)), at_least, np.zeros((len(rates), 1))], 1)
    units = np.arange(math.ceil(2 * rates.max() / TPS) + 6)
    calls = np.minimum((units * TPS).astype(int), top + 1)  # c; column c + 1 is P(N >= c)
    throttled = np.maximum(rates[:, None] * at_least[:, calls] - calls * at_least[:, calls + 1], 0)
    total = float((rates * per_rate).sum())

    def fleet(price: float) -> tuple[float, float]:
        cost = units[None, :] + price * throttled
        cost[:, :MIN_UNITS] = np.inf
        chosen = cost.argmin(axis=1)
        lost = float((throttled[np.arange(len(rates)), chosen] * per_rate).sum())
        return float((chosen * per_rate).sum()) / HOUR, lost / total

    low, high = 1e-3, 1e9
    for _ in range(80):
        middle = math.sqrt(low * high)
        low, high = (middle, high) if fleet(middle)[1] > throttled_share else (low, middle)
    return fleet(high)


def _median(values: list[Any]) -> Any:
    """The median of figures from the seeds (None if any is None: not measured)."""
    if any(v is None for v in values):
        return None
    if not all(isinstance(v, int | float) for v in values):
        return values[0]
    middle = float(np.median(values))
    if all(isinstance(v, int) for v in values) and middle.is_integer():
        return int(middle)
    return middle


def combine(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Figures of several seeds: the median of each, and `range` = [min, max] of each."""
    out: dict[str, Any] = {}
    spread: dict[str, list[Any]] = {}
    for key in per_seed[0]:
        values = [f[key] for f in per_seed]
        if isinstance(values[0], dict):
            out[key] = combine(values)
            continue
        out[key] = _median(values)
        if out[key] is not None and isinstance(out[key], int | float) and len(values) > 1:
            spread[key] = [min(values), max(values)]
    if spread:
        out["range"] = spread
    out["seeds"] = len(per_seed)
    return out


def _by_period(trace: Trace) -> list[Scaler]:
    """The new policy at each evaluation period of the period sweep."""
    return [Kiu(f"kiu-{p}s", p) for p in SWEEP_PERIODS]


def _combine_sweeps(sweeps: list[dict[str, Any]]) -> dict[str, Any]:
    """Phase sweeps of several seeds: figures combined, the first seed's rows kept."""
    return {
        name: {
            **combine([{k: v for k, v in s[name].items() if k != "rows"} for s in sweeps]),
            "rows": sweeps[0][name]["rows"],
        }
        for name in sweeps[0]
    }


def _one_seed(
    all_traces: list[Trace], runs: dict[str, dict[str, Run]] | None
) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for trace in all_traces:
        common.log(f"autoscaler: {trace.name}")
        entry: dict[str, Any] = {}
        for scaler in scalers(trace):
            outcome = simulate(trace, scaler)
            if runs is not None:
                runs.setdefault(trace.name, {})[scaler.name] = outcome
            entry[scaler.name] = figures(trace, outcome)
            if isinstance(scaler, Static):
                entry[scaler.name]["units"] = scaler.units
        for fig in entry.values():
            for name, key in (
                ("static-peak", "vs_static_peak"),
                ("static-peak-70", "vs_static_peak_70"),
                ("hpa-served", "vs_hpa_served"),
                (PREVIOUS, "vs_previous"),
            ):
                fig[key] = round(fig["unit_hours"] / entry[name]["unit_hours"], 3)
        results[trace.name] = {"scalers": entry, "clairvoyant": clairvoyant(trace)}
    return results


def run(*, quick: bool = False, seeds: tuple[int, ...] = SEEDS) -> dict[str, Any]:
    started = common.machine()
    if quick:
        seeds = seeds[:1]
    runs: dict[str, dict[str, Run]] = {}
    per_seed: list[dict[str, dict[str, Any]]] = []
    sweeps: list[dict[str, Any]] = []
    period_sweeps: list[dict[str, Any]] = []
    first: list[Trace] = []
    for n, seed in enumerate(seeds):
        common.log(f"autoscaler: seed {seed}")
        drawn = [t for t in traces(seed) if n == 0 or t.seeded]
        if quick:
            drawn = [t for t in drawn if t.name != "diurnal"]
        if n == 0:
            first = drawn
        per_seed.append(_one_seed(drawn, runs if n == 0 else None))
        common.log("autoscaler: phase sweep of the step")
        sweeps.append(phase_sweep(functools.partial(step_up, seed=seed)))
        common.log("autoscaler: phase sweep of the step at other evaluation periods")
        period_sweeps.append(phase_sweep(functools.partial(step_up, seed=seed), pick=_by_period))
    results: dict[str, Any] = {}
    for trace in first:
        drawn_by_seed = [r[trace.name] for r in per_seed if trace.name in r]
        results[trace.name] = {
            "description": trace.description,
            "seconds": trace.seconds,
            "peak_tps": round(trace.peak, 2),
            "mean_tps": round(float(trace.offered.mean()), 2),
            "mean_to_peak": round(float(trace.offered.mean()) / trace.peak, 3),
            "seeds": len(drawn_by_seed),
            "scalers": {
                name: combine([r["scalers"][name] for r in drawn_by_seed])
                for name in drawn_by_seed[0]["scalers"]
            },
            "clairvoyant": combine([r["clairvoyant"] for r in drawn_by_seed]),
        }
    sweep = _combine_sweeps(sweeps)
    startup_sensitivity: dict[str, Any] = {}
    if not quick:
        trace = diurnal(seeds[0])
        for delay in (30, 120, 300):
            common.log(f"autoscaler: diurnal with a {delay} s start-up")
            startup_sensitivity[str(delay)] = {}
            for scaler in (
                Kiu(f"kiu-{KIU_PERIOD}s", KIU_PERIOD),
                Previous(PREVIOUS, PREVIOUS_PERIOD),
                Hpa("hpa-served", served=True),
            ):
                fig = figures(trace, simulate(trace, scaler, startup=delay))
                startup_sensitivity[str(delay)][scaler.name] = {
                    k: fig[k] for k in ("unit_hours", "throttled_pct")
                }
    result = {
        "name": NAME,
        "machine": started,
        "settings": {
            "tps_per_unit": TPS,
            "startup_seconds": STARTUP,
            "target_utilization": TARGET,
            "min_units": MIN_UNITS,
            "max_units": MAX_UNITS,
            "kiu_evaluation_period_s": KIU_PERIOD,
            "previous_evaluation_period_s": PREVIOUS_PERIOD,
            "kiu_policy": "scaling.Policy defaults (70 % target, 60 s stable window, 300 s "
            "scale-down delay)",
            "previous_policy": "demand of the last period; up at once at 70 %, down at 63 % "
            "(10 % tolerance), maximum over a 300 s scale-down delay",
            "hpa": {
                "sync_period_s": HPA_PERIOD,
                "tolerance": HPA_TOLERANCE,
                "scale_down_stabilization_s": HPA_DOWN_WINDOW,
                "scale_up_policies": "max(100 %, 4 pods) per 15 s, no stabilisation",
                "scale_down_policy": "100 % per 15 s",
                "target_per_pod_tps": TPS * TARGET,
            },
            "static_peak": "ceil(peak / tps); peak = highest one-minute mean of the trace",
            "static_peak_70": "ceil(peak / (0.7 tps))",
            "seeds": list(seeds),
            "quick": quick,
        },
        "traces": results,
        "step_phase_sweep": sweep,
        "period_sweep": _combine_sweeps(period_sweeps),
        "startup_sensitivity_diurnal": startup_sensitivity,
        "targets": targets(results, sweep),
    }
    plot(first, runs)
    return result


def targets(results: dict[str, Any], sweep: dict[str, Any]) -> dict[str, Any]:
    """The new policy against its targets; baselines are the same run's other scalers."""
    kiu, previous = f"kiu-{KIU_PERIOD}s", PREVIOUS
    out: dict[str, Any] = {}
    steady_ = results["steady"]["scalers"]
    out["steady_unit_hours_vs_static_peak_70"] = common.target(
        _figure(steady_[kiu], "vs_static_peak_70"),
        at_most=1.05,
        text="<= 1.05 of ceil(peak/(0.7 tps)) units, steady 12 TPS",
    )
    out["steady_throttled_pct_above_static_peak_70"] = common.target(
        round(steady_[kiu]["throttled_pct"] - steady_["static-peak-70"]["throttled_pct"], 3),
        at_most=0.0,
        text="throttled no higher than static-peak-70 (value: difference, points)",
    )
    out["steady_changes_after_settling"] = common.target(
        _figure(steady_[kiu], "changes_after_10_min"),
        at_most=0,
        text="0 changes of the count after the first 10 min, steady 12 TPS",
    )
    if "diurnal" in results:
        d = results["diurnal"]["scalers"][kiu]
        out["diurnal_unit_hours_vs_hpa_served"] = common.target(
            _figure(d, "vs_hpa_served"), at_most=0.9, text="<= 0.90 of hpa-served, business week"
        )
        out["diurnal_throttled_pct"] = common.target(
            _figure(d, "throttled_pct"), at_most=0.02, text="<= 0.02 % of demand throttled"
        )
        out["diurnal_reversals"] = common.target(
            _figure(d, "reversals"), at_most=30, text="<= 30 changes of direction in the week"
        )
        out["diurnal_unit_hours_vs_static_peak"] = common.target(
            _figure(d, "vs_static_peak"), at_most=0.6, text="<= 0.60 of ceil(peak/tps) units"
        )
    sine = results["diurnal-sine"]["scalers"][kiu]
    out["diurnal_sine_unit_hours_vs_static_peak"] = common.target(
        _figure(sine, "vs_static_peak"),
        at_most=0.6,
        text="<= 0.60 of ceil(peak/tps) units (sine trace)",
    )
    out["first_decision_by_first_full_window"] = common.target(
        sweep[kiu]["phases"] - sweep[kiu]["by_first_full_window"],
        at_most=0,
        text="no later than the first evaluation whose window lies wholly after the step "
        "(value: phases where it came later)",
    )
    out["first_decision_worst_phase"] = common.target(
        _figure(sweep[kiu], "first_decision_max_s"),
        at_most=FIRST_DECISION_S,
        text=f"<= {FIRST_DECISION_S} s after the step 3 -> 15 TPS in all 15 phases (worst phase)",
    )
    out["to_capacity_vs_previous_s"] = common.target(
        sweep[kiu]["to_capacity_max_s"] - sweep[previous]["to_capacity_max_s"],
        at_most=0,
        text="worst time to capacity no later than the previous policy (value: difference, s)",
    )
    down = results["step-down"]["scalers"]
    out["step_down_excess_vs_previous"] = common.target(
        round(
            down[kiu]["excess_unit_hours_after_step"]
            - down[previous]["excess_unit_hours_after_step"],
            3,
        ),
        at_most=0.0,
        text="excess unit-hours after 15 -> 3 TPS no higher than the previous policy "
        "(value: difference)",
    )
    return out


def plot(all_traces: list[Trace], runs: dict[str, dict[str, Run]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(all_traces), 1, figsize=(11, 2.6 * len(all_traces)))
    kiu = f"kiu-{KIU_PERIOD}s"
    for ax, trace in zip(axes, all_traces, strict=True):
        minutes = trace.seconds // 60
        demand = trace.offered[: minutes * 60].reshape(-1, 60).mean(axis=1)
        scale = 60.0 if trace.seconds > 2 * DAY else 1.0
        unit = "h" if scale == 60.0 else "min"
        x = np.arange(minutes) / scale
        ax.plot(x, demand, color="black", lw=0.8, label="demand (TPS, 1-min mean)")
        for name, colour in (
            (kiu, "tab:blue"),
            (PREVIOUS, "tab:green"),
            ("hpa-served", "tab:orange"),
            ("static-peak", "tab:gray"),
        ):
            series = runs[trace.name][name].capacity_series[:minutes]
            ax.step(
                x[: len(series)],
                series,
                where="post",
                color=colour,
                lw=1.0,
                label=f"{name} capacity (in service x tps)",
            )
        ax.set_title(trace.name, fontsize=9, loc="left")
        ax.set_xlabel(unit, fontsize=8)
        ax.set_ylabel("TPS", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(common.png(NAME), dpi=90)
    plt.close(fig)


def _spread(f: dict[str, Any], key: str, fmt: str) -> str:
    """A median figure, with its min-max over the seeds when they differ."""
    value = f.get(key)
    if value is None:
        return "-"
    text = format(value, fmt)
    low, high = f.get("range", {}).get(key, (value, value))
    if low != high:
        text += f" [{format(low, fmt)}, {format(high, fmt)}]"
    return text


def _figure(f: dict[str, Any], key: str) -> common.Spread | float | None:
    """A combined figure as `common.spread` shapes it, for a target's verdict on the median."""
    value = f.get(key)
    if value is None or key not in f.get("range", {}):
        return value  # type: ignore[no-any-return]
    low, high = f["range"][key]
    return {"median": value, "min": low, "max": high, "n": f["seeds"]}


def summary(result: dict[str, Any]) -> str:
    settings = result["settings"]
    period = settings["kiu_evaluation_period_s"]
    kiu = f"kiu-{period}s"
    previous = f"kiu-{settings.get('previous_evaluation_period_s', period)}s-previous"
    traces_ = result["traces"]
    seeds = len(settings["seeds"])
    lines = [
        f"Replay of `kiu.policy.scaling` with its defaults against kiu's previous rule, "
        f"static fleets and an HPA-like rule, all computed in the same run (seeded traces, "
        f"simulated time; every seeded trace drawn with {seeds} seeds, figures are the "
        f"median, as `median [min, max]` where the seeds differ). {settings['tps_per_unit']:g} "
        f"TPS per unit; added units are in service {settings['startup_seconds']} s after the "
        f"decision; min {settings['min_units']} unit. Scalers: `{kiu}` (the operator's "
        f"default evaluation period, demand over the last period), `kiu-15s` (the HPA's "
        f"period), `{kiu}-rate1m` (demand as Prometheus' `rate[1m]`, the operator's "
        f"`--prometheus-url` mode), "
        + (
            f"`kiu-{settings['previous_evaluation_period_s']}s` (the same policy at the "
            f"previous default period), "
            if settings.get("previous_evaluation_period_s", period) != period
            else ""
        )
        + f"`{previous}` (kiu's previous rule: "
        f"{settings['previous_policy']}), `static-peak` = ceil(peak / tps) units (what a "
        f"user of the reference service provisions), `static-peak-70` = ceil(peak / (0.7 "
        f"tps)) (the same 30 % headroom as kiu), `hpa-served` / `hpa-offered` (Kubernetes "
        f"HPA algorithm and default behaviour on served / offered calls per pod, target "
        f"70 %). Peak = highest one-minute mean of the trace. Unit-hours count units in "
        f"service and starting. Throttled = calls beyond in-service capacity, per second, "
        f"no retries.",
        "",
        "Traces:",
        "",
    ]
    for name, entry in traces_.items():
        lines.append(
            f"- `{name}`: {entry['description']} (peak {entry['peak_tps']:.1f} TPS, mean "
            f"{entry['mean_tps']:.1f} TPS)."
        )
    lines += [
        "",
        "| trace | scaler | unit-hours | vs static-peak-70 | vs hpa-served | throttled % "
        "| ups / downs | reversals | max units |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in traces_.items():
        for scaler, f in entry["scalers"].items():
            lines.append(
                f"| {name} | {scaler} | {_spread(f, 'unit_hours', '.1f')} "
                f"| {_spread(f, 'vs_static_peak_70', '.2f')} "
                f"| {_spread(f, 'vs_hpa_served', '.2f')} "
                f"| {_spread(f, 'throttled_pct', '.3f')} "
                f"| {_spread(f, 'scale_ups', 'g')} / {_spread(f, 'scale_downs', 'g')} "
                f"| {_spread(f, 'reversals', 'g')} | {_spread(f, 'max_units', 'g')} |"
            )
    up = traces_.get("step-up", {}).get("scalers", {})
    down = traces_.get("step-down", {}).get("scalers", {})
    sweep = result["step_phase_sweep"]
    lines += [
        "",
        "Steps. Up: 3 to 15 TPS, 7 s after an evaluation boundary (columns 2, 5-7), and "
        "at each of 15 one-second offsets (columns 3-4). Down: 15 to 3 TPS.",
        "",
        "| scaler | first scale-up decision (s) | worst / mean over 15 phases (s) "
        "| phases decided within one period | to capacity, worst phase (s) | to target (s) "
        "| throttled, first 10 min % | first scale-down (s) | excess unit-hours after drop |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for scaler, w in sweep.items():
        u, d = up.get(scaler, {}), down.get(scaler, {})
        lines.append(
            f"| {scaler} | {_spread(u, 'first_decision_s', 'g')} "
            f"| {_spread(w, 'first_decision_max_s', 'g')} / "
            f"{_spread(w, 'first_decision_mean_s', '.1f')} "
            f"| {_spread(w, 'within_one_period', 'g')} of {w['phases']} ({w['period_s']} s) "
            f"| {_spread(w, 'to_capacity_max_s', 'g')} | {_spread(u, 'to_target_s', 'g')} "
            f"| {_spread(u, 'throttled_first_10min_pct', '.2f')} "
            f"| {_spread(d, 'first_decision_s', 'g')} "
            f"| {_spread(d, 'excess_unit_hours_after_step', '.3f')} |"
        )
    periods = result.get("period_sweep") or {}
    if periods:
        lines += [
            "",
            "The new policy at other evaluation periods (the operator's `--evaluation-period`), "
            "step 3 to 15 TPS at each of 15 one-second offsets:",
            "",
            "| scaler | period (s) | first scale-up decision, worst / mean (s) "
            "| to capacity, worst phase (s) |",
            "|---|---|---|---|",
        ]
        for scaler, w in periods.items():
            lines.append(
                f"| {scaler} | {w['period_s']} | {_spread(w, 'first_decision_max_s', 'g')} / "
                f"{_spread(w, 'first_decision_mean_s', '.1f')} "
                f"| {_spread(w, 'to_capacity_max_s', 'g')} |"
            )
    sensitivity = result.get("startup_sensitivity_diurnal") or {}
    if sensitivity:
        names = list(next(iter(sensitivity.values())))
        lines += [
            "",
            "Diurnal trace (first seed) with other unit start-up delays (unit-hours; throttled %):",
            "",
            "| start-up | " + " | ".join(names) + " |",
            "|---|" + "---|" * len(names),
        ]
        for delay, by in sorted(sensitivity.items(), key=lambda item: int(item[0])):
            lines.append(
                f"| {delay} s | "
                + " | ".join(
                    f"{by[n]['unit_hours']:.1f}; {by[n]['throttled_pct']:.3f} %" for n in names
                )
                + " |"
            )
    lines += ["", "Observations (computed from the figures above):", ""]
    if "diurnal" in traces_:
        d = traces_["diurnal"]["scalers"]
        best = traces_["diurnal"]["clairvoyant"]
        ours = best["kiu's rule"]
        lines.append(
            f"- Business week: {kiu} uses {d[kiu]['unit_hours']:.0f} unit-hours, "
            f"{d[kiu]['vs_previous']:.0%} of the previous rule's "
            f"({d[previous]['unit_hours']:.0f}) and {d[kiu]['vs_hpa_served']:.0%} of "
            f"hpa-served's ({d['hpa-served']['unit_hours']:.0f}), throttling "
            f"{d[kiu]['throttled_pct']:.3f} % of demand against {d[previous]['throttled_pct']:.3f}"
            f" % and {d['hpa-served']['throttled_pct']:.3f} %, with {d[kiu]['reversals']} "
            f"changes of direction against {d[previous]['reversals']} and "
            f"{d['hpa-served']['reversals']}."
        )
        lines.append(
            f"- What is possible on this trace: a fleet that knows the true rate every second "
            f"and starts units instantly uses {best['70 % target']['unit_hours']:.0f} "
            f"unit-hours at a 70 % target and throttles "
            f"{best['70 % target']['throttled_pct']:.3f} % (one second of Poisson calls above "
            f"the units' full TPS, mostly at 1-3 units); with kiu's rule (also one second's "
            f"noise within full TPS) {ours['unit_hours']:.0f} unit-hours and "
            f"{ours['throttled_pct']:.3f} %."
        )
        fewest = next((v for k, v in best.items() if k.startswith("fewest units")), None)
        if fewest is not None:
            lines.append(
                f"- The fewest units any scaler can use here: a fleet that knows the rate of "
                f"every second, starts units instantly and spends them where they save the "
                f"most throttled calls needs {fewest['unit_hours']:.0f} unit-hours to "
                f"throttle {fewest['throttled_pct']:.3f} % of calls (expected), "
                f"{fewest['unit_hours'] / d['hpa-served']['unit_hours']:.2f} of hpa-served's. "
                f"0.90 of hpa-served ({0.9 * d['hpa-served']['unit_hours']:.0f} unit-hours) "
                f"with 0.02 % throttled is below that bound: no scaler meets both on this "
                f"trace. {kiu} uses {d[kiu]['unit_hours'] / fewest['unit_hours']:.2f} times "
                f"the bound, at {d[kiu]['throttled_pct']:.3f} % throttled."
            )
    if "steady" in traces_:
        st = traces_["steady"]["scalers"]
        needed = math.ceil(12.0 / (settings["tps_per_unit"] * settings["target_utilization"]))
        lines.append(
            f"- Measurement noise: at a steady 12 TPS (needs {needed} units at 70 %), {kiu} "
            f"holds {st[kiu]['max_units']} units ({st[kiu]['unit_hours']:.1f} unit-hours, "
            f"{st[kiu]['vs_static_peak_70']:.2f} of a static {needed}; "
            f"{st[kiu]['changes_after_10_min']} changes after the first 10 min); the previous "
            f"rule went to {st[previous]['max_units']} ({st[previous]['unit_hours']:.1f}): "
            f"Poisson arrivals counted over {period} s vary by "
            f"{1 / math.sqrt(12 * period):.0%} (one sigma), and it kept the maximum of "
            f"{300 // period} such readings."
        )
    w = sweep.get(kiu)
    if w is not None:
        late = [r for r in w["rows"] if r["evaluations"] != 1]
        before = sorted({w["period_s"] - r["offset_s"] % w["period_s"] for r in late})
        lines.append(
            f"- First scale-up decision (first seed): {kiu} decided at the first evaluation "
            f"after the step in {w['phases'] - len(late) if w['rows'] else 0} of "
            f"{w['phases']} phases. "
            + (
                f"The later ones are steps landing {' or '.join(map(str, before))} s before an "
                f"evaluation: {before[0]}-{before[-1]} s of 15 TPS in a {w['period_s']} s window "
                f"are {12 * before[0]}-{12 * before[-1]} calls more than the "
                f"{3 * w['period_s']} of 3 TPS, too few to tell from noise at the 5 sigma the "
                f"policy requires (a threshold low enough for them would be crossed by a "
                f"steady load several times a day), so they are decided one period later, on "
                f"the first full window."
                if late
                else ""
            )
        )
    if "spiky" in traces_:
        sp = traces_["spiky"]["scalers"]
        lines.append(
            f"- Bursts of 10-60 s are shorter than the {settings['startup_seconds']} s start-up: "
            f"every autoscaler throttles them ({kiu} {sp[kiu]['throttled_pct']:.1f} %, "
            f"{previous} {sp[previous]['throttled_pct']:.1f} %, hpa-served "
            f"{sp['hpa-served']['throttled_pct']:.1f} %); only standing headroom helps "
            f"(`static-peak-70` {sp['static-peak-70']['throttled_pct']:.1f} %)."
        )
    return "\n".join(lines)
