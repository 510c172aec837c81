"""Routing: which unit of a model takes a request.

Each model has a :class:`Pool` of its ready units, each unit with one persistent
channel. A request goes to the unit with the fewest requests in flight among two
picked at random (power of two choices: near least-loaded without scanning every
unit and without herding all gateways onto the same unit). Units in the
gateway's own zone are preferred while they have headroom, that is while the
local choice is at most ``zone_slack`` requests busier than the remote one:
idle traffic stays in the zone, and a zone short of units spills over instead
of queueing.

Each unit takes at most ``unit_concurrency`` requests at once; beyond that a
request waits (until its deadline) for a slot on any unit of the model. A call
that fails before the unit answers (connection refused, UNAVAILABLE) is retried
once on another unit, and the failed unit is avoided for ``eject_seconds`` so
that a dead unit costs one retry, not one per request, until discovery removes
it. A unit that hangs (frozen, or cut off without a reset) never refuses a
connection, so while another unit could take a retry the first attempt gets
only half of the time left: when it runs out the unit is avoided the same way
and the call is retried elsewhere within the request's deadline, until the
unit's readiness probe takes it out of discovery. A unit removed from the pool
takes no new request and keeps its channel until its in-flight requests are done.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
from collections.abc import Callable, Iterable

from kiu.gateway import errors, upstream

log = logging.getLogger(__name__)

DEFAULT_UNIT_CONCURRENCY = 8
DEFAULT_EJECT_SECONDS = 5.0
DEFAULT_ZONE_SLACK = 1


class Unit:
    """One ready unit as the router sees it."""

    __slots__ = ("channel", "ejected_until", "endpoint", "in_flight", "removed")

    def __init__(self, endpoint: upstream.Endpoint, channel: upstream.Channel) -> None:
        self.endpoint = endpoint
        self.channel = channel
        self.in_flight = 0
        self.ejected_until = 0.0
        self.removed = False

    def __repr__(self) -> str:
        return (
            f"Unit({self.endpoint.target}, zone={self.endpoint.zone!r}, in_flight={self.in_flight})"
        )


class Pool:
    """The ready units of one model, and the requests waiting for a free one."""

    def __init__(
        self,
        *,
        transport: upstream.Transport,
        zone: str = "",
        unit_concurrency: int = DEFAULT_UNIT_CONCURRENCY,
        eject_seconds: float = DEFAULT_EJECT_SECONDS,
        zone_slack: int = DEFAULT_ZONE_SLACK,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        failed: Callable[[str], None] | None = None,
    ) -> None:
        """``failed(reason)`` is told of every call a unit failed (for metrics)."""
        self._transport = transport
        self._failed = failed or _ignore
        self._zone = zone
        self._limit = max(1, unit_concurrency)
        self._eject_seconds = eject_seconds
        self._slack = zone_slack
        self._clock = clock
        self._rng = rng or random.Random()
        self._units: dict[upstream.Endpoint, Unit] = {}
        self._local: list[Unit] = []
        self._remote: list[Unit] = []
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closing: set[asyncio.Task[None]] = set()
        self.in_flight = 0

    # --- membership ------------------------------------------------------------------

    @property
    def units(self) -> list[Unit]:
        return [*self._local, *self._remote]

    def __len__(self) -> int:
        return len(self._units)

    def update(self, endpoints: Iterable[upstream.Endpoint]) -> None:
        """Make the ready units exactly ``endpoints``; removed units drain, then close."""
        wanted = set(endpoints)
        for endpoint in [e for e in self._units if e not in wanted]:
            unit = self._units.pop(endpoint)
            unit.removed = True
            if unit.in_flight == 0:
                self._close(unit)
        for endpoint in wanted:
            if endpoint not in self._units:
                self._units[endpoint] = Unit(endpoint, self._transport.connect(endpoint))
        self._local = [u for u in self._units.values() if u.endpoint.zone == self._zone]
        self._remote = [u for u in self._units.values() if u.endpoint.zone != self._zone]
        self._wake(everyone=True)

    async def close(self) -> None:
        """Remove every unit and wait for their channels to close (at shutdown, when
        no call is in flight any more; a unit still busy closes when its calls end)."""
        self.update(())
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def _close(self, unit: Unit) -> None:
        task = asyncio.get_running_loop().create_task(unit.channel.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    # --- choosing a unit -------------------------------------------------------------

    def pick(self, *, exclude: Unit | None = None) -> Unit | None:
        """The unit for the next request, or None if every unit is busy or excluded."""
        now = self._clock()
        local = self._choose(self._local, exclude, now)
        if local is not None and not self._remote:
            return local
        remote = self._choose(self._remote, exclude, now)
        if local is None:
            return remote
        if remote is None or local.in_flight <= remote.in_flight + self._slack:
            return local
        return remote

    def _choose(self, units: list[Unit], exclude: Unit | None, now: float) -> Unit | None:
        count = len(units)
        if count == 0:
            return None
        if count == 1:
            unit = units[0]
            return unit if self._usable(unit, exclude, now) else self._fallback(units, exclude)
        i = self._rng.randrange(count)
        j = self._rng.randrange(count - 1)
        if j >= i:
            j += 1
        a, b = units[i], units[j]
        a_ok, b_ok = self._usable(a, exclude, now), self._usable(b, exclude, now)
        if a_ok and b_ok:
            return a if a.in_flight <= b.in_flight else b
        if a_ok:
            return a
        if b_ok:
            return b
        best: Unit | None = None
        for unit in units:
            if self._usable(unit, exclude, now) and (
                best is None or unit.in_flight < best.in_flight
            ):
                best = unit
        return best or self._fallback(units, exclude)

    def _usable(self, unit: Unit, exclude: Unit | None, now: float) -> bool:
        return unit is not exclude and unit.in_flight < self._limit and unit.ejected_until <= now

    def _fallback(self, units: list[Unit], exclude: Unit | None) -> Unit | None:
        """When every unit has been ejected, trying one beats failing the request."""
        if any(u.ejected_until <= self._clock() for u in self._units.values()):
            return None
        best: Unit | None = None
        for unit in units:
            if (
                unit is not exclude
                and unit.in_flight < self._limit
                and (best is None or unit.in_flight < best.in_flight)
            ):
                best = unit
        return best

    def _others(self, unit: Unit) -> bool:
        """Whether the pool has a unit other than ``unit`` to retry on."""
        return any(u is not unit for u in self._units.values())

    def eject(self, unit: Unit) -> None:
        """Avoid a unit that failed to answer for a while."""
        unit.ejected_until = self._clock() + self._eject_seconds

    # --- slots -----------------------------------------------------------------------

    async def acquire(self, *, exclude: Unit | None, deadline: float) -> Unit:
        """Take a slot on a unit, waiting until ``deadline`` (loop time) if all are busy.

        Raises ResourceNotReady if the pool has no unit left but ``exclude``, and
        Throttling if no slot frees up in time.
        """
        while True:
            unit = self.pick(exclude=exclude)
            if unit is not None:
                unit.in_flight += 1
                self.in_flight += 1
                return unit
            if not self._units:
                raise errors.ResourceNotReady("No inference unit is available for the model.")
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except TimeoutError:
                raise errors.Throttling(
                    "Every inference unit of the model stayed busy until the deadline."
                ) from None
            finally:
                if not waiter.done():
                    waiter.cancel()
                    self._waiters.remove(waiter)

    def release(self, unit: Unit) -> None:
        unit.in_flight -= 1
        self.in_flight -= 1
        if unit.removed:
            if unit.in_flight == 0:
                self._close(unit)
        else:
            self._wake()

    def _wake(self, *, everyone: bool = False) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                if not everyone:
                    return

    # --- the call --------------------------------------------------------------------

    async def infer(
        self, *, model: str, image: bytes, deadline: float
    ) -> tuple[upstream.Prediction, int]:
        """Run one inference; return the prediction and the number of retries (0 or 1).

        ``deadline`` is in event-loop time. Raises ResourceNotReady, Throttling,
        InvalidImageFormat (the unit could not decode the image) or InternalServerError.
        """
        loop = asyncio.get_running_loop()
        failed: Unit | None = None
        for attempt in range(2):
            unit = await self.acquire(exclude=failed, deadline=deadline)
            retry_possible = attempt == 0 and self._others(unit)
            try:
                seconds = deadline - loop.time()
                if seconds <= 0:
                    raise upstream.DeadlineExceeded("no time left")
                if retry_possible:
                    seconds /= 2
                prediction = await unit.channel.infer(model=model, image=image, seconds=seconds)
                return prediction, attempt
            except upstream.Unavailable as exc:
                self._failed("unavailable")
                self.eject(unit)
                log.warning("unit %s did not answer (%s)", unit.endpoint.target, exc)
                if not self._others(unit):
                    break
                failed = unit
            except upstream.DeadlineExceeded:
                self._failed("deadline")
                if not retry_possible or deadline <= loop.time():
                    raise errors.Throttling(
                        "The inference unit did not answer before the deadline."
                    ) from None
                self.eject(unit)
                log.warning("unit %s did not answer in %.1f s", unit.endpoint.target, seconds)
                failed = unit
            except upstream.Rejected:
                self._failed("rejected")
                raise errors.InvalidImageFormat("The image could not be decoded.") from None
            except upstream.Failed as exc:
                self._failed("failed")
                log.error("unit %s failed: %s", unit.endpoint.target, exc)
                raise errors.InternalServerError() from None
            finally:
                self.release(unit)
        raise errors.InternalServerError("The inference units did not answer; retry the request.")


def _ignore(reason: str) -> None:
    pass
