"""Each gateway replica's share of a model's TPS limit, following where the calls arrive.

A load balancer spreads connections, not calls, so an even split of the limit
(`kiu.policy.budget.replica_share`) admits less than the limit whenever replicas
receive unequal parts of the calls. Instead every replica measures the rate of
calls each model receives there (its *offered rate*, :class:`OfferedRate`),
tells the other replicas, and sets its own token bucket to :func:`share`, the part
of the limit that :func:`allocate` gives it from everyone's offered rates.

:func:`allocate` hands a pool out so that the parts sum to exactly the pool:

* every replica that receives calls first gets ``min(offered, floor)``, with
  ``floor = floor_fraction x pool / replicas``: however lopsided the demand, a
  replica that receives calls is never starved;
* when the offered rates fit in what is left, each replica gets its offered rate
  and the spare is split evenly (so a replica whose calls grow has head-room);
* otherwise the rest is split in proportion to the offered rates beyond the
  floors: each replica gets at most what it is offered, so the admitted rates
  add up to the pool.

Replicas that are known (discovered) but not heard from recently are *silent*:
they may be alive and admitting on their own, so each keeps an even share
``limit / known`` reserved, and only the rest is allocated among those heard
from. A replica that hears from no peer therefore runs on an even share (the
fallback), and the sum over all replicas never exceeds the limit whatever each
one knows. A replica known to be gone (its address refuses connections, or it
left the Service) is no longer known: its share goes to the others.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

#: Part of an even share every replica receiving calls is guaranteed (if it needs it).
DEFAULT_FLOOR_FRACTION = 0.1


def allocate(
    *, pool: float, offered: Sequence[float], floor_fraction: float = DEFAULT_FLOOR_FRACTION
) -> list[float]:
    """Split ``pool`` over replicas offered ``offered`` calls/s each; the parts sum to ``pool``."""
    if not 0.0 <= floor_fraction <= 1.0:
        raise ValueError(f"floor_fraction must be in [0, 1], got {floor_fraction}")
    n = len(offered)
    if n == 0:
        return []
    pool = max(pool, 0.0)
    demand = [_rate(d) for d in offered]
    floor = floor_fraction * pool / n
    floors = [min(d, floor) for d in demand]
    rest = pool - sum(floors)
    beyond = [d - f for d, f in zip(demand, floors, strict=True)]
    wanted = sum(beyond)
    if wanted <= rest:
        spare = (rest - wanted) / n
        return [d + spare for d in demand]
    return [f + rest * b / wanted for f, b in zip(floors, beyond, strict=True)]


def share(
    *,
    limit: float,
    own: float,
    heard: Sequence[float],
    silent: int = 0,
    floor_fraction: float = DEFAULT_FLOOR_FRACTION,
) -> float:
    """This replica's part of ``limit``.

    ``own`` is its offered rate, ``heard`` the offered rates the peers it heard from
    reported, ``silent`` the number of known peers it did not hear from (each keeps
    an even share reserved). With nobody heard, the result is ``limit / (1 + silent)``.
    """
    if silent < 0:
        raise ValueError(f"silent must be >= 0, got {silent}")
    live = 1 + len(heard)
    pool = max(limit, 0.0) * live / (live + silent)
    return allocate(pool=pool, offered=[own, *heard], floor_fraction=floor_fraction)[0]


class OfferedRate:
    """Calls per second one model receives at this replica, from a count taken every tick.

    The rate is the larger of the mean over the last ``window`` ticks and the last
    tick alone: a replica whose calls grow claims them after one tick, one whose
    calls stop releases them over the window (a tick with few calls is not mistaken
    for the end of the traffic).
    """

    __slots__ = ("_counts", "_last", "_total_calls", "_total_seconds")

    def __init__(self, *, window: int = 3) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1 tick, got {window}")
        self._counts: deque[tuple[int, float]] = deque(maxlen=window)
        self._last = 0.0
        self._total_calls = 0
        self._total_seconds = 0.0

    def add(self, *, calls: int, seconds: float) -> float:
        """Record one tick: ``calls`` received in the last ``seconds``; return the rate."""
        if calls < 0 or not seconds > 0.0:
            raise ValueError(f"need calls >= 0 and seconds > 0, got {calls}, {seconds}")
        if len(self._counts) == self._counts.maxlen:
            old_calls, old_seconds = self._counts[0]
            self._total_calls -= old_calls
            self._total_seconds -= old_seconds
        self._counts.append((calls, seconds))
        self._total_calls += calls
        self._total_seconds += seconds
        self._last = calls / seconds
        return self.rate

    @property
    def rate(self) -> float:
        if not self._counts:
            return 0.0
        return max(self._last, self._total_calls / max(self._total_seconds, 1e-9))


def _rate(value: float) -> float:
    return value if value > 0.0 and math.isfinite(value) else 0.0
