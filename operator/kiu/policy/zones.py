"""Split inference units over availability zones: even, deterministic, minimal disruption.

One Deployment per zone gets the count decided here. The split is as even as possible
over the zones that take units; where units must differ by one, the extra units stay
where units already run (nothing moves that does not have to), and remaining ties go
to healthy zones, then to zone names in sorted order. So scale-up adds to the emptiest
zones, scale-down removes from the fullest, and with all zones healthy a split reached
step by step equals a fresh split of the same total.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType


class OutagePolicy(StrEnum):
    """What happens to the share of a zone that has no healthy nodes."""

    WAIT = "Wait"
    """Keep its share there: its pods wait, pending, until the zone recovers (reference)."""
    REBALANCE = "Rebalance"
    """Move its share to the healthy zones; it moves back when the zone recovers."""


class Cause(StrEnum):
    SPREAD = "Spread"
    ZONE_OUTAGE_WAIT = "ZoneOutageWait"
    ZONE_OUTAGE_REBALANCE = "ZoneOutageRebalance"
    NO_HEALTHY_ZONE = "NoHealthyZone"
    ZONE_FULL_WAIT = "ZoneFullWait"
    ZONE_FULL_REBALANCE = "ZoneFullRebalance"


@dataclass(frozen=True, slots=True)
class Allocation:
    """Units per zone (read-only mapping, every zone listed, sorted by name) and why."""

    counts: Mapping[str, int]
    cause: Cause
    reason: str

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def split(
    *,
    total: int,
    zones: Iterable[str],
    healthy: Collection[str],
    policy: OutagePolicy,
    current: Mapping[str, int],
    full: Mapping[str, int] | None = None,
) -> Allocation:
    """Allocate `total` units over `zones`, starting from the `current` per-zone counts.

    Under WAIT every zone takes a share; under REBALANCE only healthy zones do. With no
    healthy zone at all the current allocation is kept and only the difference to
    `total` is added to the emptiest or removed from the fullest zones: moving units
    between zones that are all down gains nothing. Zones missing from `current` hold 0;
    zones in `current` but not in `zones` are dropped.

    `full` counts, per healthy zone, the units pending because the zone has no room
    for them (the scheduler found no node with enough resources). Under WAIT they
    wait there; under REBALANCE they still wait there, queued for the first room,
    and as many extra units start in healthy zones with room, the emptiest first;
    the extras go once the queued units are placed (nothing is full any more).
    """
    names = sorted(set(zones))
    if not names:
        raise ValueError("no zone to place units in")
    if total < 0:
        raise ValueError(f"total must be >= 0, got {total}")
    was = {zone: max(current.get(zone, 0), 0) for zone in names}
    up = [zone for zone in names if zone in healthy]
    down = [zone for zone in names if zone not in healthy]

    if not up:
        counts = _resize(was, total)
        cause = Cause.NO_HEALTHY_ZONE
        why = f"no zone is healthy ({', '.join(names)}): keeping the current allocation"
        if total != sum(was.values()):
            why += f", resized to {_units(total)}"
    elif down and policy == OutagePolicy.REBALANCE:
        counts = _balance(was, total, eligible=up, healthy=up)
        cause = Cause.ZONE_OUTAGE_REBALANCE
        lost, its, until = _lost(down)
        why = f"{lost} unavailable: {its} share moves to {', '.join(up)} until {until} (Rebalance)"
    elif down:
        counts = _balance(was, total, eligible=names, healthy=up)
        cause = Cause.ZONE_OUTAGE_WAIT
        lost, _, until = _lost(down)
        kept = _units(sum(counts[zone] for zone in down))
        why = f"{lost} unavailable: keeping {kept} there, pending until {until} (Wait)"
    else:
        counts = _balance(was, total, eligible=names, healthy=up)
        cause = Cause.SPREAD
        why = f"{_units(total)} spread over {len(names)} zones"

    waiting = {
        zone: min(n, counts[zone]) for zone, n in (full or {}).items() if zone in up and n > 0
    }
    if waiting and cause is Cause.SPREAD:
        counts, cause, why = _overflow(counts, waiting, policy=policy, up=up)

    reason = f"{why}; {_render(counts)}"
    if counts != was:
        reason += f" (was {_render(was)})"
    return Allocation(counts=MappingProxyType(counts), cause=cause, reason=reason)


def _overflow(
    counts: dict[str, int], waiting: Mapping[str, int], *, policy: OutagePolicy, up: list[str]
) -> tuple[dict[str, int], Cause, str]:
    """Units pending for lack of room in their zone: wait (WAIT), or start as many elsewhere."""
    names = sorted(waiting)
    queued = _units(sum(waiting.values()))
    lost = f"zone {names[0]}" if len(names) == 1 else f"zones {', '.join(names)}"
    roomy = [zone for zone in up if zone not in waiting]
    if policy == OutagePolicy.WAIT:
        return (
            counts,
            Cause.ZONE_FULL_WAIT,
            f"{lost} full: {queued} pending until room frees (Wait)",
        )
    if not roomy:
        why = f"{lost} full: {queued} pending until room frees, no zone has room (Rebalance)"
        return counts, Cause.ZONE_FULL_WAIT, why
    moved = dict(counts)
    for _ in range(sum(waiting.values())):
        moved[min(roomy, key=lambda zone: (moved[zone], zone))] += 1
    why = f"{lost} full: {queued} pending there, as many started in {', '.join(roomy)} (Rebalance)"
    return moved, Cause.ZONE_FULL_REBALANCE, why


def _balance(
    was: Mapping[str, int], total: int, *, eligible: list[str], healthy: list[str]
) -> dict[str, int]:
    """Even split over `eligible`; the extra units go where most units already are."""
    base, extra = divmod(total, len(eligible))
    favoured = sorted(eligible, key=lambda zone: (-was[zone], zone not in healthy, zone))
    plus_one = set(favoured[:extra])
    return {zone: (base + (zone in plus_one) if zone in eligible else 0) for zone in sorted(was)}


def _resize(was: Mapping[str, int], total: int) -> dict[str, int]:
    """Add to the emptiest (or remove from the fullest) zones one unit at a time.

    Ties go as in `_balance`: additions to the first name, removals from the last.
    """
    counts = dict(was)
    while sum(counts.values()) < total:
        counts[min(counts, key=lambda zone: (counts[zone], zone))] += 1
    while sum(counts.values()) > total:
        counts[max(counts, key=lambda zone: (counts[zone], zone))] -= 1
    return counts


def _lost(down: list[str]) -> tuple[str, str, str]:
    """'zone c' or 'zones b, c', with the matching possessive and verb."""
    if len(down) == 1:
        return f"zone {down[0]}", "its", "it recovers"
    return f"zones {', '.join(down)}", "their", "they recover"


def _units(n: int) -> str:
    return f"{n} unit" if n == 1 else f"{n} units"


def _render(counts: Mapping[str, int]) -> str:
    return " ".join(f"{zone}={n}" for zone, n in counts.items())
