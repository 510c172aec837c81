"""Demand rate from two scrapes of the gateway's monotonically increasing counters.

Each gateway replica counts the calls it received (admitted + throttled). Replicas
restart and come and go, so a rate is the sum of per-series increases, where a
counter that went down counts its new value (the process restarted from zero, as in
Prometheus' rate()), a series that appeared counts its whole value (a new replica
started since the last scrape), and a series that disappeared counts nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Scrape:
    """Counter values at `time` (seconds), keyed by series (e.g. pod name, or pod/outcome).

    A replica that did not answer a scrape should keep its last value here rather than
    be left out, or its whole count would be taken as new when it answers again.
    """

    time: float
    counters: Mapping[str, float]


def increase(*, previous: Scrape, current: Scrape) -> float:
    """Calls counted between the two scrapes, robust to resets; never negative."""
    total = 0.0
    for series, value in current.counters.items():
        before = previous.counters.get(series)
        total += value if before is None or value < before else value - before
    return total


def rate(*, previous: Scrape, current: Scrape) -> float | None:
    """Calls per second between the two scrapes; None when no time passed between them.

    None (not 0) so that a repeated or out-of-order scrape is not mistaken for idleness.
    """
    elapsed = current.time - previous.time
    if elapsed <= 0:
        return None
    return increase(previous=previous, current=current) / elapsed
