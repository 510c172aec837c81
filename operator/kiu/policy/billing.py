"""Inference unit-hours: the integral of in-service units over time.

The reference bills hours running times inference units. kiu bills the units in
service: between two observations the count is the earlier one (a step function),
so the integral is exact for what was observed. The ledger is small enough to live in
the resource status, so an operator restart neither loses nor double-counts hours.
"""

from __future__ import annotations

from dataclasses import dataclass

_SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class Ledger:
    """Accumulated unit-seconds and the last observation (time in seconds, unit count).

    `last_time` is None before the first observation.
    """

    unit_seconds: float = 0.0
    last_time: float | None = None
    last_units: int = 0

    @property
    def unit_hours(self) -> float:
        return self.unit_seconds / _SECONDS_PER_HOUR


def accrue(*, ledger: Ledger, now: float, in_service: int) -> Ledger:
    """Bill the time since the last observation at the last count, then record `in_service`.

    A long gap (operator down) is billed at the last known count: the units kept
    running. Time going backwards bills nothing and keeps the later time, so the
    interval already billed is never billed twice.
    """
    if in_service < 0:
        raise ValueError(f"in_service must be >= 0, got {in_service}")
    if ledger.last_time is None:
        return Ledger(unit_seconds=ledger.unit_seconds, last_time=now, last_units=in_service)
    elapsed = max(now - ledger.last_time, 0.0)
    return Ledger(
        unit_seconds=ledger.unit_seconds + elapsed * ledger.last_units,
        last_time=max(now, ledger.last_time),
        last_units=in_service,
    )
