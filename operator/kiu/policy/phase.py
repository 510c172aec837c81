"""The status of a model (the reference service's names) and its conditions, from facts.

STARTING lasts until the model first has its minimum units in service (one unit when
min is 0 and there is demand; none when min is 0 and there is none: idle at zero).
Once RUNNING, a model keeps RUNNING when units fail or a zone is lost, serving at
reduced capacity as the reference does, and says so with Degraded=True. A model that
never got there and has had a unit failure for `failure_timeout_seconds` is FAILED (it
recovers to STARTING or RUNNING by itself once the failure clears). A stopped model is
STOPPING while any of its pods exist, then STOPPED.

Conditions follow metav1.Condition: `merge` adds lastTransitionTime and
observedGeneration, keeping the transition time of a condition whose status holds.
Besides Ready, Progressing and Degraded (normal-true, as Deployments have), every
assessment carries kstatus's abnormal-true pair, so `kubectl wait`, Flux and cli-utils
read health without custom checks: Reconciling (True while converging, as Progressing
says) and Stalled (True when waiting cannot help: FAILED, or a spec that cannot be met).
Never both True: kstatus takes the first True one it meets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

ConditionStatus = Literal["True", "False", "Unknown"]

_LISTED_FAILURES = 3  # a condition message names this many failures, then counts the rest


class Status(StrEnum):
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class UnitFailure:
    """Why one unit (pod) is not serving, as observed by the operator, since when (seconds).

    `reason` is CamelCase, e.g. CrashLoopBackOff, ModelLoadFailed, Unschedulable,
    ZoneUnavailable; the operator reports a pod as Unschedulable only once the
    scheduler has said so.
    """

    unit: str
    reason: str
    message: str
    since: float


@dataclass(frozen=True, slots=True)
class Condition:
    type: str
    status: ConditionStatus
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class RecordedCondition:
    """A condition as stored in status: `last_transition_time` is RFC 3339 (UTC, seconds)."""

    type: str
    status: ConditionStatus
    reason: str
    message: str
    last_transition_time: str
    observed_generation: int


@dataclass(frozen=True, slots=True)
class Assessment:
    """The status, its message (statusMessage) and the Ready, Progressing, Degraded,
    Reconciling and Stalled conditions, in that order (see `judge`)."""

    status: Status
    message: str
    conditions: tuple[Condition, ...]


def judge(
    *,
    status: Status,
    message: str,
    ready: Condition,
    progressing: Condition,
    degraded: Condition,
    stalled: tuple[str, str] | None = None,
) -> Assessment:
    """An assessment with kstatus's Reconciling and Stalled derived from the rest.

    Stalled is True on FAILED (with Ready's reason) and when `stalled` (reason,
    message) says the spec cannot be met; Reconciling is True while Progressing is,
    unless stalled.
    """
    if stalled is None and status is Status.FAILED:
        stalled = (ready.reason, ready.message)
    if stalled is not None:
        reason, why = stalled
        reconciling = Condition("Reconciling", "False", reason, f"stalled: {why}")
        stuck = Condition("Stalled", "True", reason, why)
    else:
        reconciling = replace(progressing, type="Reconciling")
        stuck = Condition("Stalled", "False", "Reconcilable", "nothing blocks the version")
    return Assessment(
        status=status,
        message=message,
        conditions=(ready, progressing, degraded, reconciling, stuck),
    )


def assess(
    *,
    previous: Status | None,
    running: bool,
    min_units: int,
    desired: int,
    in_service: int,
    pods: int,
    failures: Sequence[UnitFailure],
    last_demand_at: float | None,
    now: float,
    failure_timeout_seconds: float = 600.0,
) -> Assessment:
    """Derive status and conditions from what the operator observed at `now` (seconds).

    `previous` is the status last published (None for a new model), `desired` the
    units decided by scaling, `in_service` the ready units, `pods` the unit pods that
    exist in any state, `last_demand_at` the last time demand was above zero (for the
    idle message; None if never).
    """
    if not running:
        return _stopped(pods)
    failing = sorted(failures, key=lambda failure: (failure.since, failure.unit))
    required = min_units if min_units > 0 else min(desired, 1)
    counts = f"{in_service} of {desired} units in service"
    if in_service >= required:
        status = Status.RUNNING
    elif previous == Status.RUNNING:
        status = Status.RUNNING  # reduced capacity: keep serving, Degraded says why
    elif failing and now - failing[0].since >= failure_timeout_seconds:
        return _failed(failing, now, failure_timeout_seconds)
    else:
        return _starting(counts, required, failing, now)

    degraded = _degraded(failing, now)
    idle = desired == 0 and in_service == 0
    if idle:
        since = "yet" if last_demand_at is None else f"for {now - last_demand_at:.0f} s"
        message = f"idle: no demand {since}; the first request starts a unit"
        ready = Condition("Ready", "True", "ScaledToZero", message)
    elif in_service > 0:
        message = f"running: {counts} (min {min_units})"
        ready = Condition("Ready", "True", "InService", message)
    elif min_units == 0 and not failing:
        message = "starting a unit for new demand after idling at zero"
        ready = Condition("Ready", "False", "ScalingFromZero", message)
    else:
        message = f"running with no unit in service (min {min_units})"
        ready = Condition("Ready", "False", "NoUnitInService", message)
    if in_service < required:
        message = f"running at reduced capacity: {counts} (min {min_units})"
    if failing:
        message += f"; {degraded.message}"
    return judge(
        status=status,
        message=message,
        ready=ready,
        progressing=_progressing(desired, in_service),
        degraded=degraded,
    )


def merge(
    *,
    previous: Sequence[RecordedCondition],
    current: Sequence[Condition],
    now: float,
    generation: int,
) -> tuple[RecordedCondition, ...]:
    """Record `current` conditions at `now` (seconds) for the spec `generation`.

    A condition keeps its last transition time while its status does not change
    (reason and message may); conditions of other types in `previous` (set by someone
    else) are kept as they are, after the current ones.
    """
    stamp = datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    old = {condition.type: condition for condition in previous}
    merged: list[RecordedCondition] = []
    for condition in current:
        before = old.get(condition.type)
        recorded = RecordedCondition(
            type=condition.type,
            status=condition.status,
            reason=condition.reason,
            message=condition.message,
            last_transition_time=stamp,
            observed_generation=generation,
        )
        if before is not None and before.status == condition.status:
            recorded = replace(recorded, last_transition_time=before.last_transition_time)
        merged.append(recorded)
    types = {condition.type for condition in current}
    merged.extend(condition for condition in previous if condition.type not in types)
    return tuple(merged)


def _stopped(pods: int) -> Assessment:
    if pods > 0:
        status, reason = Status.STOPPING, "Stopping"
        message = f"stopping: {pods} unit {'pod' if pods == 1 else 'pods'} still running"
    else:
        status, reason, message = Status.STOPPED, "Stopped", "stopped: no unit running"
    return judge(
        status=status,
        message=message,
        ready=Condition("Ready", "False", reason, message),
        progressing=Condition("Progressing", "True" if pods > 0 else "False", reason, message),
        degraded=Condition("Degraded", "False", reason, message),
    )


def _starting(counts: str, required: int, failing: list[UnitFailure], now: float) -> Assessment:
    message = f"starting: {counts}, {required} needed"
    if failing:
        message += f"; {_describe(failing, now)}"
    return judge(
        status=Status.STARTING,
        message=message,
        ready=Condition("Ready", "False", "Starting", message),
        progressing=Condition("Progressing", "True", "Starting", message),
        degraded=_degraded(failing, now),
    )


def _failed(failing: list[UnitFailure], now: float, timeout: float) -> Assessment:
    message = f"failed: no progress for {timeout:g} s; {_describe(failing, now)}"
    reason = failing[0].reason
    return judge(
        status=Status.FAILED,
        message=message,
        ready=Condition("Ready", "False", reason, message),
        progressing=Condition("Progressing", "False", "ProgressDeadlineExceeded", message),
        degraded=Condition("Degraded", "True", reason, message),
    )


def _progressing(desired: int, in_service: int) -> Condition:
    if desired > in_service:
        message = f"scaling up: {in_service} of {desired} units in service"
        return Condition("Progressing", "True", "ScalingUp", message)
    if desired < in_service:
        message = f"scaling down: {in_service} units in service, {desired} desired"
        return Condition("Progressing", "True", "ScalingDown", message)
    return Condition("Progressing", "False", "Stable", f"{in_service} units in service as desired")


def _degraded(failing: list[UnitFailure], now: float) -> Condition:
    if not failing:
        return Condition("Degraded", "False", "NoFailures", "no unit failures")
    return Condition("Degraded", "True", failing[0].reason, _describe(failing, now))


def _describe(failing: list[UnitFailure], now: float) -> str:
    """'2 units failing: a-1 CrashLoopBackOff for 40 s: exit code 1; ...', oldest first."""
    listed = "; ".join(
        f"{failure.unit} {failure.reason} for {max(now - failure.since, 0):.0f} s: "
        f"{failure.message}"
        for failure in failing[:_LISTED_FAILURES]
    )
    more = len(failing) - _LISTED_FAILURES
    noun = "unit" if len(failing) == 1 else "units"
    return f"{len(failing)} {noun} failing: {listed}" + (f"; and {more} more" if more > 0 else "")
